-- cao-sidecar: the :Cao command exists as soon as the plugin is on 'runtimepath'; the sidecar
-- starts in require("cao").setup() (or on the first :Cao command if setup() was not called).
if vim.g.loaded_cao then
  return
end
vim.g.loaded_cao = true

if vim.fn.has("nvim-0.7") ~= 1 then
  vim.api.nvim_err_writeln("cao: Neovim 0.7 or newer is required")
  return
end

require("cao.commands").create()
