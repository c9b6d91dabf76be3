-- cao-sidecar for Neovim: a team of AI coding agents, each a real CLI in tmux, driven from the
-- editor. See :help cao.
local client = require("cao.client")
local config = require("cao.config")
local state = require("cao.state")
local util = require("cao.util")

local M = {}

local handoff_counter = 0
M.pending_handoffs = {} -- workDoneToken -> {label, request_id}

--- Configure the plugin and start the sidecar for the project (unless autostart = false).
function M.setup(opts)
  config.set(opts)
  require("cao.ui").define_highlights()
  require("cao.commands").create()
  if config.options.autostart ~= false then
    client.start()
  end
  return M
end

function M.start()
  return client.start()
end

function M.stop()
  client.stop()
end

--- Restart the sidecar (agents keep running in tmux; the new sidecar adopts them).
function M.restart()
  if not state.running then
    return client.start()
  end
  client.stop()
  local ok = vim.wait(5000, function()
    return not state.running
  end, 20)
  if not ok then
    util.error("the sidecar did not stop within 5 s")
    return false
  end
  return client.start()
end

--- Short status for a statusline ("CAO 3 agents · 1 working"). No requests: kept from the
--- sidecar's notifications. Empty before setup().
function M.statusline()
  return state.statusline()
end

--- What the plugin knows about the sidecar (for scripts and :checkhealth).
function M.info()
  return {
    client_id = state.client_id,
    root = state.root,
    tmux_socket = state.socket,
    cmd = state.cmd,
    running = state.running,
    initialized = state.initialized,
    init_ms = state.init_ms,
    server_info = state.server_info,
    protocol_version = state.capability and state.capability.protocolVersion or nil,
    methods = state.capability and state.capability.methods or nil,
    providers = state.capability and state.capability.providers or nil,
  }
end

--- The agents known (from notifications and answers), oldest first.
function M.agents()
  return state.list()
end

--- The profile names known (from cao/listProfiles and cao/profilesChanged).
function M.profiles()
  return state.profile_names()
end

