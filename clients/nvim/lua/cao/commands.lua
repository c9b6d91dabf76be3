-- :Cao {subcommand} [args], with completion of subcommands, profile names and agent ids.
local state = require("cao.state")
local util = require("cao.util")

local M = {}

local function cao()
  return require("cao")
end

local function ui()
  return require("cao.ui")
end

local function worktrees()
  return require("cao.worktrees")
end

local function split_first(text)
  text = text or ""
  local first, rest = text:match("^%s*(%S+)%s*(.-)%s*$")
  return first, rest or ""
end

--- An agent id from the argument, or picked; callback(terminal_id).
local function with_agent(arg, prompt, callback, opts)
  opts = opts or {}
  if arg and arg ~= "" then
    return callback(arg)
  end
  ui().pick_agent({ prompt = prompt, filter = opts.filter, single = opts.single, none = opts.none }, function(agent)
    callback(agent.terminalId)
  end)
end

local function with_profile(arg, prompt, callback)
  if arg and arg ~= "" then
    return callback(arg)
  end
  ui().pick_profile(prompt, callback)
end

local function with_text(text, prompt, callback)
  if text and text:match("%S") then
    return callback(text)
  end
  ui().input(prompt, callback)
end

local function waiting(agent)
  return agent.status == "waiting_user_answer"
end

--- :Cao trust / :Cao untrust [folder]: default the sidecar's project root.
local function trust_command(args, trusted)
  local folder = vim.trim(args or "")
  if folder == "" then
    folder = state.root or require("cao.config").root_dir()
  end
  require("cao.trust").set(vim.fn.expand(folder), trusted)
end

M.subcommands = {
  agents = {
    usage = "",
    run = function()
      ui().agents_list()
    end,
  },
  spawn = {
    usage = "[profile] [name]",
    run = function(args)
      local profile, name = split_first(args)
      with_profile(profile, "Spawn profile", function(p)
        cao().spawn(p, { name = name ~= "" and name or nil })
      end)
    end,
  },
  handoff = {
    usage = "[profile|terminalId] [message]",
    run = function(args)
      local target, message = split_first(args)
      local function go(t)
        with_text(message, ("Task for %s: "):format(t), function(text)
          cao().handoff(t, text)
        end)
      end
      if target then
        return go(target)
      end
      ui().pick_profile("Hand off to", go)
    end,
  },
  assign = {
    usage = "[profile] [message]",
    run = function(args)
      local profile, message = split_first(args)
      with_profile(profile, "Assign to", function(p)
        with_text(message, ("Task for %s: "):format(p), function(text)
          cao().assign(p, text)
        end)
      end)
    end,
  },
  send = {
    usage = "[terminalId] [message]",
    run = function(args)
      local id, message = split_first(args)
      with_agent(id, "Send to", function(t)
        with_text(message, ("Message to %s: "):format(t), function(text)
          cao().send(t, text)
        end)
      end)
    end,
  },
  output = {
    usage = "[terminalId] [last|full]",
    run = function(args)
      local id, mode = split_first(args)
      with_agent(id, "Output of", function(t)
        cao().output(t, mode ~= "" and mode or "last")
      end)
    end,
  },
  attach = {
    usage = "[terminalId]",
    run = function(args)
      local id = split_first(args)
      with_agent(id, "Attach to", function(t)
        ui().attach(t)
      end)
    end,
  },
  terminate = {
    usage = "[terminalId]",
    run = function(args)
      local id = split_first(args)
      with_agent(id, "Terminate", function(t)
        cao().terminate(t)
      end)
    end,
  },
  answer = {
    usage = "[terminalId] [answer]",
    run = function(args)
      local id, answer = split_first(args)
      with_agent(id, "Answer", function(t)
        if answer ~= "" then
          cao().answer(t, answer)
        else
          ui().answer_interactive(t)
        end
      end, { filter = waiting, single = true, none = "no agent is waiting for an answer" })
    end,
  },
  cancel = {
    usage = "",
    run = function()
      cao().cancel()
    end,
  },
  start = {
    usage = "",
    run = function()
      cao().start()
    end,
  },
  stop = {
    usage = "",
    run = function()
      cao().stop()
    end,
  },
  restart = {
    usage = "",
    run = function()
      cao().restart()
    end,
  },
  worktrees = {
    usage = "",
    run = function()
      worktrees().menu()
    end,
  },
  workflows = {
    usage = "",
    run = function()
      require("cao.workflows").show()
    end,
  },
  workflow = {
    usage = "NAME [input=value ...]",
    run = function(args)
      local name, rest = split_first(args)
      if not name then
        return util.error("workflow: give the workflow's name")
      end
      local inputs, bad = require("cao.workflows").parse_inputs(rest)
      if not inputs then
        return util.error("workflow: " .. bad .. " is not input=value")
      end
      require("cao.workflows").run(name, inputs)
    end,
  },
  resume = {
    usage = "RUN",
    run = function(args)
      local id = split_first(args)
      if not id then
        return util.error("resume: give the run's id (:Cao workflows lists them)")
      end
      require("cao.workflows").resume(id)
    end,
  },
  diff = {
    usage = "[terminalId]",
    run = function(args)
      worktrees().with_worktree(split_first(args), "Changes of", function(w)
        worktrees().diff(w)
      end)
    end,
  },
  merge = {
    usage = "[terminalId] [merge|rebase]",
    run = function(args)
      local id, strategy = split_first(args)
      if strategy ~= "" and strategy ~= "merge" and strategy ~= "rebase" then
        return util.error("merge: the strategy is merge or rebase")
      end
      worktrees().with_worktree(id, "Merge", function(w)
        worktrees().merge(w, strategy ~= "" and strategy or "merge")
      end)
    end,
  },
  discard = {
    usage = "[terminalId]",
    run = function(args)
      worktrees().with_worktree(split_first(args), "Discard", function(w)
        worktrees().discard(w)
      end)
    end,
  },
  trust = {
    usage = "[folder]",
    run = function(args)
      trust_command(args, true)
    end,
  },
  untrust = {
    usage = "[folder]",
    run = function(args)
      trust_command(args, false)
    end,
  },
}

