"""cao-sidecar: orchestrate AI coding CLIs in tmux, from an editor or a script."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
