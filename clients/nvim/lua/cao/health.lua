-- :checkhealth cao — the sidecar (found, its version, the running instance), tmux, and the
-- agent CLIs the providers run.
local compat = require("cao.compat")
local config = require("cao.config")
local state = require("cao.state")

local M = {}

-- The command of each provider's CLI, and the provider name the sidecar uses for it.
M.clis = {
  { "claude", "claude_code" },
  { "codex", "codex" },
  { "gemini", "gemini_cli" },
  { "opencode", "opencode" },
  { "aider", "aider" },
  { "kiro-cli", "kiro_cli" },
  { "q", "q_cli" },
  { "copilot", "copilot" },
  { "cursor-agent", "cursor" },
}

-- A throwaway tmux socket for asking a sidecar its version (killed afterwards).
local HEALTH_SOCKET = "cao-checkhealth"

local function join(data)
  return table.concat(data or {}, "\n")
end

--- Run argv, wait at most timeout_ms. Returns exit code (nil on timeout or failure), stdout,
--- stderr.
local function run(argv, timeout_ms)
  local out, err = {}, {}
  local ok, job = pcall(vim.fn.jobstart, argv, {
    stdout_buffered = true,
    stderr_buffered = true,
    on_stdout = function(_, data)
      out = data
    end,
    on_stderr = function(_, data)
      err = data
    end,
  })
  if not ok or type(job) ~= "number" or job <= 0 then
    return nil, "", ok and "cannot run " .. argv[1] or tostring(job)
  end
  local code = vim.fn.jobwait({ job }, timeout_ms)[1]
  if code == -1 then
    vim.fn.jobstop(job)
    return nil, join(out), "timed out after " .. timeout_ms .. " ms"
  end
  return code, join(out), join(err)
end

