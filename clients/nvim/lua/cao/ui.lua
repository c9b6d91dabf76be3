-- What the user sees: the floating agent list, output buffers, attached terminals, pickers and
-- the questions agents ask.
local compat = require("cao.compat")
local config = require("cao.config")
local state = require("cao.state")
local util = require("cao.util")

local M = {}

local api = vim.api

local function cao()
  return require("cao")
end

-- ---- highlights ---------------------------------------------------------------------------

local status_hl = {
  starting = "CaoStarting",
  idle = "CaoIdle",
  processing = "CaoProcessing",
  stalled = "CaoStalled",
  completed = "CaoCompleted",
  waiting_user_answer = "CaoWaiting",
  error = "CaoError",
  exited = "CaoExited",
}

function M.define_highlights()
  local links = {
    CaoHeader = "Title",
    CaoHelp = "Comment",
    CaoId = "Identifier",
    CaoStarting = "Comment",
    CaoIdle = "Function",
    CaoProcessing = "DiagnosticWarn",
    CaoStalled = "WarningMsg",
    CaoCompleted = "DiagnosticInfo",
    CaoWaiting = "WarningMsg",
    CaoError = "ErrorMsg",
    CaoExited = "Comment",
  }
  for group, target in pairs(links) do
    vim.cmd(("highlight default link %s %s"):format(group, target))
  end
end

-- ---- pickers ------------------------------------------------------------------------------

--- Pick an agent with vim.ui.select. opts: {prompt, filter(agent) -> bool, single (take the only
--- one without asking)}.
function M.pick_agent(opts, callback)
  local agents = {}
  for _, agent in ipairs(state.list()) do
    if agent.status ~= "exited" and (not opts.filter or opts.filter(agent)) then
      table.insert(agents, agent)
    end
  end
  if #agents == 0 then
    util.warn(opts.none or "no agents")
    return
  end
  if opts.single and #agents == 1 then
    return callback(agents[1])
  end
  vim.ui.select(agents, {
    prompt = opts.prompt or "Agent",
    format_item = function(agent)
      return ("%s  %s"):format(util.agent_label(agent), agent.status or "?")
    end,
  }, function(agent)
    if agent then
      callback(agent)
    end
  end)
end

--- Pick a profile with vim.ui.select (fetching the list first if none is known yet).
function M.pick_profile(prompt, callback)
  local function select(names)
    if #names == 0 then
      return util.warn("no profiles")
    end
    -- A profile from an untrusted folder (ProfileInfo.untrusted): its held-back parts are not in force.
    local untrusted = {}
    for _, profile in ipairs(state.profiles) do
      if profile.untrusted == true then
        untrusted[profile.name] = true
      end
    end
    local function format_item(name)
      return untrusted[name] and (name .. "  (untrusted: its settings are held back)") or name
    end
    vim.ui.select(names, { prompt = prompt or "Profile", format_item = format_item }, function(name)
      if name then
        callback(name)
      end
    end)
  end
  local names = state.profile_names()
  if #names > 0 then
    return select(names)
  end
  cao().request("cao/listProfiles", {}, function(err, result)
    if err then
      return util.request_failed("listing profiles", err)
    end
    state.set_profiles(result and result.profiles)
    select(state.profile_names())
  end)
end

--- Ask for a line of text; callback only for a non-empty answer.
function M.input(prompt, callback)
  vim.ui.input({ prompt = prompt }, function(text)
    if type(text) == "string" and text:match("%S") then
      callback(text)
    end
  end)
end

-- ---- output buffers -----------------------------------------------------------------------

local function find_buffer(name)
  for _, buf in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_valid(buf) and api.nvim_buf_get_name(buf) == name then
      return buf
    end
  end
  return nil
end

--- Splits open from a normal window, not from a float (the agent list).
local function leave_float()
  if api.nvim_win_get_config(0).relative == "" then
    return
  end
  for _, win in ipairs(api.nvim_tabpage_list_wins(0)) do
    if api.nvim_win_get_config(win).relative == "" then
      api.nvim_set_current_win(win)
      return
    end
  end
