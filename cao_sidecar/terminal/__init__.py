"""Terminal layer: our own tmux server, driven through one control-mode client per session."""