local function frame(message)
  local body = compat.json_encode(message)
  return ("Content-Length: %d\r\n\r\n%s"):format(#body, body)
end

--- Start the sidecar, send `initialize`, read serverInfo from the answer, then `exit`.
--- Returns the initialize result or nil, why.
local function handshake(cmd, timeout_ms)
  local argv = vim.list_extend(vim.deepcopy(cmd), { "--stdio", "--tmux-socket", HEALTH_SOCKET })
  local stream, stderr, result = "", {}, nil
  local ok, job = pcall(vim.fn.jobstart, argv, {
    on_stdout = function(_, data)
      stream = stream .. table.concat(data, "\n")
      local head_end, body_start = stream:find("\r\n\r\n", 1, true)
      if not head_end or result then
        return
      end
      local length = tonumber(stream:sub(1, head_end):match("Content%-Length:%s*(%d+)"))
      local body = stream:sub(body_start + 1)
      if length and #body >= length then
        local decoded_ok, message = pcall(compat.json_decode, body:sub(1, length))
        result = decoded_ok and type(message) == "table" and message or { error = { message = "bad answer" } }
      end
    end,
    on_stderr = function(_, data)
      vim.list_extend(stderr, data)
    end,
  })
  if not ok or type(job) ~= "number" or job <= 0 then
    return nil, "cannot run " .. table.concat(argv, " ")
  end
  vim.fn.chansend(job, frame({
    jsonrpc = "2.0",
    id = 1,
    method = "initialize",
    params = {
      processId = vim.fn.getpid(),
      rootUri = vim.NIL,
      capabilities = vim.empty_dict(),
      initializationOptions = { askUser = false },
    },
  }))
  vim.wait(timeout_ms, function()
    return result ~= nil
  end, 20)
  -- Let it exit by itself (it may be starting its tmux server: killing it then leaves litter).
  pcall(vim.fn.chansend, job, frame({ jsonrpc = "2.0", method = "exit" }))
  pcall(vim.fn.chanclose, job, "stdin")
  if vim.fn.jobwait({ job }, 3000)[1] == -1 then
    vim.fn.jobstop(job)
    vim.fn.jobwait({ job }, 2000)
  end
  if vim.fn.executable("tmux") == 1 then
    run({ "tmux", "-L", HEALTH_SOCKET, "kill-server" }, 2000)
    local dir = (vim.env.TMUX_TMPDIR or "/tmp") .. "/tmux-" .. compat.uv.getuid()
    os.remove(dir .. "/" .. HEALTH_SOCKET)
  end
  if not result then
    local tail = vim.trim(table.concat(stderr, "\n")):sub(-400)
    return nil, "no answer to initialize within " .. timeout_ms .. " ms" .. (tail ~= "" and (": " .. tail) or "")
  end
  if result.error then
    return nil, tostring(result.error.message)
  end
  return result.result
end

local function sidecar_version(cmd, h)
  if state.initialized and state.server_info and state.cmd and state.cmd[1] == cmd[1] then
    return h.ok(("version %s (from the running sidecar)"):format(tostring(state.server_info.version)))
  end
  local code, out = run(vim.list_extend(vim.deepcopy(cmd), { "--version" }), 5000)
  local version = code == 0 and out:match("(%d+%.%d+[%w%.%-%+]*)") or nil
  if version then
    return h.ok(("version %s (from --version)"):format(version))
  end
  local result, why = handshake(cmd, 10000)
  if not result then
    return h.error("it does not start: " .. tostring(why))
  end
  local info = type(result.serverInfo) == "table" and result.serverInfo or {}
  local caps = type(result.capabilities) == "table" and result.capabilities or {}
  local cao = type(caps.experimental) == "table" and caps.experimental.cao or nil
  h.ok(("version %s (from its initialize answer)"):format(tostring(info.version)))
  if type(cao) ~= "table" then
    h.error("it does not announce the cao protocol (capabilities.experimental.cao): is it cao-sidecar?")
  end
end

local function check_sidecar(h)
  h.start("cao-sidecar")
  local v = vim.version()
  if compat.has("0.7") then
    h.ok(("Neovim %d.%d.%d"):format(v.major, v.minor, v.patch))
  else
    h.error("Neovim 0.7 or newer is required")
  end
  local root = state.root or config.root_dir()
  local cmd, why = config.sidecar_cmd(root)
  if not cmd then
    h.error(why, { "pip install cao-sidecar (or into the project's .venv)", "or set cmd in require('cao').setup{}" })
  else
    h.ok("found: " .. table.concat(cmd, " "))
    sidecar_version(cmd, h)
  end

  if state.running and state.initialized then
    local when = state.init_ms and (", initialized in %d ms"):format(math.floor(state.init_ms + 0.5)) or ""
    h.ok(("running for %s on tmux socket %s (LSP client %s%s)"):format(
      tostring(state.root), tostring(state.socket), tostring(state.client_id), when))
    if state.capability then
      h.info("protocol version " .. tostring(state.capability.protocolVersion)
        .. "; providers: " .. table.concat(state.capability.providers or {}, ", "))
      if not state.has_method("cao/answer") then
        h.warn("this sidecar has no cao/answer: answer agents' questions in their terminal (:Cao attach)")
      end
    end
  elseif state.running then
    h.info("starting (" .. table.concat(state.cmd or {}, " ") .. ")")
  elseif state.started then
    h.warn(("not running (exit code %s); see :LspLog, then :Cao restart"):format(tostring(state.exit_code)))
  else
    h.info(("not started: call require('cao').setup() (it would run for %s on tmux socket %s)"):format(
      root, config.tmux_socket(root)))
  end
end

local function check_tmux(h)
  h.start("tmux")
  if vim.fn.executable("tmux") ~= 1 then
    return h.error("tmux not found: every agent runs in a tmux window", { "install tmux (e.g. apt-get install tmux)" })
  end
  local code, out = run({ "tmux", "-V" }, 5000)
  if code == 0 then
    h.ok(vim.trim(out) .. " (" .. vim.fn.exepath("tmux") .. ")")
  else
    h.warn("tmux -V failed: " .. vim.trim(out))
  end
end

local function check_clis(h)
  h.start("agent CLIs")
  local found = 0
  for _, item in ipairs(M.clis) do
    local exe, provider = item[1], item[2]
    if vim.fn.executable(exe) == 1 then
      found = found + 1
      h.ok(("%s (provider %s): %s"):format(exe, provider, vim.fn.exepath(exe)))
    else
      h.info(("%s (provider %s): not found"):format(exe, provider))
    end
  end
  if found == 0 then
    h.warn("no agent CLI found: only the built-in mock provider works", { "install one, e.g. Claude Code or Codex" })
  end
end

local function check_trust(h)
  h.start("workspace trust")
  local trust = require("cao.trust")
  local root = state.root or config.root_dir()
  h.info("trust store: " .. trust.store_path())
  local by = trust.trusted_by(root)
  if by then
    h.ok(root .. " is trusted" .. (by ~= trust.realpath(root) and (" (through " .. by .. ")") or ""))
  elseif trust.has_config(root) then
    h.warn(root .. " has a .cao/ and is not trusted: its flows, providers, profile settings and its own "
      .. ".venv/bin/cao-sidecar are held back", { ":Cao trust (or cao-sidecar trust " .. root .. ")" })
  else
    h.info(root .. " is not trusted (it has no .cao/)")
  end
  for _, folder in ipairs(state.trust or {}) do
    local says = ("the running sidecar: %s %s (%s)"):format(folder.path, folder.trusted and "trusted" or "untrusted",
      tostring(folder.source))
    if folder.trusted or #folder.heldBack == 0 then
      h.info(says)
    else
      h.warn(says .. "; held back: " .. table.concat(folder.heldBack, "; "))
    end
  end
end

function M.check()
  local h = compat.health()
  check_sidecar(h)
  check_trust(h)
  check_tmux(h)
  check_clis(h)
end

return M
