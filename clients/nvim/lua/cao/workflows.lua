-- Workflow runs (docs/workflows.md): follow cao/workflowRun, list runs, start or resume one
-- (cao/listWorkflowRuns, cao/runWorkflow, cao/resumeWorkflow).
local client = require("cao.client")
local util = require("cao.util")

local M = {}

M.runs = {} -- run id -> the latest WorkflowRunInfo seen

local FINAL = { completed = true, failed = true, interrupted = true }

--- "f6de43f26f7a review completed (4 steps)"
function M.describe(run)
  local steps = type(run.steps) == "table" and #run.steps or 0
  local line = ("%s %s %s (%d step%s)"):format(run.runId, run.name, run.status, steps, steps == 1 and "" or "s")
  if run.error ~= nil and run.error ~= vim.NIL then
    line = line .. ": " .. tostring(run.error)
  end
  return line
end

--- The cao/workflowRun notification: remember the run, say when it ends.
function M.on_run(params)
  if type(params) ~= "table" or type(params.runId) ~= "string" then
    return
  end
  local before = M.runs[params.runId]
  M.runs[params.runId] = params
  if FINAL[params.status] and (before == nil or before.status ~= params.status) then
    local level = params.status == "completed" and vim.log.levels.INFO or vim.log.levels.WARN
    util.info("workflow " .. M.describe(params), level)
  end
end

--- The runs and their steps as lines (for a scratch buffer).
function M.lines(runs)
  local lines = {}
  for _, run in ipairs(runs) do
    lines[#lines + 1] = M.describe(run)
    for _, step in ipairs(type(run.steps) == "table" and run.steps or {}) do
      local what = step.status == "completed" and step.answer or step.error
      what = (what ~= nil and what ~= vim.NIL) and util.first_line(tostring(what)) or ""
      local worker = (step.terminalId ~= nil and step.terminalId ~= vim.NIL) and step.terminalId or "-"
      lines[#lines + 1] = ("  %d %s %s %s %s"):format(step.key, step.profile, step.status, worker, what)
    end
  end
  return lines
end

--- :Cao workflows: the latest runs in a scratch buffer, cao://workflows.
function M.show(callback)
  return client.request("cao/listWorkflowRuns", { limit = 20 }, function(err, result)
    if err then
      return util.request_failed("list workflow runs", err)
    end
    local runs = type(result) == "table" and type(result.runs) == "table" and result.runs or {}
    for _, run in ipairs(runs) do
      M.runs[run.runId] = run
    end
    local lines = #runs > 0 and M.lines(runs) or { "no workflow runs (:Cao workflow NAME [k=v ...] starts one)" }
    local buf = vim.fn.bufnr("cao://workflows")
    if buf == -1 then
      buf = vim.api.nvim_create_buf(true, true)
      vim.api.nvim_buf_set_name(buf, "cao://workflows")
    end
    vim.bo[buf].modifiable = true
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
    vim.bo[buf].modifiable = false
    vim.api.nvim_set_current_buf(buf)
    if callback then
      callback(runs)
    end
  end)
end

--- :Cao workflow NAME [k=v ...]: start a run (its steps show as they move on).
function M.run(name, inputs, callback)
  if inputs == nil or next(inputs) == nil then
    inputs = vim.empty_dict() -- {} would be sent as a JSON list
  end
  return client.request("cao/runWorkflow", { name = name, inputs = inputs }, function(err, result)
    if err then
      return util.request_failed("workflow " .. name, err)
    end
    M.on_run(result.run)
    util.info("workflow " .. name .. " started as run " .. result.run.runId)
    if callback then
      callback(result.run)
    end
  end)
end

--- :Cao resume RUN: go on with an interrupted run.
function M.resume(run_id, callback)
  return client.request("cao/resumeWorkflow", { runId = run_id }, function(err, result)
    if err then
      return util.request_failed("resume " .. run_id, err)
    end
    M.on_run(result.run)
    if callback then
      callback(result.run)
    end
  end)
end

--- "topic=cats n=2" -> { topic = "cats", n = "2" }; nil and the bad word if one is not k=v.
function M.parse_inputs(text)
  local inputs = {}
  for word in (text or ""):gmatch("%S+") do
    local key, value = word:match("^([^=]+)=(.*)$")
    if not key then
      return nil, word
    end
    inputs[key] = value
  end
  return inputs
end

return M