function M.names()
  local names = vim.tbl_keys(M.subcommands)
  table.sort(names)
  return names
end

function M.run(args)
  local name, rest = split_first(args)
  name = name or "agents"
  local sub = M.subcommands[name]
  if not sub then
    return util.error(("unknown subcommand %q; one of: %s"):format(name, table.concat(M.names(), ", ")))
  end
  util.guard(sub.run, rest)
end

local function agent_ids(filter)
  local ids = {}
  for _, agent in ipairs(state.list()) do
    if agent.status ~= "exited" and (not filter or filter(agent)) then
      table.insert(ids, agent.terminalId)
    end
  end
  return ids
end

local function filter_prefix(items, lead)
  local out = {}
  for _, item in ipairs(items) do
    if item:sub(1, #lead) == lead then
      table.insert(out, item)
    end
  end
  return out
end

--- Candidates for the argument being typed: subcommands, then profile names or agent ids (no
--- requests: from the state kept from notifications).
function M.complete(arglead, cmdline, cursorpos)
  local before = cmdline:sub(1, cursorpos or #cmdline)
  local words = {}
  for word in before:gmatch("%S+") do
    table.insert(words, word)
  end
  table.remove(words, 1) -- the command itself
  if arglead ~= "" then
    table.remove(words) -- the word being completed
  end
  local n = #words
  if n == 0 then
    return filter_prefix(M.names(), arglead)
  end
  local sub = words[1]
  local candidates = {}
  if n == 1 then
    if sub == "spawn" or sub == "assign" then
      candidates = state.profile_names()
    elseif sub == "handoff" then
      candidates = vim.list_extend(state.profile_names(), agent_ids())
    elseif sub == "answer" then
      candidates = agent_ids(waiting)
    elseif sub == "send" or sub == "output" or sub == "attach" or sub == "terminate" then
      candidates = agent_ids()
    elseif sub == "diff" or sub == "merge" or sub == "discard" then
      candidates = vim.tbl_keys(state.worktree_ids or {})
    elseif sub == "trust" or sub == "untrust" then
      return vim.fn.getcompletion(arglead, "dir")
    end
  elseif n == 2 then
    if sub == "output" then
      candidates = { "last", "full" }
    elseif sub == "merge" then
      candidates = { "merge", "rebase" }
    elseif sub == "answer" then
      local agent = state.agents[words[2]]
      if agent and type(agent.prompt) == "table" and type(agent.prompt.choices) == "table" then
        candidates = vim.deepcopy(agent.prompt.choices)
      end
    end
  end
  return filter_prefix(candidates, arglead)
end

function M.create()
  vim.api.nvim_create_user_command("Cao", function(opts)
    M.run(opts.args)
  end, {
    nargs = "*",
    complete = M.complete,
    desc = "cao-sidecar: agents, spawn, handoff, assign, send, output, attach, terminate, answer, worktrees, diff, merge, discard, trust, workflows, workflow, resume",
  })
end

return M
