-- What the plugin knows, kept from notifications and answers: agents, profiles, the client.
-- Read by the statusline, completion and the agent list without any request.
local compat = require("cao.compat")

local M = {
  client_id = nil,
  root = nil,
  socket = nil,
  cmd = nil,
  started = false, -- setup() started (or tried to start) a sidecar
  running = false, -- the sidecar process is up
  initialized = false, -- initialize answered
  exit_code = nil,
  start_error = nil, -- why the last start failed
  server_info = nil,
  capability = nil, -- capabilities.experimental.cao
  setup_time = nil, -- hrtime at setup()
  init_ms = nil, -- setup() to initialized, in milliseconds
  agents = {}, -- terminalId -> AgentInfo (+ prompt, attachCommand as known)
  order = {}, -- terminalIds, oldest first
  profiles = {}, -- ProfileInfo list
  outputs = {}, -- terminalId -> last answer seen in a notification or result
  handled_prompts = {}, -- prompt id -> true once shown to the user
  trust = {}, -- TrustInfo of the sidecar's folders (cao/getTrust, cao/trustChanged)
}

local listeners = {}
local statusline_cache = nil
local redraw_pending = false

function M.reset()
  M.client_id, M.running, M.initialized, M.exit_code, M.start_error = nil, false, false, nil, nil
  M.server_info, M.capability, M.init_ms = nil, nil, nil
  M.agents, M.order, M.profiles, M.outputs, M.handled_prompts = {}, {}, {}, {}, {}
  M.trust = {}
  statusline_cache = nil
end

function M.on_change(fn)
  table.insert(listeners, fn)
end

function M.changed()
  statusline_cache = nil
  for _, fn in ipairs(listeners) do
    local ok, err = pcall(fn)
    if not ok then
      vim.notify("cao: " .. tostring(err), vim.log.levels.ERROR)
    end
  end
  compat.user_event("CaoStatus")
  if not redraw_pending then
    redraw_pending = true
    vim.schedule(function()
      redraw_pending = false
      pcall(vim.cmd, "redrawstatus")
    end)
  end
end

--- Merge what is known about an agent (AgentInfo, an agentStatus notification, a spawn result).
function M.upsert(info)
  local id = info.terminalId
  if type(id) ~= "string" then
    return nil
  end
  local agent = M.agents[id]
  if not agent then
    agent = { terminalId = id }
    M.agents[id] = agent
    table.insert(M.order, id)
  end
  for key, value in pairs(info) do
    if value == vim.NIL then
      agent[key] = nil
    else
      agent[key] = value
    end
  end
  if info.status and info.status ~= "waiting_user_answer" then
    agent.prompt = nil
  end
  return agent
end

--- Replace the agents with a cao/listAgents answer (keeping what notifications told us).
function M.set_agents(list)
  local seen = {}
  for _, info in ipairs(list or {}) do
    M.upsert(info)
    seen[info.terminalId] = true
  end
  local order = {}
  for _, id in ipairs(M.order) do
    if seen[id] then
      table.insert(order, id)
    else
      M.agents[id] = nil
    end
  end
  M.order = order
end

function M.remove(id)
  M.agents[id] = nil
  for i, other in ipairs(M.order) do
    if other == id then
      table.remove(M.order, i)
      break
    end
  end
end

--- Agents, oldest first.
function M.list()
  local out = {}
  for _, id in ipairs(M.order) do
    if M.agents[id] then
      table.insert(out, M.agents[id])
    end
  end
  return out
end

function M.set_profiles(list)
  M.profiles = list or {}
end

function M.profile_names()
  local names = {}
  for _, profile in ipairs(M.profiles) do
    if type(profile.name) == "string" then
      table.insert(names, profile.name)
    end
  end
  table.sort(names)
  return names
end

function M.has_method(method)
  local methods = M.capability and M.capability.methods
  if type(methods) ~= "table" then
    return false
  end
  return vim.tbl_contains(methods, method)
end

--- "CAO 3 agents · 1 working · 1 waiting"; "" before setup(). Cached until the state changes.
function M.statusline()
  if statusline_cache then
    return statusline_cache
  end
  local text
  if not M.started then
    text = ""
  elseif not M.running and M.exit_code ~= nil then
    text = "CAO stopped"
  elseif not M.initialized then
    text = "CAO starting"
  else
    local total, working, waiting, stalled = 0, 0, 0, 0
    for _, agent in pairs(M.agents) do
      if agent.status ~= "exited" then
        total = total + 1
        if agent.status == "processing" then
          working = working + 1
        elseif agent.status == "waiting_user_answer" then
          waiting = waiting + 1
        elseif agent.status == "stalled" then
          stalled = stalled + 1
        end
      end
    end
    text = ("CAO %d agent%s"):format(total, total == 1 and "" or "s")
    for _, folder in ipairs(M.trust) do
      if folder.hasConfig and not folder.trusted then
        text = text .. " · untrusted"
        break
      end
    end
    if working > 0 then
      text = text .. (" · %d working"):format(working)
    end
    if waiting > 0 then
      text = text .. (" · %d waiting"):format(waiting)
    end
    if stalled > 0 then
      text = text .. (" · %d stalled"):format(stalled)
    end
  end
  statusline_cache = text
  return text
end

return M
