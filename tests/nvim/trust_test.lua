-- Workspace trust in the cao Neovim client, headless, against the real sidecar.
-- Environment: CAO_TEST_OUT (results JSON), CAO_TEST_BASE (holds hostile/, trusted-parent/child,
-- link -> trusted-parent/child, corrupt-config/), CAO_TEST_SOCKET, CAO_TEST_ENV (JSON: the
-- sidecar's environment), CAO_TEST_TRUST_CLI ("1" if `cao-sidecar trust` exists).
-- Writes {steps = {name = {ok, error, ms}}, data = {...}} and exits 0 if every step passed.
local uv = vim.uv or vim.loop

local out_path = assert(os.getenv("CAO_TEST_OUT"))
local base = assert(os.getenv("CAO_TEST_BASE"))
local socket = assert(os.getenv("CAO_TEST_SOCKET"))
local cmd_env = vim.fn.json_decode(os.getenv("CAO_TEST_ENV") or "{}")
local has_trust_cli = os.getenv("CAO_TEST_TRUST_CLI") == "1"

local hostile = base .. "/hostile"
local child = base .. "/trusted-parent/child"
local link = base .. "/link"

local harness = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/harness.lua")
local data, notifications = harness.data, harness.notifications
local wait_for, step = harness.wait_for, harness.step

-- The person: "Not now" to the trust question (until trust_answer says otherwise).
local trust_answer = "Not now"
local selects = {}
vim.ui.select = function(items, opts, on_choice)
  local shown = vim.tbl_map(opts and opts.format_item or tostring, items)
  table.insert(selects, { items = vim.deepcopy(items), shown = shown, prompt = opts and opts.prompt or "", kind = opts and opts.kind })
  vim.schedule(function()
    on_choice(opts and opts.kind == "cao.trust" and trust_answer or nil)
  end)
end

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

local function find_notification(pattern, from)
  for i = from or 1, #notifications do
    if notifications[i].msg:find(pattern, 1, true) then
      return notifications[i]
    end
  end
  return nil
end

local function trust_selects()
  local n = 0
  for _, s in ipairs(selects) do
    if s.kind == "cao.trust" then
      n = n + 1
    end
  end
  return n
end

local cao = require("cao")
local config = require("cao.config")
local trust = require("cao.trust")
local opts = { cmd_env = cmd_env, tmux_socket = socket, root_dir = hostile }

local function stop_sidecar()
  cao.stop()
  wait_for("the sidecar to stop", 10000, function()
    return not cao.info().running
  end)
end

step("binary_choice", function()
  config.set(opts)
  local function program(root)
    local cmd, why = config.sidecar_cmd(root)
    return cmd and cmd[1] or ("none: " .. tostring(why))
  end
  data.path_sidecar = vim.fn.exepath("cao-sidecar")
  data.hostile_program = program(hostile)
  data.child_program = program(child)
  data.link_program = program(link)
  data.link_trusted_by = trust.trusted_by(link)
  local saved = vim.env.XDG_CONFIG_HOME
  vim.env.XDG_CONFIG_HOME = base .. "/corrupt-config"
  data.corrupt_child_program = program(child)
  vim.env.XDG_CONFIG_HOME = base .. "/no-such-config"
  data.missing_child_program = program(child)
  vim.env.XDG_CONFIG_HOME = saved
  -- Without cao-sidecar on PATH, the untrusted folder's own program is still not run.
  local saved_path = vim.env.PATH
  vim.env.PATH = "/usr/bin:/bin"
  data.hostile_program_no_path = program(hostile)
  vim.env.PATH = saved_path
end)

step("untrusted_start", function()
  cao.setup(opts)
  wait_for("the client to be initialized", 20000, function()
    return cao.info().initialized
  end)
  wait_for("the trust question", 5000, function()
    return trust_selects() > 0
  end)
  vim.wait(300)
  local info = cao.info()
  data.cmd = info.cmd
  data.methods = info.methods
  data.trust_selects = vim.deepcopy(selects)
  data.not_now_notified = find_notification("stays untrusted") ~= nil
  data.asked_path = trust.asked_path()
  local file = io.open(trust.asked_path(), "r")
  data.asked_file = file and vim.fn.json_decode(file:read("*a")) or vim.NIL
  if file then
    file:close()
  end
  data.hostile_marker_after_start = exists(base .. "/hostile.marker")
end)

step("asked_once", function()
  local before = trust_selects()
  cao.restart()
  wait_for("the restarted sidecar", 20000, function()
    return cao.info().initialized
  end)
  vim.wait(500)
  data.trust_selects_after_restart = trust_selects() - before
  data.hostile_marker_after_restart = exists(base .. "/hostile.marker")
end)

step("trust_changed_notification", function()
  local client = vim.lsp.get_client_by_id(cao.info().client_id)
  local handler = client.handlers["cao/trustChanged"]
  local untrusted = {
    path = hostile, trusted = false, source = "none", hasConfig = true,
    heldBack = { "profile helper: env, permissionMode not applied" },
  }
  handler(nil, { folders = { untrusted } }, { method = "cao/trustChanged" })
  data.statusline_untrusted = cao.statusline()
  local before = #notifications
  handler(nil, { folders = { vim.tbl_extend("force", untrusted, { trusted = true, source = "store", heldBack = {} }) } },
    { method = "cao/trustChanged" })
  data.statusline_trusted = cao.statusline()
  data.trusted_notified = find_notification("is now trusted", before + 1) ~= nil
  before = #notifications
  handler(nil, { folders = { untrusted } }, { method = "cao/trustChanged" })
  local n = find_notification("no longer trusted", before + 1)
  data.untrusted_notification = n and n.msg or vim.NIL
  -- Bad params: no error.
  handler(nil, { folders = "nonsense" }, { method = "cao/trustChanged" })
  handler(nil, vim.NIL, { method = "cao/trustChanged" })
end)

step("untrusted_profile_in_picker", function()
  local state = require("cao.state")
  local saved = state.profiles
  state.set_profiles({ { name = "helper", untrusted = true }, { name = "mock_developer", untrusted = false } })
  require("cao.ui").pick_profile("Spawn profile", function() end)
  state.set_profiles(saved)
  data.profile_picker = selects[#selects].shown
end)

step("checkhealth", function()
  vim.cmd("checkhealth cao")
  data.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  vim.cmd("bwipeout!")
end)

step("trust_via_sidecar", function()
  data.sidecar_has_set_trust = require("cao.state").has_method("cao/setTrust")
  if not data.sidecar_has_set_trust then
    return
  end
  local done
  trust.set(hostile, true, function(err, result)
    done = { err = err or vim.NIL, result = result or vim.NIL }
  end)
  wait_for("cao/setTrust", 10000, function()
    return done ~= nil
  end)
  data.set_trust = done
  data.state_trust_after_set = vim.deepcopy(require("cao.state").trust)
  data.is_trusted_after_set = trust.is_trusted(hostile)
  data.statusline_after_set = cao.statusline()
  local before = #notifications
  vim.cmd("Cao untrust")
  wait_for("the revocation", 10000, function()
    return find_notification(hostile .. " is no longer trusted", before + 1) ~= nil and not trust.is_trusted(hostile)
  end)
  data.is_trusted_after_untrust = trust.is_trusted(hostile)
end)

step("trust_via_cli", function()
  stop_sidecar()
  if not has_trust_cli then
    return
  end
  local before = #notifications
  vim.cmd("Cao trust " .. hostile)
  wait_for("the trust command", 20000, function()
    return find_notification(hostile .. " is trusted", before + 1) ~= nil
  end)
  data.cli_is_trusted = trust.is_trusted(hostile)
  data.cli_program = config.sidecar_cmd(hostile)[1]
  cao.start()
  wait_for("the folder's own sidecar", 20000, function()
    return cao.info().initialized
  end)
  data.cli_started_cmd = cao.info().cmd
  data.hostile_marker_after_trust = exists(base .. "/hostile.marker")
  stop_sidecar()
  before = #notifications
  vim.cmd("Cao untrust " .. hostile)
  wait_for("the untrust command", 20000, function()
    return find_notification(hostile .. " is no longer trusted", before + 1) ~= nil
  end)
  data.cli_is_trusted_after_untrust = trust.is_trusted(hostile)
  data.cli_program_after_untrust = config.sidecar_cmd(hostile)[1]
end)

step("question_answered_trust", function()
  if not has_trust_cli then
    return
  end
  -- Asked again (the memory cleared): "Trust" records it at once (no sidecar has started yet).
  os.remove(trust.asked_path())
  trust_answer = "Trust"
  local before = #notifications
  cao.start()
  wait_for("the trust from the question", 20000, function()
    return find_notification(hostile .. " is trusted", before + 1) ~= nil
  end)
  data.question_trust_is_trusted = trust.is_trusted(hostile)
  wait_for("the sidecar", 20000, function()
    return cao.info().initialized
  end)
  stop_sidecar()
end)

step("cli_missing", function()
  -- No sidecar and no cao-sidecar on PATH: a clear error, nothing run.
  local saved_path = vim.env.PATH
  vim.env.PATH = "/usr/bin:/bin"
  local before = #notifications
  local err
  trust.set(hostile, true, function(e)
    err = e
  end)
  vim.env.PATH = saved_path
  data.cli_missing_error = err or vim.NIL
  data.cli_missing_notified = find_notification("not on $PATH", before + 1) ~= nil
end)

harness.finish(out_path)
