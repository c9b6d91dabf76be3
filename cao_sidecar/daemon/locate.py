"""Where a project's orchestrator lives: all in the private (0700) state directory, named after
the tmux socket, as the instance lock is (one orchestrator per state dir and tmux socket).

- `orchestrator-<socket>.sock`: the Unix socket the doors connect to (0600; a short stand-in
  elsewhere when the state directory is too deep for a socket address: paths.unix_socket_path);
- `orchestrator-<socket>.json`: `{"pid", "project", "config"}` (config: its config dir, where its
  profiles and trust store are), written before it listens;
- `orchestrator-<socket>.start.lock`: held by a front end while it starts one (no two starts);
- `orchestrator-<socket>.log`: the orchestrator's stderr.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Optional

from cao_sidecar import paths

PREAMBLE_PREFIX = b"cao-door: "
DOORS = ("lsp", "acp", "mcp")


class Place:
    """A plain class, not attrs: the forwarders import this and must start fast (stdlib only)."""

    __slots__ = ("state", "tmux_socket")

    def __init__(self, state: Path, tmux_socket: str) -> None:
        self.state = state
        self.tmux_socket = tmux_socket

    @property
    def socket(self) -> Path:
        return paths.unix_socket_path(self.state / f"orchestrator-{self.tmux_socket}.sock")

    @property
    def info(self) -> Path:
        return self.state / f"orchestrator-{self.tmux_socket}.json"

    @property
    def start_lock(self) -> Path:
        return self.state / f"orchestrator-{self.tmux_socket}.start.lock"

    @property
    def log(self) -> Path:
        return self.state / f"orchestrator-{self.tmux_socket}.log"


def place(tmux_socket: str) -> Place:
    return Place(paths.ensure_private_dir(paths.state_dir()), tmux_socket)


def same_project(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def read_info(where: Place) -> Optional[dict[str, Any]]:
    """The running orchestrator's pid and project, or None (none yet, or unreadable)."""
    try:
        fd = os.open(where.info, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            data = json.loads(handle.read(65536))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: Any) -> bool:
    """An orchestrator's recorded pid still runs (not a zombie)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is gone too
        return not Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].strip().startswith("Z")
    except OSError:
        return True


def write_info(where: Place, project: Path) -> None:
    info = {"pid": os.getpid(), "project": str(project), "config": str(paths.config_dir())}
    paths.write_private_text(where.info, json.dumps(info))


def socket_is_ours(path: Path) -> bool:
    """A Unix socket we own, not a symlink or anything else planted in its place."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid()


def preamble(door: str) -> bytes:
    return PREAMBLE_PREFIX + door.encode() + b"\n"
