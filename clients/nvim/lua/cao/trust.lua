-- Workspace trust on the editor's side: read the user's trust store (never anything of the
-- workspace's), ask once per folder, and grant or revoke through the running sidecar
-- (cao/setTrust) or the `cao-sidecar trust` command. Before trust nothing of the folder runs, not
-- even its own .venv/bin/cao-sidecar (see cao.config.sidecar_cmd).
local compat = require("cao.compat")
local util = require("cao.util")

local M = {}

local uv = compat.uv

--- $XDG_CONFIG_HOME/cao-sidecar/trust.json (the sidecar's store: platformdirs' user config dir).
function M.store_path()
  local base = vim.env.XDG_CONFIG_HOME
  if type(base) ~= "string" or vim.trim(base) == "" then
    base = (vim.env.HOME or "") .. "/.config"
  end
  return base .. "/cao-sidecar/trust.json"
end

--- A path with symlinks resolved; the path itself when it does not exist.
local function realpath(path)
  return uv.fs_realpath(path) or path
end
M.realpath = realpath

local function read_json(path)
  local file = io.open(path, "r")
  if not file then
    return nil
  end
  local text = file:read("*a")
  file:close()
  local ok, value = pcall(compat.json_decode, text)
  if ok and type(value) == "table" then
    return value
  end
  return nil
end

--- The trusted folders' real paths (a set). A missing, unreadable or corrupt store trusts nothing.
function M.trusted_folders()
  local store = read_json(M.store_path())
  local folders = {}
  if not store or store.version ~= 1 or type(store.trusted) ~= "table" then
    return folders
  end
  for key in pairs(store.trusted) do
    if type(key) == "string" and key:sub(1, 1) == "/" then
      folders[key] = true
      folders[realpath(key)] = true
    end
  end
  return folders
end

--- The trusted folder (the root itself or a parent) that covers root, or nil.
function M.trusted_by(root)
  local folders = M.trusted_folders()
  local path = realpath(root)
  while true do
    if folders[path] then
      return path
    end
    local parent = vim.fn.fnamemodify(path, ":h")
    if parent == path or parent == "" then
      return nil
    end
    path = parent
  end
end

function M.is_trusted(root)
  return M.trusted_by(root) ~= nil
end

--- The folder has a .cao/ (profiles, flows, providers: what trust is about).
function M.has_config(root)
  local stat = uv.fs_stat(root .. "/.cao")
  return stat ~= nil and stat.type == "directory"
end

-- ---- the one question per folder -----------------------------------------------------------

--- Where the folders already asked about are remembered: stdpath("state") (Neovim 0.8+), else
--- stdpath("data") (0.7 has no state dir).
function M.asked_path()
  local ok, dir = pcall(vim.fn.stdpath, "state")
  if not ok or type(dir) ~= "string" or dir == "" then
    dir = vim.fn.stdpath("data")
  end
  return dir .. "/cao/trust-asked.json"
end

local function asked()
  local value = read_json(M.asked_path())
  return type(value) == "table" and value or {}
end

function M.was_asked(root)
  return asked()[realpath(root)] ~= nil
end

local function remember_asked(root)
  local all = asked()
  all[realpath(root)] = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local path = M.asked_path()
  vim.fn.mkdir(vim.fn.fnamemodify(path, ":h"), "p")
  local tmp = path .. ".tmp"
  local file = io.open(tmp, "w")
  if not file then
    return util.error("cannot write " .. tmp)
  end
  file:write(compat.json_encode(all))
  file:close()
  os.rename(tmp, path)
end

M.CHOICE_TRUST = "Trust"
M.CHOICE_LATER = "Not now"

--- The first time a folder with a .cao/ that is not trusted is opened: one question. Remembered
--- per folder (whatever the answer, also when dismissed), so it is asked once.
function M.maybe_ask(root)
  if require("cao.config").options.ask_trust == false then
    return false
  end
  if not M.has_config(root) or M.is_trusted(root) or M.was_asked(root) then
    return false
  end
  remember_asked(root)
  -- Scheduled: the default vim.ui.select waits for keys, and setup() must not.
  vim.schedule(function()
    local prompt = ("cao: %s has a .cao/ (agent profiles, flows, providers). Until you trust it, "
      .. "nothing in it runs. Trust this folder?"):format(root)
    vim.ui.select({ M.CHOICE_TRUST, M.CHOICE_LATER }, { prompt = prompt, kind = "cao.trust" }, function(choice)
      if choice == M.CHOICE_TRUST then
        M.set(root, true)
      else
        util.info(("%s stays untrusted; :Cao trust to trust it later"):format(root))
      end
    end)
  end)
  return true
end

-- ---- granting and revoking ----------------------------------------------------------------

--- The command for `cao-sidecar trust`: the user's own `cmd` option, else cao-sidecar on $PATH.
--- Never the folder's .venv: that is what trust is about.
function M.cli_cmd()
  local cmd = require("cao.config").options.cmd
  if type(cmd) == "string" then
    cmd = { cmd }
  end
  if type(cmd) == "table" and #cmd > 0 then
    return vim.deepcopy(cmd)
  end
  if vim.fn.executable("cao-sidecar") == 1 then
    return { vim.fn.exepath("cao-sidecar") }
  end
  return nil
end

local function after_change(root, trusted)
  local state = require("cao.state")
  util.info(("%s is %s"):format(root, trusted and "trusted" or "no longer trusted"))
  state.changed()
  if trusted and state.running and state.root == root then
    local cmd = require("cao.config").sidecar_cmd(root)
    if cmd and state.cmd and cmd[1] ~= state.cmd[1] then
      util.info(("the folder's own %s runs after :Cao restart"):format(cmd[1]))
    end
  end
end

local function run_cli(root, trusted, callback)
  local cmd = M.cli_cmd()
  if not cmd then
    local why = "cannot change trust: the sidecar is not running and cao-sidecar is not on $PATH"
    util.error(why)
    return callback and callback(why)
  end
  vim.list_extend(cmd, trusted and { "trust", root } or { "trust", "--revoke", root })
  local output = {}
  local function collect(_, data)
    vim.list_extend(output, data or {})
  end
  local ok, job = pcall(vim.fn.jobstart, cmd, {
    env = require("cao.config").options.cmd_env,
    on_stdout = collect,
    on_stderr = collect,
    on_exit = function(_, code)
      vim.schedule(function()
        if code ~= 0 then
          local text = vim.trim(table.concat(output, "\n"))
          local why = ("%s failed (exit %d)%s"):format(table.concat(cmd, " "), code, text ~= "" and (": " .. text) or "")
          util.error(why)
          return callback and callback(why)
        end
        after_change(root, trusted)
        return callback and callback(nil, { via = "cli", cmd = cmd })
      end)
    end,
  })
  if not ok or type(job) ~= "number" or job <= 0 then
    local why = "cannot run " .. table.concat(cmd, " ")
    util.error(why)
    return callback and callback(why)
  end
end

--- Trust (trusted = true) or stop trusting a folder, for good (persist: the user's store).
--- Through the running sidecar if it serves that folder and knows cao/setTrust, else through
--- `cao-sidecar trust`. callback(err, result) when done.
function M.set(root, trusted, callback)
  root = require("cao.config").normalize(root)
  local state = require("cao.state")
  if state.initialized and state.root == root and state.has_method("cao/setTrust") then
    return require("cao.client").request("cao/setTrust", { trusted = trusted, path = root, persist = true },
      function(err, result)
        if err then
          util.request_failed(trusted and "trust" or "untrust", err)
          return callback and callback(util.error_message(err))
        end
        if type(result) == "table" then
          M.set_folders(result.folders)
        end
        after_change(root, trusted)
        return callback and callback(nil, { via = "sidecar", result = result })
      end)
  end
  return run_cli(root, trusted, callback)
end

-- ---- what the sidecar says ----------------------------------------------------------------

--- TrustInfo list from cao/getTrust, cao/setTrust or cao/trustChanged. Returns the folders whose
--- trust changed since the last list.
function M.set_folders(folders)
  local state = require("cao.state")
  local changed = {}
  if type(folders) ~= "table" then
    return changed
  end
  local before = {}
  for _, info in ipairs(state.trust or {}) do
    before[info.path] = info.trusted
  end
  state.trust = {}
  for _, info in ipairs(folders) do
    if type(info) == "table" and type(info.path) == "string" then
      local entry = {
        path = info.path,
        trusted = info.trusted == true,
        source = info.source ~= vim.NIL and info.source or nil,
        hasConfig = info.hasConfig == true,
        heldBack = type(info.heldBack) == "table" and info.heldBack or {},
      }
      table.insert(state.trust, entry)
      if before[entry.path] ~= nil and before[entry.path] ~= entry.trusted then
        table.insert(changed, entry)
      end
    end
  end
  return changed
end

--- cao/trustChanged: keep the new state; say so when a folder's trust changed.
function M.on_changed(params)
  if type(params) ~= "table" then
    return
  end
  for _, info in ipairs(M.set_folders(params.folders)) do
    if info.trusted then
      util.info(info.path .. " is now trusted: its .cao/ is in force")
    else
      local held = #info.heldBack > 0 and (" (held back: " .. table.concat(info.heldBack, "; ") .. ")") or ""
      util.warn(info.path .. " is no longer trusted: its .cao/ is not in force" .. held)
    end
  end
  require("cao.state").changed()
end

--- Ask the running sidecar (if it knows cao/getTrust) for the trust of its folders.
function M.seed()
  local state = require("cao.state")
  if not state.has_method("cao/getTrust") then
    return
  end
  require("cao.client").request("cao/getTrust", {}, function(err, result)
    if not err and type(result) == "table" then
      M.set_folders(result.folders)
      state.changed()
    end
  end)
end

return M
