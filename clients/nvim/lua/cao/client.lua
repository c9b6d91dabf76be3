-- The sidecar process as a Neovim LSP client: start, stop, and requests (queued until the
-- sidecar is initialized). What the sidecar sends is handled in cao.handlers.
local compat = require("cao.compat")
local config = require("cao.config")
local state = require("cao.state")
local util = require("cao.util")

local M = {}

local client = nil -- the client object (from on_init)
local queue = {} -- requests made before initialize was answered
local stopping = false

local function normalize_err(err)
  if err == nil or err == vim.NIL then
    return nil
  end
  if type(err) == "table" then
    return { code = err.code, message = err.message, data = err.data ~= vim.NIL and err.data or nil }
  end
  return { message = tostring(err) }
end

local function call(handler, err, result)
  if handler then
    util.guard(handler, err, result)
  end
end

local function fail_queue(why)
  local pending = queue
  queue = {}
  for _, item in ipairs(pending) do
    call(item.handler, { message = why })
  end
end

local function send(item)
  local params = item.params
  if params == nil or (type(params) == "table" and next(params) == nil) then
    params = vim.empty_dict() -- {} would be sent as a JSON list
  end
  local ok, id = compat.request(client, item.method, params, function(err, result)
    call(item.handler, normalize_err(err), result)
  end)
  if not ok then
    call(item.handler, { message = "the sidecar is not running" })
    return nil
  end
  if item.on_sent then
    util.guard(item.on_sent, id)
  end
  return id
end

local function not_running_reason()
  if state.start_error then
    return state.start_error
  end
  if state.exit_code ~= nil and state.exit_code >= 0 then
    return ("the sidecar is not running (it exited with code %d; see :LspLog)"):format(state.exit_code)
  end
  return "the sidecar is not running"
end

local function seed()
  M.request("cao/listProfiles", {}, function(err, result)
    if not err and result then
      state.set_profiles(result.profiles)
      state.changed()
    end
  end)
  M.request("cao/listAgents", {}, function(err, result)
    if not err and result then
      state.set_agents(result.agents)
      state.changed()
    end
  end)
  require("cao.trust").seed()
end

local function on_init(c, result)
  client = c
  state.initialized = true
  if state.setup_time then
    state.init_ms = (compat.uv.hrtime() - state.setup_time) / 1e6
  end
  if type(result) == "table" then
    state.server_info = result.serverInfo
    local caps = result.capabilities or {}
    local experimental = type(caps.experimental) == "table" and caps.experimental or {}
    state.capability = type(experimental.cao) == "table" and experimental.cao or nil
  end
  -- On 0.7 the client is registered only after on_init returns: send from the event loop.
  vim.schedule(function()
    local pending = queue
    queue = {}
    for _, item in ipairs(pending) do
      send(item)
    end
    seed()
    state.changed()
  end)
end

local function on_exit(code, signal)
  vim.schedule(function()
    local expected = stopping
    stopping = false
    client = nil
    state.running, state.initialized = false, false
    state.exit_code = code or -1
    fail_queue(not_running_reason())
    if not expected and (code ~= 0 or (signal ~= 0 and signal ~= 15)) then
      util.error(("cao-sidecar exited (code %s, signal %s); see :LspLog"):format(tostring(code), tostring(signal)))
    end
    state.changed()
  end)
end

--- Start the sidecar for the project (nothing if it already runs). Returns true on success.
function M.start()
  if state.running then
    return true
  end
  local opts = config.options
  state.reset()
  state.started = true
  state.setup_time = compat.uv.hrtime()
  local root = config.root_dir(opts)
  local socket = config.tmux_socket(root, opts)
  state.root, state.socket = root, socket
  -- Asked first: a folder's own .venv sidecar runs only once the folder is trusted.
  require("cao.trust").maybe_ask(root)
  local cmd, why = config.full_cmd(root, socket, opts)
  if not cmd then
    state.exit_code = -1
    state.start_error = why
    util.error(why)
    fail_queue(why)
    state.changed()
    return false
  end
  state.cmd = cmd
  local init_options = vim.tbl_deep_extend("force", { askUser = false }, opts.init_options or {})
  local ok, id = pcall(compat.start_client, {
    name = "cao-sidecar",
    cmd = cmd,
    cmd_env = opts.cmd_env,
    cmd_cwd = root,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = root } },
    init_options = init_options,
    capabilities = compat.capabilities(),
    handlers = require("cao.handlers").build(),
    on_init = on_init,
    on_exit = on_exit,
  })
  if not ok or not id then
    state.exit_code = -1
    local msg = "could not start " .. table.concat(cmd, " ") .. (ok and "" or (": " .. tostring(id)))
    state.start_error = msg
    util.error(msg)
    fail_queue(msg)
    state.changed()
    return false
  end
  state.client_id = id
  state.running = true
  state.changed()
  return true
end

--- Stop the sidecar (agents keep running in tmux).
function M.stop()
  local c = client or compat.get_client(state.client_id)
  if c and state.running then
    stopping = true
    compat.stop(c)
  end
end

--- Send a request; handler(err, result) with err nil or {code, message, data}. Requests made
--- before the sidecar is initialized wait for it. on_sent(request_id) is called once it is sent
--- (for cancelling).
function M.request(method, params, handler, on_sent)
  if not state.running and not state.started then
    M.start()
  end
  if state.initialized and client then
    return send({ method = method, params = params, handler = handler, on_sent = on_sent })
  end
  if not state.running then
    call(handler, { message = not_running_reason() })
    return nil
  end
  table.insert(queue, { method = method, params = params, handler = handler, on_sent = on_sent })
  return nil
end

function M.cancel(request_id)
  if client and request_id then
    compat.cancel_request(client, request_id)
  end
end

function M.get()
  return client
end

return M
