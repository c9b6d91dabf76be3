-- Handlers for what the sidecar sends: custom notifications need explicit handlers in the client
-- config, or Neovim drops them.
local state = require("cao.state")
local util = require("cao.util")

local M = {}

--- Wrap a handler so that a Lua error becomes an ERROR notification, never a traceback.
local function safe(fn)
  return function(err, result, ctx)
    local ok, value = pcall(fn, err, result, ctx)
    if not ok then
      util.error("internal error in " .. tostring(ctx and ctx.method) .. ": " .. tostring(value))
      return nil
    end
    return value
  end
end

local function ui()
  return require("cao.ui")
end

function M.agent_status(_, params)
  if type(params) ~= "table" then
    return
  end
  local agent = state.upsert({
    terminalId = params.terminalId,
    profile = params.profile,
    status = params.status,
    previousStatus = params.previousStatus,
    session = params.session,
    prompt = params.prompt,
  })
  if agent then
    if agent.status == "waiting_user_answer" then
      ui().on_waiting(agent)
    else
      agent.waiting_notified = nil
    end
    if agent.status == "stalled" and params.previousStatus ~= "stalled" then
      vim.notify(
        ("CAO: %s (%s) is stalled: no output or events for a while"):format(agent.name or agent.profile or "?", agent.terminalId),
        vim.log.levels.WARN
      )
    end
  end
  state.changed()
end

function M.worker_completed(_, params)
  if type(params) ~= "table" or type(params.terminalId) ~= "string" then
    return
  end
  local output = params.output ~= vim.NIL and params.output or ""
  state.outputs[params.terminalId] = output
  local agent = state.upsert({ terminalId = params.terminalId, profile = params.profile, status = params.status })
  local label = util.agent_label(agent)
  local error_text = params.error ~= vim.NIL and params.error or nil
  if error_text then
    util.info(label .. " failed: " .. tostring(error_text), vim.log.levels.WARN)
  else
    local line = util.first_line(output)
    local work = ""
    if type(params.worktree) == "table" then
      require("cao.worktrees").remember({ params.worktree }, true)
      work = "; " .. require("cao.worktrees").work_message(params.worktree)
    end
    util.info(label .. " completed" .. (line ~= "" and (": " .. line) or "") .. work)
  end
  state.changed()
end

function M.profiles_changed(_, params)
  if type(params) == "table" and type(params.profiles) == "table" then
    state.set_profiles(params.profiles)
    state.changed()
  end
end

function M.open_terminal(_, params)
  if type(params) == "table" and type(params.terminalId) == "string" then
    ui().attach(params.terminalId, params.attachCommand ~= vim.NIL and params.attachCommand or nil)
  end
end

function M.trust_changed(_, params)
  require("cao.trust").on_changed(params)
end

-- This plugin asks the user itself (initializationOptions.askUser = false). Should a sidecar ask
-- anyway, answer "no answer" at once: Neovim's default handler waits for keys, forever when
-- headless.
function M.show_message_request()
  return vim.NIL
end

function M.build()
  return {
    ["cao/agentStatus"] = safe(M.agent_status),
    ["cao/workerCompleted"] = safe(M.worker_completed),
    ["cao/profilesChanged"] = safe(M.profiles_changed),
    ["cao/openTerminal"] = safe(M.open_terminal),
    ["cao/flowsChanged"] = function() end,
    ["cao/trustChanged"] = safe(M.trust_changed),
    ["cao/workflowRun"] = safe(function(_, params)
      require("cao.workflows").on_run(params)
    end),
    ["window/showMessageRequest"] = safe(M.show_message_request),
  }
end

return M
