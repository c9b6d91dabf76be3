-- What the headless Neovim test scripts share: steps that record {ok, error, ms}, waiting for a
-- condition, vim.notify recorded, and the results file written at the end (exit 0 if all passed).
-- Load with: local harness = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/harness.lua")
local uv = vim.uv or vim.loop

local M = { results = { steps = {}, order = {}, data = {} }, notifications = {} }
M.data = M.results.data

vim.notify = function(msg, level)
  table.insert(M.notifications, { msg = tostring(msg), level = level or vim.log.levels.INFO })
end

function M.wait_for(what, timeout_ms, cond)
  if not vim.wait(timeout_ms, cond, 20) then
    error("timed out after " .. timeout_ms .. " ms waiting for " .. what, 2)
  end
end

function M.step(name, fn)
  table.insert(M.results.order, name)
  local t0 = uv.hrtime()
  local ok, err = xpcall(fn, debug.traceback)
  M.results.steps[name] = { ok = ok, error = (not ok) and tostring(err) or vim.NIL, ms = (uv.hrtime() - t0) / 1e6 }
end

--- Write the results to out_path and quit: exit 0 if every step passed.
function M.finish(out_path)
  M.data.notifications = M.notifications
  M.data.messages = vim.fn.execute("messages")
  local all_ok = true
  for _, name in ipairs(M.results.order) do
    all_ok = all_ok and M.results.steps[name].ok
  end
  local file = assert(io.open(out_path, "w"))
  file:write(vim.fn.json_encode(M.results))
  file:close()
  vim.cmd(all_ok and "qall!" or "cquit 1")
end

return M
