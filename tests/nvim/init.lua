-- Minimal init for the headless client tests: only the plugin under test on 'runtimepath'.
local plugin = assert(os.getenv("CAO_NVIM_PLUGIN"), "CAO_NVIM_PLUGIN is not set")
vim.opt.runtimepath:prepend(plugin)
vim.opt.swapfile = false
vim.opt.shadafile = "NONE"