end

local function show_buffer(buf, split)
  for _, win in ipairs(api.nvim_list_wins()) do
    if api.nvim_win_get_buf(win) == buf then
      api.nvim_set_current_win(win)
      return win
    end
  end
  leave_float()
  vim.cmd(split)
  api.nvim_win_set_buf(0, buf)
  return api.nvim_get_current_win()
end

--- Show an agent's output in a scratch buffer "cao://output/<terminalId>".
function M.show_output(terminal_id, text, kind)
  local name = "cao://output/" .. terminal_id
  local buf = find_buffer(name)
  if not buf then
    buf = api.nvim_create_buf(false, true)
    api.nvim_buf_set_name(buf, name)
    vim.bo[buf].bufhidden = "hide"
    vim.bo[buf].filetype = "markdown"
    vim.keymap.set("n", "q", "<cmd>close<cr>", { buffer = buf, silent = true, desc = "Close" })
  end
  local lines = vim.split(text or "", "\n", { plain = true })
  vim.bo[buf].modifiable = true
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  api.nvim_buf_set_var(buf, "cao_terminal_id", terminal_id)
  api.nvim_buf_set_var(buf, "cao_output_kind", kind or "last")
  show_buffer(buf, config.options.output_split)
  return buf
end

-- ---- terminals ----------------------------------------------------------------------------

local function open_terminal(terminal_id, argv)
  local name = "cao://attach/" .. terminal_id
  local existing = find_buffer(name)
  if existing then
    local ok, job = pcall(api.nvim_buf_get_var, existing, "terminal_job_id")
    if ok and vim.fn.jobwait({ job }, 0)[1] == -1 then
      show_buffer(existing, config.options.attach_split)
      return existing
    end
    pcall(api.nvim_buf_delete, existing, { force = true })
  end
  leave_float()
  vim.cmd(config.options.attach_split)
  vim.cmd("enew")
  local buf = api.nvim_get_current_buf()
  local job
  if compat.nvim_0_11 then
    job = vim.fn.jobstart(argv, { term = true })
  else
    job = vim.fn.termopen(argv)
  end
  if type(job) ~= "number" or job <= 0 then
    util.error("could not run " .. table.concat(argv, " "))
    return nil
  end
  pcall(api.nvim_buf_set_name, buf, name)
  api.nvim_buf_set_var(buf, "cao_terminal_id", terminal_id)
  vim.cmd("startinsert")
  return buf
end

local function fallback_attach(agent)
  -- A sidecar without attachCommand: attach to the agent's session on the project's socket.
  if not (agent and agent.session and state.socket) then
    return nil
  end
  return { "tmux", "-L", state.socket, "attach-session", "-t", agent.session }
end

--- Open a terminal split showing the agent's live tmux window (its attachCommand).
function M.attach(terminal_id, argv)
  if type(argv) == "table" and #argv > 0 then
    return open_terminal(terminal_id, argv)
  end
  local agent = state.agents[terminal_id]
  if agent and type(agent.attachCommand) == "table" and #agent.attachCommand > 0 then
    return open_terminal(terminal_id, agent.attachCommand)
  end
  -- Not known yet (agents learnt from notifications only): ask the sidecar.
  cao().refresh(function(err)
    if err then
      return util.request_failed("listing agents", err)
    end
    local known = state.agents[terminal_id]
    if not known then
      return util.error("no agent " .. terminal_id)
    end
    local command = type(known.attachCommand) == "table" and #known.attachCommand > 0 and known.attachCommand
      or fallback_attach(known)
    if not command then
      return util.error("the sidecar gave no way to attach to " .. util.agent_label(known))
    end
    open_terminal(terminal_id, command)
  end)
end

-- ---- questions ----------------------------------------------------------------------------

local OPEN_TERMINAL = "Open terminal"
local asking = false
local pending_prompts = {}

local function prompt_still_open(terminal_id, prompt_id)
  local agent = state.agents[terminal_id]
  return agent and agent.status == "waiting_user_answer" and type(agent.prompt) == "table"
    and agent.prompt.id == prompt_id
