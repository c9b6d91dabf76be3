-- Options, the project root, the sidecar command and the tmux socket.
local compat = require("cao.compat")

local M = {}

M.defaults = {
  -- The sidecar command: a string or a list. Default: <root>/.venv/bin/cao-sidecar if it exists
  -- and the folder is trusted (:Cao trust), else cao-sidecar on $PATH. "--stdio --tmux-socket
  -- <socket>" is appended.
  cmd = nil,
  -- Extra environment variables for the sidecar process.
  cmd_env = nil,
  -- The tmux server the agents run in. Default: "cao-" .. first 12 hex digits of the SHA-256 of
  -- the project root, so two projects never share one.
  tmux_socket = nil,
  -- Provider (agent CLI) for :Cao spawn/handoff/assign; nil: each profile's own.
  provider = nil,
  -- Whether a new worker (:Cao spawn/handoff to a profile/assign) gets its own git worktree and
  -- branch: true, false, or nil (its profile's `worktree` decides). See :Cao worktrees.
  worktree = nil,
  -- The project root: a path, or a function returning one. Default: the nearest directory above
  -- the current file (or the working directory) that holds one of root_markers; else the
  -- working directory.
  root_dir = nil,
  root_markers = { ".cao", ".git" },
  -- vim.notify when a worker finishes or an agent asks a question.
  notify = true,
  -- Open vim.ui.select (or vim.ui.input for a free-text question) at once when an agent asks.
  -- false: only notify; answer with :Cao answer or "r" in :Cao agents.
  ask = true,
  -- The first time a folder with a .cao/ that is not trusted is opened, ask once whether to trust
  -- it (vim.ui.select); false: never ask (:Cao trust still works).
  ask_trust = true,
  -- Start the sidecar in setup(); false: on the first :Cao command.
  autostart = true,
  -- Passed as --log-level (the sidecar logs to stderr, which Neovim writes to its LSP log).
  log_level = nil,
  -- How :Cao attach and "a" in :Cao agents open the agent's terminal.
  attach_split = "botright split",
  -- How :Cao output opens an agent's output.
  output_split = "botright split",
  -- Timeout of :Cao handoff in seconds; nil: the sidecar's default (600).
  handoff_timeout = nil,
  -- The floating agent list.
  float = { border = "rounded", width = 0.7, height = 0.5 },
  -- Keys of the agent list.
  keys = {
    output = "o",
    attach = "a",
    send = "s",
    handoff = "h",
    terminate = "x",
    answer = "r",
    refresh = "R",
    close = "q",
  },
  -- Merged into the initializationOptions. askUser = false: prompts are answered through this
  -- plugin's own UI (cao/answer), not through window/showMessageRequest.
  init_options = {},
}

M.options = vim.deepcopy(M.defaults)

function M.set(opts)
  M.options = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  return M.options
end

local function normalize(path)
  path = vim.fn.fnamemodify(path, ":p")
  if #path > 1 then
    path = path:gsub("/+$", "")
  end
  return path
end
M.normalize = normalize

local function find_up(start, markers)
  local dir = start
  while dir and dir ~= "" do
    for _, marker in ipairs(markers) do
      if compat.uv.fs_stat(dir .. "/" .. marker) then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ":h")
    if parent == dir then
      return nil
    end
    dir = parent
  end
  return nil
end

--- The project root (absolute, no trailing slash).
function M.root_dir(opts)
  opts = opts or M.options
  local root = opts.root_dir
  if type(root) == "function" then
    root = root()
  end
  if type(root) == "string" and root ~= "" then
    return normalize(root)
  end
  local cwd = normalize(vim.fn.getcwd())
  local start = cwd
  local file = vim.api.nvim_buf_get_name(0)
  if file ~= "" and not file:match("^%a+://") then
    start = normalize(vim.fn.fnamemodify(file, ":p:h"))
  end
  return find_up(start, opts.root_markers or {}) or cwd
end

--- The tmux socket for a project root: the user's setting, else "cao-" + sha256(root)[:12].
function M.tmux_socket(root, opts)
  opts = opts or M.options
  if type(opts.tmux_socket) == "string" and opts.tmux_socket ~= "" then
    return opts.tmux_socket
  end
  return "cao-" .. vim.fn.sha256(root):sub(1, 12)
end

--- The sidecar program (a list), without the arguments this plugin adds; nil, why if not found.
function M.sidecar_cmd(root, opts)
  opts = opts or M.options
  local cmd = opts.cmd
  if type(cmd) == "string" then
    cmd = { cmd }
  end
  if type(cmd) == "table" and #cmd > 0 then
    cmd = vim.deepcopy(cmd)
    if vim.fn.executable(cmd[1]) ~= 1 then
      return nil, ("the sidecar command %q is not executable"):format(cmd[1])
    end
    return cmd
  end
  -- The folder's own .venv is the folder's code: run only once the user trusts the folder.
  local venv = root .. "/.venv/bin/cao-sidecar"
  local venv_found = vim.fn.executable(venv) == 1
  if venv_found and require("cao.trust").is_trusted(root) then
    return { venv }
  end
  if vim.fn.executable("cao-sidecar") == 1 then
    return { vim.fn.exepath("cao-sidecar") }
  end
  if venv_found then
    return nil, ("cao-sidecar is not on $PATH, and %s is not run because %s is not trusted; "
      .. "trust it (cao-sidecar trust %s) or set cmd in require('cao').setup()"):format(venv, root, root)
  end
  return nil, "cao-sidecar not found (neither on $PATH nor in " .. root .. "/.venv/bin); "
    .. "install it (pip install cao-sidecar) or set cmd in require('cao').setup()"
end

--- The full command line to start the sidecar for a root.
function M.full_cmd(root, socket, opts)
  opts = opts or M.options
  local cmd, why = M.sidecar_cmd(root, opts)
  if not cmd then
    return nil, why
  end
  table.insert(cmd, "--stdio")
  table.insert(cmd, "--tmux-socket")
  table.insert(cmd, socket)
  if opts.log_level then
    table.insert(cmd, "--log-level")
    table.insert(cmd, tostring(opts.log_level))
  end
  return cmd
end

return M
