"""A front end starts its project's orchestrator before it loads asyncio (issue 15).

The orchestrator's own start (Python, its modules, tmux) is most of a first spawn's wait. A
forwarder that launches it first lets it start on another core while the forwarder loads.
`--stdio` learns its project from the editor's `initialize`, so it reads that first message here,
blocking (nothing can happen before it), and hands every byte it read on to its reader.

Only the plain case is taken here: no orchestrator runs for the project's tmux socket and no
other front end is starting one. Anything else (one runs, or serves another project, or is being
started; a state dir that is not ours; input that is not a well-formed first message) is left to
`daemon.forward`, which joins, waits or says why, as without this step.

Standard library only (with `paths` and `locate`): a forwarder must start fast.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from cao_sidecar import paths
from cao_sidecar.daemon import locate
from cao_sidecar.startup_trace import mark

MAX_HEADER_LINE = 8192  # as editor.transport: longer is garbage, for the forwarder's reader to report
MAX_FIRST_MESSAGE = 1 << 20  # an `initialize` is a few kB


class Started:
    """An orchestrator launched here, and the start lock held for it until it listens."""

    __slots__ = ("lock_fd", "process", "project", "tmux_socket")

    def __init__(self, process: "subprocess.Popen[bytes]", lock_fd: int, project: Path, tmux_socket: str) -> None:
        self.process = process
        self.lock_fd = lock_fd
        self.project = project
        self.tmux_socket = tmux_socket


def spawn_orchestrator(where: locate.Place, project: Path, session: str, log_level: str) -> "subprocess.Popen[bytes]":
    """`cao-sidecar serve` for `project`, detached: its own session, stderr to its log."""
    stderr = paths.open_private(where.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    argv = [
        sys.executable, "-m", "cao_sidecar", "serve", "--project", str(project),
        "--tmux-socket", where.tmux_socket, "--session", session, "--log-level", log_level,
    ]  # fmt: skip
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # not in the editor's process group: it outlives the front end
            cwd=str(project) if project.is_dir() else "/",
            close_fds=True,
        )
    finally:
        os.close(stderr)


def _none_runs(where: locate.Place) -> bool:
    if locate.socket_is_ours(where.socket):
        return False  # one listens (or died and left it: forward.connect sees which)
    info = locate.read_info(where)
    return info is None or not locate.pid_alive(info.get("pid"))


def start_if_none(project: Path, tmux_socket: str, *, session: str, log_level: str) -> Optional[Started]:
    """Launch the orchestrator of `project` when none runs and nobody is starting one."""
    try:
        where = locate.place(tmux_socket)
        if not _none_runs(where):
            return None
        fd = paths.open_private(where.start_lock, os.O_RDWR | os.O_CREAT)
    except (OSError, ValueError, paths.UnsafeDirectory):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _none_runs(where):  # still, now that the lock is ours
            process = spawn_orchestrator(where, project, session, log_level)
            mark("orchestrator launched")
            return Started(process, fd, project, tmux_socket)
    except (OSError, ValueError, paths.UnsafeDirectory):
        pass
    os.close(fd)
    return None


def read_first_message(fd: int) -> tuple[bytes, Optional[dict[str, Any]]]:
    """Bytes of `fd` up to the end of its first LSP-framed message (maybe a little past it), and
    that message when it is well formed. At anything unexpected it stops at once and returns what
    it read with None, so it never waits for bytes a client would only send after an answer."""
    data = b""
    start = 0  # of the next header line
    length: Optional[int] = None
    while True:
        newline = data.find(b"\n", start)
        if newline < 0:
            chunk = _read_chunk(fd) if len(data) - start <= MAX_HEADER_LINE else b""
            if not chunk:
                return data, None
            data += chunk
            continue
        line = data[start:newline].strip()
        start = newline + 1
        if not line:
            break
        name, sep, value = line.partition(b":")
        if not sep:
            return data, None
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return data, None
    if length is None or not 0 <= length <= MAX_FIRST_MESSAGE:
        return data, None
    while len(data) < start + length:
        chunk = _read_chunk(fd)
        if not chunk:
            return data, None
        data += chunk
    try:
        message = json.loads(data[start : start + length])
    except (ValueError, RecursionError):
        return data, None
    return data, message if isinstance(message, dict) else None


def _read_chunk(fd: int) -> bytes:
    """The next chunk of `fd`; b"" at its end or on an error (nothing more to read here)."""
    try:
        return os.read(fd, 65536)
    except OSError:  # a non-blocking stdin (BlockingIOError), a closed one: the async reader copes
        return b""


def is_initialize(message: Optional[dict[str, Any]]) -> bool:
    return message is not None and message.get("method") == "initialize" and "id" in message


def workspace_root(message: dict[str, Any]) -> Optional[str]:
    """The root an `initialize` request names, as the forwarder reads it (editor.handshake)."""
    from cao_sidecar.editor.handshake import workspace_root as root_of

    return root_of(message.get("params"))