end

--- Ask the user to answer an agent's prompt (vim.ui.select over its choices plus "Open
--- terminal"; vim.ui.input for a free-text question). done() once the user has chosen.
function M.answer_prompt(terminal_id, prompt, done)
  done = done or function() end
  local agent = state.agents[terminal_id] or { terminalId = terminal_id }
  local label = util.agent_label(agent)
  local text = type(prompt.text) == "string" and prompt.text or "?"
  local choices = type(prompt.choices) == "table" and prompt.choices or {}
  local function answer(value)
    cao().answer(terminal_id, value, prompt.id)
  end
  if #choices == 0 then
    vim.ui.input({ prompt = ("%s asks: %s "):format(label, text) }, function(value)
      if type(value) == "string" and value ~= "" then
        answer(value)
      end
      done()
    end)
    return
  end
  local items = vim.list_extend(vim.deepcopy(choices), { OPEN_TERMINAL })
  vim.ui.select(items, { prompt = ("%s asks: %s"):format(label, text), kind = "cao_prompt" }, function(choice)
    if choice == OPEN_TERMINAL then
      M.attach(terminal_id)
    elseif choice then
      answer(choice)
    end
    done()
  end)
end

local function next_prompt()
  if asking then
    return
  end
  local item = table.remove(pending_prompts, 1)
  if not item then
    return
  end
  if not prompt_still_open(item.terminal_id, item.prompt.id) then
    return next_prompt()
  end
  asking = true
  -- The prompt as it is now (the sidecar may have refined its choices since).
  M.answer_prompt(item.terminal_id, state.agents[item.terminal_id].prompt, function()
    asking = false
    vim.schedule(next_prompt)
  end)
end

