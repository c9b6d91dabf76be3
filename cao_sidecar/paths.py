"""Where the sidecar keeps things. Everything goes through platformdirs, so XDG_* redirect it."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "cao-sidecar"
DEFAULT_TMUX_SOCKET = "cao-sidecar"


def state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP))


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP))


def user_profiles_dir() -> Path:
    return config_dir() / "agents"


def agents_state_dir() -> Path:
    """Per-agent private directories (transcripts, generated configs)."""
    return state_dir() / "agents"


def tmux_socket_name(cli_value: str | None = None) -> str:
    return cli_value or os.environ.get("CAO_TMUX_SOCKET") or DEFAULT_TMUX_SOCKET


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