--- Any cao/* request; callback(err, result), err nil or {code, message, data}.
function M.request(method, params, callback)
  return client.request(method, params, callback)
end

local function finish(what, callback, on_success)
  return function(err, result)
    if callback then
      return callback(err, result)
    end
    if err then
      return util.request_failed(what, err)
    end
    if on_success then
      on_success(result)
    end
  end
end

--- A new worker's `worktree` and `baseRef` params: opts.worktree, else the worktree option.
function M.worktree_option(opts)
  local worktree = opts.worktree
  if worktree == nil then
    worktree = config.options.worktree
  end
  return worktree, opts.base_ref
end

--- Start an agent. opts: {name, provider, worktree, base_ref}. Without a callback, reports in a notification.
function M.spawn(profile, opts, callback)
  opts = opts or {}
  local params = { profile = profile, provider = opts.provider or config.options.provider, name = opts.name }
  params.worktree, params.baseRef = M.worktree_option(opts)
  return client.request("cao/spawn", params, function(err, result)
    if not err and type(result) == "table" then
      state.upsert(result)
      state.changed()
    end
    finish("spawn " .. profile, callback, function(r)
      util.info(util.agent_label(state.agents[r.terminalId] or r) .. " started")
    end)(err, result)
  end)
end

--- Give a task to a new worker of a profile, or to an existing agent (target = a terminalId),
--- and wait for its answer. Progress goes through LSP work-done progress. opts: {provider,
--- timeout, keep}. Without a callback, shows the answer in a buffer.
function M.handoff(target, message, opts, callback)
  opts = opts or {}
  handoff_counter = handoff_counter + 1
  local token = ("cao-handoff-%d"):format(handoff_counter)
  local params = {
    message = message,
    timeoutSeconds = opts.timeout or config.options.handoff_timeout,
    keep = opts.keep,
    workDoneToken = token,
  }
  local label
  if state.agents[target] then
    params.terminalId = target
    label = util.agent_label(state.agents[target])
  else
    params.profile = target
    params.provider = opts.provider or config.options.provider
    params.worktree, params.baseRef = M.worktree_option(opts)
    label = target
  end
  M.pending_handoffs[token] = { label = label, message = message }
  local id = client.request("cao/handoff", params, function(err, result)
    M.pending_handoffs[token] = nil
    if not err and type(result) == "table" and type(result.terminalId) == "string" then
      state.outputs[result.terminalId] = result.output
    end
    finish("handoff to " .. label, callback, function(r)
      local line = util.first_line(r.output)
      local work = type(r.worktree) == "table" and ("; " .. require("cao.worktrees").work_message(r.worktree)) or ""
      util.info(label .. " answered" .. (line ~= "" and (": " .. line) or "") .. work)
      require("cao.ui").show_output(r.terminalId, r.output or "", "handoff")
    end)(err, result)
  end, function(request_id)
    if M.pending_handoffs[token] then
      M.pending_handoffs[token].request_id = request_id
    end
  end)
  return id, token
end

--- Cancel a pending handoff (by its workDoneToken, or the latest one).
function M.cancel(token)
  if not token then
    local latest = -1
    for key in pairs(M.pending_handoffs) do
      local n = tonumber(key:match("(%d+)$")) or 0
      if n > latest then
        latest, token = n, key
      end
    end
  end
  local pending = token and M.pending_handoffs[token]
  if not pending or not pending.request_id then
    util.warn("no handoff to cancel")
    return false
  end
  client.cancel(pending.request_id)
  return true
end

--- Start a worker on a task in the background; cao/workerCompleted reports the end.
function M.assign(profile, message, opts, callback)
  opts = opts or {}
  local params = { profile = profile, message = message, provider = opts.provider or config.options.provider }
  params.worktree, params.baseRef = M.worktree_option(opts)
  return client.request("cao/assign", params, function(err, result)
    if not err and type(result) == "table" and type(result.terminalId) == "string" then
      if not state.agents[result.terminalId] then
        state.upsert({ terminalId = result.terminalId, profile = profile, status = "starting" })
      end
      state.changed()
    end
    finish("assign to " .. profile, callback, function(r)
      util.info(("assigned to %s (%s)"):format(profile, r.terminalId))
    end)(err, result)
  end)
end

--- Send a message to an agent (typed in when it next accepts input).
function M.send(terminal_id, message, callback)
  local label = util.agent_label(state.agents[terminal_id] or { terminalId = terminal_id })
  return client.request("cao/sendMessage", { terminalId = terminal_id, message = message },
    finish("send to " .. label, callback, function(r)
      util.info(("message to %s %s"):format(label, r.state or "sent"))
    end))
end

--- An agent's output: mode "last" (its last answer, default) or "full" (its scrollback).
function M.output(terminal_id, mode, callback)
  mode = mode or "last"
  return client.request("cao/getOutput", { terminalId = terminal_id, mode = mode }, function(err, result)
    -- A worker that is gone (a handoff's, torn down): its answer as last seen.
    if not callback and err and err.code == -31003 and mode == "last" and state.outputs[terminal_id] then
      return require("cao.ui").show_output(terminal_id, state.outputs[terminal_id], mode)
    end
    finish("output of " .. terminal_id, callback, function(r)
      require("cao.ui").show_output(terminal_id, r.output or "", mode)
    end)(err, result)
  end)
end

--- End an agent.
function M.terminate(terminal_id, callback)
  local label = util.agent_label(state.agents[terminal_id] or { terminalId = terminal_id })
  return client.request("cao/terminate", { terminalId = terminal_id }, function(err, result)
    if not err and state.agents[terminal_id] then
      state.agents[terminal_id].status = "exited"
      state.changed()
    end
    finish("terminate " .. label, callback, function()
      util.info(label .. " terminated")
    end)(err, result)
  end)
end

--- Answer an agent's question: one of its prompt's choices, or free text.
function M.answer(terminal_id, answer, prompt_id, callback)
  local agent = state.agents[terminal_id]
  if prompt_id == nil and agent and type(agent.prompt) == "table" then
    prompt_id = agent.prompt.id
  end
  local label = util.agent_label(agent or { terminalId = terminal_id })
  return client.request("cao/answer", { terminalId = terminal_id, answer = answer, promptId = prompt_id },
    function(err, result)
      if callback then
        return callback(err, result)
      end
      if err and (err.code == -31009 or err.code == -32602) then
        return util.warn(("%s: %s"):format(label, util.error_message(err)))
      end
      finish("answer to " .. label, nil, function()
        util.info(("answered %s: %s"):format(label, answer))
      end)(err, result)
    end)
end

--- Refresh the agents from cao/listAgents.
function M.refresh(callback)
  return client.request("cao/listAgents", {}, function(err, result)
    if not err and type(result) == "table" then
      state.set_agents(result.agents)
      state.changed()
    end
    if callback then
      return callback(err, result)
    end
    if err then
      util.request_failed("listing agents", err)
    end
  end)
end

return M
