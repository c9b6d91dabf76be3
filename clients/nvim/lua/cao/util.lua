-- Messages to the user. Errors always show; information only with the `notify` option.
local M = {}

local levels = vim.log.levels

local function send(msg, level)
  vim.notify("cao: " .. msg, level, { title = "cao" })
end

function M.error(msg)
  send(msg, levels.ERROR)
end

function M.warn(msg)
  send(msg, levels.WARN)
end

--- Information the user can turn off (setup{notify = false}).
function M.info(msg, level)
  if require("cao.config").options.notify == false then
    return
  end
  send(msg, level or levels.INFO)
end

--- A JSON-RPC error (table with code/message/data, or a string) as one readable line.
function M.error_message(err)
  if type(err) == "table" then
    local message = err.message
    if type(message) ~= "string" or message == "" then
      message = vim.inspect(err)
    end
    return message
  end
  return tostring(err)
end

--- Report a failed request: cancelled ones as information, others as errors.
function M.request_failed(what, err)
  if type(err) == "table" and err.code == -32800 then
    M.info(what .. " cancelled")
    return
  end
  M.error(what .. " failed: " .. M.error_message(err))
end

function M.first_line(text)
  if type(text) ~= "string" then
    return ""
  end
  for line in text:gmatch("[^\n]+") do
    if line:match("%S") then
      return vim.trim(line)
    end
  end
  return ""
end

--- Call fn(...) and turn a Lua error into an ERROR notification (never a traceback).
function M.guard(fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then
    M.error(tostring(err))
  end
  return ok, err
end

function M.agent_label(agent)
  if not agent then
    return "?"
  end
  local name = agent.name
  if type(name) == "string" and name ~= "" then
    return ("%s (%s)"):format(name, agent.terminalId)
  end
  return ("%s (%s)"):format(agent.profile or "agent", agent.terminalId)
end

return M