-- Wait this long before asking: a question the sidecar answers itself (a CLI's start-up dialog)
-- is gone by then, and one whose menu was not drawn yet has its choices (the sidecar sends the
-- refined prompt with the same id).
M.ask_grace_ms = 300
local scheduled = {}

local function ask_now(terminal_id)
  scheduled[terminal_id] = nil
  local agent = state.agents[terminal_id]
  if not agent or agent.status ~= "waiting_user_answer" or type(agent.prompt) ~= "table" then
    return
  end
  local prompt = agent.prompt
  if prompt.id == nil or state.handled_prompts[prompt.id] then
    return
  end
  state.handled_prompts[prompt.id] = true
  local text = ("%s asks: %s"):format(util.agent_label(agent), tostring(prompt.text))
  if type(prompt.detail) == "string" and prompt.detail ~= "" then
    text = text .. "\n" .. prompt.detail
  end
  util.info(text, vim.log.levels.WARN)
  if config.options.ask ~= false then
    table.insert(pending_prompts, { terminal_id = terminal_id, prompt = prompt })
    next_prompt()
  end
end

--- An agent is waiting for an answer (called for each cao/agentStatus saying so).
function M.on_waiting(agent)
  local prompt = agent.prompt
  if type(prompt) == "table" and prompt.id ~= nil then
    if state.handled_prompts[prompt.id] or scheduled[agent.terminalId] then
      return
    end
    scheduled[agent.terminalId] = true
    vim.defer_fn(function()
      util.guard(ask_now, agent.terminalId)
    end, M.ask_grace_ms)
    return
  end
  if not agent.waiting_notified then
    agent.waiting_notified = true
    util.info(("%s is waiting for an answer (:Cao attach %s)"):format(util.agent_label(agent), agent.terminalId),
      vim.log.levels.WARN)
  end
end

--- :Cao answer without an answer: the agent's prompt, asked now.
function M.answer_interactive(terminal_id)
  local function ask()
    local agent = state.agents[terminal_id]
    if not agent or agent.status ~= "waiting_user_answer" then
      return util.warn(util.agent_label(agent or { terminalId = terminal_id }) .. " is not waiting for an answer")
    end
    if type(agent.prompt) == "table" then
      return M.answer_prompt(terminal_id, agent.prompt)
    end
    M.input(util.agent_label(agent) .. " answer: ", function(text)
      cao().answer(terminal_id, text)
    end)
  end
  local agent = state.agents[terminal_id]
  if agent and type(agent.prompt) == "table" then
    return ask()
  end
  cao().refresh(function(err)
    if err then
      return util.request_failed("listing agents", err)
    end
    ask()
  end)
end

-- ---- the agent list -----------------------------------------------------------------------

local list = { buf = nil, win = nil, ids = {} }

local function list_open()
  return list.win and api.nvim_win_is_valid(list.win) and list.buf and api.nvim_buf_is_valid(list.buf)
end

local function help_line()
  local k = config.options.keys
  return ("  %s output  %s attach  %s send  %s handoff  %s answer  %s terminate  %s refresh  %s close"):format(
    k.output, k.attach, k.send, k.handoff, k.answer, k.terminate, k.refresh, k.close)
end

local function render_lines()
  local lines, highlights, ids = {}, {}, {}
  local title = " CAO agents"
  if state.root then
    title = title .. "  " .. vim.fn.fnamemodify(state.root, ":~")
  end
  table.insert(lines, title)
  table.insert(highlights, { 0, "CaoHeader", 0, -1 })
  table.insert(lines, (" %-10s %-20s %-20s %s"):format("ID", "PROFILE", "STATUS", "NAME / QUESTION"))
  table.insert(highlights, { 1, "CaoHelp", 0, -1 })
  local agents = state.list()
  if #agents == 0 then
    table.insert(lines, "  (no agents: :Cao spawn, :Cao handoff or :Cao assign)")
    table.insert(highlights, { #lines - 1, "CaoHelp", 0, -1 })
  end
  for _, agent in ipairs(agents) do
    local extra = agent.name or ""
    if agent.status == "waiting_user_answer" and type(agent.prompt) == "table" then
      extra = "? " .. tostring(agent.prompt.text)
      if type(agent.prompt.choices) == "table" and #agent.prompt.choices > 0 then
        extra = extra .. " [" .. table.concat(agent.prompt.choices, "/") .. "]"
      end
    end
    local status = agent.status or "?"
    local line = (" %-10s %-20s %-20s %s"):format(agent.terminalId, agent.profile or "?", status, extra)
    table.insert(lines, line)
    local row = #lines - 1
    ids[#lines] = agent.terminalId
    table.insert(highlights, { row, "CaoId", 1, 1 + #agent.terminalId })
    local start = #(" %-10s %-20s "):format(agent.terminalId, agent.profile or "?")
    table.insert(highlights, { row, status_hl[status] or "Normal", start, start + #status })
  end
  table.insert(lines, "")
  table.insert(lines, help_line())
  table.insert(highlights, { #lines - 1, "CaoHelp", 0, -1 })
  return lines, highlights, ids
end

local namespace = api.nvim_create_namespace("cao_agents")

local function float_geometry(lines)
  local width = 0
  for _, line in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(line))
  end
  local float = config.options.float or {}
  local columns, rows = vim.o.columns, vim.o.lines
  width = math.min(math.max(width + 2, math.floor(columns * (float.width or 0.7))), columns - 4)
  local height = math.min(#lines, math.floor(rows * (float.height or 0.5)), rows - 4)
  width, height = math.max(width, 20), math.max(height, 3)
  return {
    relative = "editor",
    width = width,
    height = height,
    row = math.floor((rows - height) / 2) - 1,
    col = math.floor((columns - width) / 2),
    style = "minimal",
    border = float.border or "rounded",
  }
end

--- Redraw the agent list (keeps the cursor on the same agent).
function M.render_list()
  if not list_open() then
    return
  end
  local current
  local ok, cursor = pcall(api.nvim_win_get_cursor, list.win)
  if ok then
    current = list.ids[cursor[1]]
  end
  local lines, highlights, ids = render_lines()
  vim.bo[list.buf].modifiable = true
  api.nvim_buf_set_lines(list.buf, 0, -1, false, lines)
  vim.bo[list.buf].modifiable = false
  api.nvim_buf_clear_namespace(list.buf, namespace, 0, -1)
  for _, h in ipairs(highlights) do
    local row, group, first, last = h[1], h[2], h[3], h[4]
    if last < 0 then
      last = #lines[row + 1]
    end
    api.nvim_buf_set_extmark(list.buf, namespace, row, first, { end_col = last, hl_group = group })
  end
  list.ids = ids
  local geometry = float_geometry(lines)
  local current_config = api.nvim_win_get_config(list.win)
  if current_config.height ~= geometry.height or current_config.width ~= geometry.width then
    pcall(api.nvim_win_set_config, list.win, geometry)
  end
  local target = 3
  for line, id in pairs(ids) do
    if id == current then
      target = line
    end
  end
  if target > #lines then
    target = #lines
  end
  pcall(api.nvim_win_set_cursor, list.win, { target, 0 })
end

local function agent_under_cursor()
  if not list_open() then
    return nil
  end
  local id = list.ids[api.nvim_win_get_cursor(list.win)[1]]
  if not id then
    util.warn("no agent on this line")
  end
  return id
end

function M.close_list()
  if list.win and api.nvim_win_is_valid(list.win) then
    api.nvim_win_close(list.win, true)
  end
  list.win = nil
end

--- The action of a key in the agent list, on the agent under the cursor.
function M.list_action(action)
  local id = agent_under_cursor()
  if action == "close" then
    return M.close_list()
  elseif action == "refresh" then
    return cao().refresh()
  end
  if not id then
    return
  end
  local agent = state.agents[id] or { terminalId = id }
  local label = util.agent_label(agent)
  if action == "output" then
    M.close_list()
    cao().output(id, "last")
  elseif action == "attach" then
    M.close_list()
    M.attach(id)
  elseif action == "send" then
    M.input(("Message to %s: "):format(label), function(text)
      cao().send(id, text)
    end)
  elseif action == "handoff" then
    M.input(("Task for %s: "):format(label), function(text)
      cao().handoff(id, text)
    end)
  elseif action == "answer" then
    M.answer_interactive(id)
  elseif action == "terminate" then
    vim.ui.select({ "Yes", "No" }, { prompt = ("Terminate %s?"):format(label) }, function(choice)
      if choice == "Yes" then
        cao().terminate(id)
      end
    end)
  end
end

--- Open (or focus) the floating agent list. It updates live from cao/agentStatus.
function M.agents_list()
  if list_open() then
    api.nvim_set_current_win(list.win)
    M.render_list()
    return list.buf
  end
  list.buf = api.nvim_create_buf(false, true)
  vim.bo[list.buf].bufhidden = "wipe"
  vim.bo[list.buf].filetype = "cao-agents"
  local lines = render_lines()
  list.win = api.nvim_open_win(list.buf, true, float_geometry(lines))
  vim.wo[list.win].cursorline = true
  local buf = list.buf
  for action, key in pairs(config.options.keys or {}) do
    if type(key) == "string" and key ~= "" then
      vim.keymap.set("n", key, function()
        util.guard(M.list_action, action)
      end, { buffer = buf, silent = true, nowait = true, desc = "cao: " .. action })
    end
  end
  vim.keymap.set("n", "<Esc>", M.close_list, { buffer = buf, silent = true, nowait = true })
  vim.keymap.set("n", "<CR>", function()
    util.guard(M.list_action, "output")
  end, { buffer = buf, silent = true, nowait = true })
  api.nvim_create_autocmd("BufWipeout", {
    buffer = buf,
    once = true,
    callback = function()
      if list.buf == buf then
        list.buf, list.win, list.ids = nil, nil, {}
      end
    end,
  })
  M.render_list()
  cao().refresh()
  return list.buf
end

--- The terminalIds shown in the agent list, by line (for tests and scripts).
function M.list_state()
  return { open = list_open() and true or false, buf = list.buf, win = list.win, ids = list.ids }
end

state.on_change(function()
  if list_open() then
    M.render_list()
  end
end)

return M
