-- Differences between Neovim 0.7 and current releases, in one place.
--
-- 0.7 to 0.10: vim.lsp.start_client(), client.request(method, params, handler, bufnr) with a dot.
-- 0.11+:       vim.lsp.start(config, {attach = false}), client:request(...) with a colon (the dot
--              form still works there but warns that it is deprecated).
local M = {}

M.uv = vim.uv or vim.loop

local function has(version)
  return vim.fn.has("nvim-" .. version) == 1
end
M.has = has
M.nvim_0_11 = has("0.11")

--- Start an LSP client without attaching it to any buffer. Returns the client id or nil.
function M.start_client(config)
  if M.nvim_0_11 then
    return vim.lsp.start(config, { attach = false, silent = true })
  end
  return vim.lsp.start_client(config)
end

function M.get_client(id)
  return id and vim.lsp.get_client_by_id(id) or nil
end

--- Send a request; handler(err, result, ctx). Returns ok, request_id.
function M.request(client, method, params, handler)
  if M.nvim_0_11 then
    return client:request(method, params, handler)
  end
  return client.request(method, params, handler)
end

function M.notify(client, method, params)
  if M.nvim_0_11 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.cancel_request(client, id)
  if M.nvim_0_11 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

function M.stop(client, force)
  if M.nvim_0_11 then
    return client:stop(force)
  end
  return client.stop(force)
end

function M.is_stopped(client)
  if M.nvim_0_11 then
    return client:is_stopped()
  end
  return client.is_stopped()
end

--- The client capabilities to send: Neovim's own, with work-done progress declared.
function M.capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.window = caps.window or {}
  caps.window.workDoneProgress = true
  return caps
end

--- :checkhealth reporting functions: vim.health (0.10+), vim.health.report_* (0.8, 0.9), or
--- require("health").report_* (0.7).
function M.health()
  local h = vim.health
  if h and h.start then
    return { start = h.start, ok = h.ok, info = h.info, warn = h.warn, error = h.error }
  end
  if not (h and h.report_start) then
    h = require("health")
  end
  return {
    start = h.report_start,
    ok = h.report_ok,
    info = h.report_info,
    warn = h.report_warn,
    error = h.report_error,
  }
end

--- Fire a User autocmd (e.g. "CaoStatus") for statusline plugins and user hooks.
function M.user_event(pattern)
  pcall(vim.api.nvim_exec_autocmds, "User", { pattern = pattern, modeline = false })
end

function M.json_encode(value)
  return vim.fn.json_encode(value)
end

function M.json_decode(text)
  return vim.fn.json_decode(text)
end

return M
