-- Workers' git worktrees: list them, show a worker's changes as a diff, merge (or rebase) its
-- branch into its base, discard it (cao/listWorktrees, cao/mergeWorktree, cao/discardWorktree).
local client = require("cao.client")
local util = require("cao.util")

local M = {}

--- "3 commits, 2 files changed (uncommitted changes)"
function M.summary(w)
  local commits = type(w.commits) == "table" and #w.commits or 0
  local files = type(w.files) == "table" and #w.files or 0
  local text = ("%d commit%s, %d file%s changed"):format(commits, commits == 1 and "" or "s", files, files == 1 and "" or "s")
  if w.dirty == true then
    text = text .. " (uncommitted changes)"
  end
  if w.committedLeftovers == true then
    text = text .. "; leftovers committed by the sidecar"
  end
  return text
end

--- One line per worktree, for pickers and notifications.
function M.describe(w)
  local agent = w.state == "active" and ("running, " .. tostring(w.agentStatus)) or "agent ended"
  return ("%s (%s %s, %s, from %s): %s"):format(w.branch, w.profile, w.terminalId, agent, w.base, M.summary(w))
end

--- What a finished worker's notification adds: where its work is and what to do with it.
function M.work_message(w)
  return ("its work is on %s (%s); :Cao diff %s, :Cao merge %s, :Cao discard %s"):format(
    w.branch, M.summary(w), w.terminalId, w.terminalId, w.terminalId)
end

--- Remember the workers that have a worktree (for :Cao diff/merge/discard completion).
function M.remember(worktrees, add)
  local state = require("cao.state")
  if not add then
    state.worktree_ids = {}
  end
  state.worktree_ids = state.worktree_ids or {}
  for _, w in ipairs(worktrees) do
    state.worktree_ids[w.terminalId] = true
  end
end

function M.list(callback)
  return client.request("cao/listWorktrees", {}, function(err, result)
    if err then
      return util.request_failed("list worktrees", err)
    end
    local worktrees = type(result) == "table" and type(result.worktrees) == "table" and result.worktrees or {}
    M.remember(worktrees)
    callback(worktrees)
  end)
end

--- The worktree of `terminal_id`, or one picked from the open ones; callback(worktree).
function M.with_worktree(terminal_id, prompt, callback)
  M.list(function(worktrees)
    if #worktrees == 0 then
      return util.warn("no worker worktree is open")
    end
    if terminal_id and terminal_id ~= "" then
      for _, w in ipairs(worktrees) do
        if w.terminalId == terminal_id then
          return callback(w)
        end
      end
      return util.error(("no open worktree for worker %s"):format(terminal_id))
    end
    vim.ui.select(worktrees, { prompt = prompt, format_item = M.describe }, function(w)
      if w then
        callback(w)
      end
    end)
  end)
end

--- A worker's changes against its base (`git diff`) in a diff buffer, cao://diff/<branch>.
function M.diff(w, callback)
  local args = { "git", "-C", w.repository, "diff", "--stat", "--patch", w.baseCommit, w.head or ("refs/heads/" .. w.branch) }
  local lines = {}
  local job = vim.fn.jobstart(args, {
    stdout_buffered = true,
    on_stdout = function(_, data)
      lines = data or {}
    end,
    on_exit = function(_, code)
      vim.schedule(function()
        if code ~= 0 then
          return util.error(("git diff of %s failed (exit %d)"):format(w.branch, code))
        end
        if lines[#lines] == "" then
          table.remove(lines)
        end
        local name = "cao://diff/" .. w.branch
        local buf = vim.fn.bufnr(name)
        if buf == -1 then
          buf = vim.api.nvim_create_buf(true, true)
          vim.api.nvim_buf_set_name(buf, name)
        end
        vim.api.nvim_buf_set_option(buf, "modifiable", true)
        vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
        vim.api.nvim_buf_set_option(buf, "modifiable", false)
        vim.api.nvim_buf_set_option(buf, "filetype", "diff")
        vim.cmd("tab sbuffer " .. buf)
        if callback then
          callback(buf)
        end
      end)
    end,
  })
  if job <= 0 then
    util.error("git is not available to show the diff")
  end
end

--- Bring the worker's branch into its base; conflicts are a warning naming the files.
function M.merge(w, strategy, callback)
  return client.request("cao/mergeWorktree", { terminalId = w.terminalId, strategy = strategy or "merge" }, function(err, result)
    if callback then
      return callback(err, result)
    end
    if err then
      return util.request_failed("merge " .. w.branch, err)
    end
    if result.merged then
      util.info(("%s merged into %s"):format(w.branch, w.base))
    else
      util.warn(("%s conflicts with %s in %s: nothing was changed, the branch is kept"):format(
        w.branch, w.base, table.concat(result.conflicts or {}, ", ")))
    end
  end)
end

--- Throw the worker's work away, once the user said yes.
function M.discard(w, callback)
  vim.ui.select({ "Yes", "No" }, { prompt = ("Discard %s and its worktree?"):format(w.branch) }, function(choice)
    if choice ~= "Yes" then
      return
    end
    client.request("cao/discardWorktree", { terminalId = w.terminalId }, function(err, result)
      if callback then
        return callback(err, result)
      end
      if err then
        return util.request_failed("discard " .. w.branch, err)
      end
      util.info(("%s discarded"):format(w.branch))
    end)
  end)
end

--- :Cao worktrees: pick one, then what to do with it.
function M.menu()
  M.with_worktree(nil, "Worker worktree", function(w)
    local actions = { "Show changes", "Merge", "Rebase and fast-forward", "Discard" }
    vim.ui.select(actions, { prompt = w.branch }, function(action)
      if action == "Show changes" then
        M.diff(w)
      elseif action == "Merge" then
        M.merge(w, "merge")
      elseif action == "Rebase and fast-forward" then
        M.merge(w, "rebase")
      elseif action == "Discard" then
        M.discard(w)
      end
    end)
  end)
end

return M
