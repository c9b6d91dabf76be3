-- Drives the cao Neovim client against a real sidecar and the mock agent, headless.
-- Environment: CAO_TEST_OUT (results JSON), CAO_TEST_WORKSPACE, CAO_TEST_SOCKET, CAO_TEST_CMD
-- (JSON list: the sidecar command), CAO_TEST_ENV (JSON object: the sidecar's environment).
-- Writes {steps = {name = {ok, error, ms}}, data = {...}} and exits 0 if every step passed.
local uv = vim.uv or vim.loop
local started = uv.hrtime()

local out_path = assert(os.getenv("CAO_TEST_OUT"))
local workspace = assert(os.getenv("CAO_TEST_WORKSPACE"))
local socket = assert(os.getenv("CAO_TEST_SOCKET"))
local cmd = vim.fn.json_decode(assert(os.getenv("CAO_TEST_CMD")))
local cmd_env = vim.fn.json_decode(os.getenv("CAO_TEST_ENV") or "{}")

local harness = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/harness.lua")
local data, notifications = harness.data, harness.notifications
local wait_for, step = harness.wait_for, harness.step

-- ---- fakes for the UI a person would use (vim.notify: recorded by the harness) -------------
local selects = {}
vim.ui.select = function(items, opts, on_choice)
  local entry = { items = vim.deepcopy(items), prompt = opts and opts.prompt or "" }
  table.insert(selects, entry)
  local pick
  for i, item in ipairs(items) do
    local text = type(item) == "string" and item or ""
    if text:lower() == "yes" or text:lower() == "y" then
      pick = i
      break
    end
  end
  entry.picked = pick and items[pick] or nil
  vim.schedule(function()
    on_choice(pick and items[pick] or nil, pick)
  end)
end
local inputs = {}
vim.ui.input = function(opts, on_confirm)
  table.insert(inputs, opts and opts.prompt or "")
  vim.schedule(function()
    on_confirm(nil)
  end)
end

-- ---- helpers ------------------------------------------------------------------------------
local function find_notification(pattern, level)
  for _, n in ipairs(notifications) do
    if n.msg:find(pattern, 1, true) and (level == nil or n.level == level) then
      return n
    end
  end
  return nil
end

local function buffer_named(name)
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(buf) == name then
      return buf
    end
  end
  return nil
end

local function buffer_text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
end

local function agent_by_name(name)
  for _, agent in ipairs(require("cao").agents()) do
    if agent.name == name then
      return agent
    end
  end
  return nil
end

local function checkhealth()
  vim.cmd("checkhealth cao")
  local lines = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  vim.cmd("bwipeout!")
  return lines
end

-- Progress as Neovim's own $/progress handling records it.
local progress = {}
if vim.fn.has("nvim-0.10") == 1 then
  vim.api.nvim_create_autocmd("LspProgress", {
    callback = function(ev)
      local params = ev.data and ev.data.params or {}
      local value = params.value or {}
      table.insert(progress, { token = params.token, kind = value.kind, title = value.title, message = value.message })
      data.lsp_status = data.lsp_status or vim.lsp.status()
    end,
  })
else
  vim.api.nvim_create_autocmd("User", {
    pattern = "LspProgressUpdate",
    callback = function()
      for _, msg in ipairs(vim.lsp.util.get_progress_messages()) do
        table.insert(progress, { title = msg.title, message = msg.message, done = msg.done or false })
      end
    end,
  })
end

local cao = require("cao")
local opts = {
  cmd = cmd,
  cmd_env = cmd_env,
  tmux_socket = socket,
  root_dir = workspace,
}

-- ---- the steps ----------------------------------------------------------------------------
step("checkhealth_before_start", function()
  cao.setup(vim.tbl_extend("force", opts, { autostart = false }))
  data.health_before = checkhealth()
end)

step("missing_sidecar", function()
  local before = #notifications
  cao.setup(vim.tbl_extend("force", opts, { cmd = { workspace .. "/no-such-sidecar" } }))
  data.missing_statusline = cao.statusline()
  vim.cmd("Cao spawn mock_developer")
  data.missing_notifications = vim.list_slice(notifications, before + 1)
end)

step("setup", function()
  local t0 = uv.hrtime()
  cao.setup(opts)
  data.statusline_starting = cao.statusline()
  wait_for("the client to be initialized", 15000, function()
    return cao.info().initialized
  end)
  data.setup_to_initialized_ms = (uv.hrtime() - t0) / 1e6
  local info = cao.info()
  data.init_ms = info.init_ms
  data.server_info = info.server_info
  data.methods = info.methods
  data.cmd = info.cmd
  data.root = info.root
  data.tmux_socket = info.tmux_socket
  data.nvim_version = tostring(vim.version().major) .. "." .. vim.version().minor .. "." .. vim.version().patch
  data.default_socket = require("cao.config").tmux_socket(workspace, {})
  local client = vim.lsp.get_client_by_id(info.client_id)
  data.init_options = client and client.config.init_options or vim.NIL
  wait_for("the profiles", 10000, function()
    return #cao.profiles() > 0
  end)
  data.profiles = cao.profiles()
  data.statusline_empty = cao.statusline()
end)

step("completion", function()
  data.complete_subcommands = vim.fn.getcompletion("Cao ", "cmdline")
  data.complete_sp = vim.fn.getcompletion("Cao sp", "cmdline")
  data.complete_spawn_mock = vim.fn.getcompletion("Cao spawn mock_", "cmdline")
  data.complete_assign = vim.fn.getcompletion("Cao assign mock_r", "cmdline")
end)

local dev
step("spawn", function()
  vim.cmd("Cao spawn mock_developer dev-1")
  wait_for("dev-1 to be idle", 20000, function()
    local agent = agent_by_name("dev-1")
    return agent ~= nil and agent.status == "idle"
  end)
  dev = agent_by_name("dev-1")
  data.dev = vim.deepcopy(dev)
  data.spawn_notified = find_notification("started") ~= nil
  data.complete_output = vim.fn.getcompletion("Cao output ", "cmdline")
  data.complete_output_mode = vim.fn.getcompletion("Cao output " .. dev.terminalId .. " f", "cmdline")
  data.statusline_one = cao.statusline()
end)

step("handoff", function()
  vim.cmd("Cao handoff mock_developer echo hello from nvim")
  local buf
  wait_for("the handoff answer in an output buffer", 30000, function()
    for _, b in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_get_name(b):match("^cao://output/") and buffer_text(b):find("hello from nvim", 1, true) then
        buf = b
        return true
      end
    end
    return false
  end)
  data.handoff_buffer = { name = vim.api.nvim_buf_get_name(buf), text = buffer_text(buf) }
  data.handoff_notified = find_notification("answered: hello from nvim") ~= nil
  -- To an existing agent, through the Lua API.
  local done
  cao.handoff(dev.terminalId, "echo again", nil, function(err, result)
    done = { err = err or vim.NIL, result = result or vim.NIL }
  end)
  wait_for("the handoff to dev-1", 30000, function()
    return done ~= nil
  end)
  data.handoff_existing = done
  wait_for("progress to end", 5000, function()
    for _, p in ipairs(progress) do
      if p.kind == "end" or p.done then
        return true
      end
    end
    return false
  end)
  data.progress = progress
end)

step("assign", function()
  vim.cmd("Cao assign mock_reviewer echo assigned work")
  wait_for("the completion notification", 30000, function()
    return find_notification("completed: assigned work") ~= nil
  end)
  data.assign_notified = find_notification("assigned to mock_reviewer") ~= nil
  data.assign_completed = find_notification("completed: assigned work").msg
end)

step("agents_list", function()
  vim.cmd("Cao agents")
  local list = require("cao.ui").list_state()
  assert(list.open, "the agent list did not open")
  local win_config = vim.api.nvim_win_get_config(list.win)
  data.list_relative = win_config.relative
  wait_for("dev-1 in the list", 5000, function()
    return buffer_text(list.buf):find(dev.terminalId, 1, true) ~= nil
  end)
  data.list_before = vim.api.nvim_buf_get_lines(list.buf, 0, -1, false)
  -- Live: a slow task shows as processing, then completed, without reopening the list.
  cao.send(dev.terminalId, "sleep 1.5 slow work")
  local saw_processing = false
  wait_for("dev-1 processing in the list", 10000, function()
    for _, line in ipairs(vim.api.nvim_buf_get_lines(list.buf, 0, -1, false)) do
      if line:find(dev.terminalId, 1, true) and line:find("processing", 1, true) then
        saw_processing = true
        data.list_processing = line
        data.statusline_working = cao.statusline()
        return true
      end
    end
    return false
  end)
  wait_for("dev-1 completed in the list", 15000, function()
    for _, line in ipairs(vim.api.nvim_buf_get_lines(list.buf, 0, -1, false)) do
      if line:find(dev.terminalId, 1, true) and line:find("completed", 1, true) then
        data.list_completed = line
        return true
      end
    end
    return false
  end)
  data.list_live = saw_processing
  -- "o" on dev-1's line: its last answer in an output buffer, the list closed.
  for line, id in pairs(list.ids) do
    if id == dev.terminalId then
      vim.api.nvim_win_set_cursor(list.win, { line, 0 })
    end
  end
  vim.api.nvim_feedkeys("o", "x", false)
  local name = "cao://output/" .. dev.terminalId
  wait_for("the output of dev-1", 10000, function()
    local b = buffer_named(name)
    return b ~= nil and buffer_text(b):find("slow work", 1, true) ~= nil
  end)
  data.list_closed_by_o = not require("cao.ui").list_state().open
  data.key_output = buffer_text(buffer_named(name))
  vim.cmd("Cao agents")
  vim.api.nvim_feedkeys("q", "x", false)
  data.list_closed_by_q = not require("cao.ui").list_state().open
end)

step("answer_prompt", function()
  local spawned
  cao.spawn("mock_developer", { name = "asker" }, function(err, result)
    spawned = { err = err, result = result }
  end)
  wait_for("asker to start", 20000, function()
    return spawned ~= nil
  end)
  assert(not spawned.err, vim.inspect(spawned.err))
  local id = spawned.result.terminalId
  data.asker = id
  vim.cmd("Cao send " .. id .. " ask Delete the file?")
  wait_for("the question in vim.ui.select", 20000, function()
    for _, s in ipairs(selects) do
      if s.prompt:find("Delete the file?", 1, true) then
        data.prompt_select = s
        return true
      end
    end
    return false
  end)
  data.asks_notified = find_notification("asks: Delete the file?", vim.log.levels.WARN) ~= nil
  wait_for("asker to finish its turn", 20000, function()
    local agent = cao.agents()
    for _, a in ipairs(agent) do
      if a.terminalId == id then
        return a.status == "completed"
      end
    end
    return false
  end)
  local answer
  cao.output(id, "last", function(err, result)
    answer = { err = err or vim.NIL, result = result or vim.NIL }
  end)
  wait_for("the asker's output", 10000, function()
    return answer ~= nil
  end)
  data.asker_output = answer
  data.answer_notified = find_notification("answered asker") ~= nil

  -- With ask = false: only a notification; answered with :Cao answer (completed).
  require("cao.config").options.ask = false
  local selects_before = #selects
  vim.cmd("Cao send " .. id .. " ask Proceed?")
  wait_for("the question's notification", 20000, function()
    return find_notification("asks: Proceed?", vim.log.levels.WARN) ~= nil
  end)
  data.complete_answer_id = vim.fn.getcompletion("Cao answer ", "cmdline")
  data.complete_answer_choice = vim.fn.getcompletion("Cao answer " .. id .. " ", "cmdline")
  vim.cmd("Cao answer " .. id .. " No")
  wait_for("asker to finish its second turn", 20000, function()
    for _, a in ipairs(cao.agents()) do
      if a.terminalId == id then
        return a.status == "completed"
      end
    end
    return false
  end)
  answer = nil
  cao.output(id, "last", function(err, result)
    answer = { err = err or vim.NIL, result = result or vim.NIL }
  end)
  wait_for("the asker's output", 10000, function()
    return answer ~= nil
  end)
  data.asker_output_command = answer
  data.selects_with_ask_false = #selects - selects_before
  require("cao.config").options.ask = true
end)

step("terminate", function()
  vim.cmd("Cao terminate " .. data.asker)
  wait_for("asker to exit", 20000, function()
    for _, a in ipairs(cao.agents()) do
      if a.terminalId == data.asker then
        return a.status == "exited"
      end
    end
    return true
  end)
  data.statusline_end = cao.statusline()
  data.agents_end = cao.agents()
end)

step("errors", function()
  local before = #notifications
  vim.cmd("Cao spawn no_such_profile")
  wait_for("the error", 10000, function()
    return find_notification("no_such_profile", vim.log.levels.ERROR) ~= nil
  end)
  vim.cmd("Cao output 00000000")
  wait_for("the error", 10000, function()
    return find_notification("00000000", vim.log.levels.ERROR) ~= nil
  end)
  vim.cmd("Cao frobnicate")
  data.error_notifications = vim.list_slice(notifications, before + 1)
end)

step("attach", function()
  vim.cmd("Cao attach " .. dev.terminalId)
  local buf
  wait_for("a terminal attached to dev-1", 10000, function()
    buf = buffer_named("cao://attach/" .. dev.terminalId)
    return buf ~= nil
  end)
  data.attach_current = vim.api.nvim_get_current_buf() == buf
  data.attach_buftype = vim.bo[buf].buftype
  data.attach_name = vim.api.nvim_buf_get_name(buf)
  wait_for("the agent's screen in the terminal", 15000, function()
    return buffer_text(buf):find("slow work", 1, true) ~= nil
  end)
  data.attach_screen = buffer_text(buf)
  vim.cmd("stopinsert")
  -- cao/openTerminal (sent when a user picks "Open terminal" in the sidecar's own question)
  -- opens the same kind of terminal; here through the client's handler, with dev-1's command.
  local client = vim.lsp.get_client_by_id(cao.info().client_id)
  vim.cmd("wincmd p")
  client.handlers["cao/openTerminal"](nil, { terminalId = dev.terminalId, attachCommand = dev.attachCommand or
    require("cao.state").agents[dev.terminalId].attachCommand }, { method = "cao/openTerminal" })
  data.open_terminal_reused = vim.api.nvim_get_current_buf() == buf
  vim.cmd("stopinsert")
  local job = vim.api.nvim_buf_get_var(buf, "terminal_job_id")
  data.windows_before_detach = vim.fn.system({ "tmux", "-L", socket, "list-windows", "-a" })
  vim.fn.jobstop(job)
  vim.fn.jobwait({ job }, 3000)
  vim.cmd("bwipeout!")
  vim.wait(1000)
  data.windows_after_detach = vim.fn.system({ "tmux", "-L", socket, "list-windows", "-a" })
  data.agents_after_detach = cao.agents()
end)

step("checkhealth_running", function()
  data.health_running = checkhealth()
end)

step("worktrees", function()
  -- A worker in its own git worktree (the workspace is a repository): where its work is, its
  -- diff, the merge into main; another one discarded (vim.ui.select answers "Yes").
  local function assigned(message)
    local id
    cao.assign("mock_developer", message, { worktree = true }, function(err, result)
      assert(not err, vim.inspect(err))
      id = result.terminalId
    end)
    wait_for("the assign", 10000, function()
      return id ~= nil
    end)
    wait_for("the worker's work in its notification", 30000, function()
      return find_notification("its work is on cao/mock_developer-" .. id) ~= nil
    end)
    return id
  end
  local id = assigned("edit wt.txt from nvim")
  data.worktree_notified = find_notification("its work is on cao/mock_developer-" .. id).msg
  data.worktree_completion = require("cao.commands").complete("", "Cao merge ", 10)
  vim.cmd("Cao diff " .. id)
  local name = "cao://diff/cao/mock_developer-" .. id
  wait_for("the diff buffer", 15000, function()
    local buf = buffer_named(name)
    return buf ~= nil and buffer_text(buf):find("+from nvim", 1, true) ~= nil
  end)
  data.worktree_diff = buffer_text(buffer_named(name))
  data.worktree_diff_filetype = vim.api.nvim_buf_get_option(buffer_named(name), "filetype")
  vim.cmd("Cao merge " .. id)
  wait_for("the merge", 15000, function()
    return find_notification("cao/mock_developer-" .. id .. " merged into main") ~= nil
  end)
  local other = assigned("edit wt.txt thrown away")
  vim.cmd("Cao discard " .. other)
  wait_for("the discard", 15000, function()
    return find_notification("cao/mock_developer-" .. other .. " discarded") ~= nil
  end)
  data.worktree_ids = { id, other }
  cao.terminate(id)
  wait_for("the worker gone", 10000, function()
    return require("cao.state").agents[id] == nil or require("cao.state").agents[id].status == "exited"
  end)
end)

step("workflows", function()
  vim.cmd("Cao workflow brief topic=nvim")
  wait_for("the run's end", 40000, function()
    return find_notification("brief completed") ~= nil
  end)
  data.workflow_done = find_notification("brief completed").msg
  local shown = false
  require("cao.workflows").show(function()
    shown = true
  end)
  wait_for("the runs buffer", 10000, function()
    return shown
  end)
  data.workflow_lines = vim.api.nvim_buf_get_lines(vim.fn.bufnr("cao://workflows"), 0, -1, false)
end)

step("sidecar_crash", function()
  -- The sidecar's process: its command line ends with our --tmux-socket.
  local pids = {}
  local wanted = "cao_sidecar\0--stdio\0--tmux-socket\0" .. socket .. "\0"
  for _, path in ipairs(vim.fn.glob("/proc/[0-9]*/cmdline", false, true)) do
    local file = io.open(path, "rb")
    local cmdline = file and file:read("*a") or ""
    if file then
      file:close()
    end
    if cmdline:sub(-#wanted) == wanted then
      table.insert(pids, path:match("^/proc/(%d+)/"))
    end
  end
  data.crash_pids = pids
  assert(#pids == 1, "expected one sidecar process, found " .. #pids)
  local before = #notifications
  uv.kill(tonumber(pids[1]), "sigkill")
  wait_for("the client to notice", 10000, function()
    return cao.statusline() == "CAO stopped"
  end)
  vim.cmd("Cao spawn mock_developer")
  vim.wait(200)
  data.crash_notifications = vim.list_slice(notifications, before + 1)
  cao.restart()
  wait_for("the new sidecar", 15000, function()
    return cao.info().initialized
  end)
  data.restart_statusline = cao.statusline()
  -- :Cao restart of a running sidecar: stopped, then a new one.
  local first = cao.info().client_id
  vim.cmd("Cao restart")
  wait_for("the restarted sidecar", 15000, function()
    return cao.info().initialized
  end)
  data.restart_new_client = cao.info().client_id ~= first
end)

-- ---- done ---------------------------------------------------------------------------------
data.selects = selects
data.total_ms = (uv.hrtime() - started) / 1e6
harness.finish(out_path)
