"""Front ends as forwarders: `cao-sidecar --stdio`, `--acp` (and `mcp`) join their project's
orchestrator, starting it if none runs, and relay their stdio to it.

- The project: the editor's workspace (the `initialize` root) for `--stdio`, else `--project` or
  the current directory. The tmux socket: --tmux-socket, $CAO_TMUX_SOCKET, else derived from the
  project (`paths.project_tmux_socket`): each project has its own team.
- Starting: under a start lock (two front ends starting at once get one orchestrator), the
  orchestrator is spawned detached (own session, stdin/stdout /dev/null, stderr to its log).
- `--stdio` answers `initialize` itself (the answer needs no core), so an editor hears back as fast
  as before; the orchestrator's own answer to the relayed `initialize` is dropped.
- The forwarder exits when either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from cao_sidecar import paths
from cao_sidecar.daemon import locate, prelaunch
from cao_sidecar.startup_trace import mark

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # a loaded machine: imports plus a tmux start with retries
JOIN_ERROR = -32603


class CannotJoin(RuntimeError):
    """No orchestrator to join: it would serve another project, or it failed to start."""


class OtherConfig(CannotJoin):
    """The running orchestrator reads another config dir (profiles, trust store): it is waited
    for (an idle one ends within its grace), then refused."""


CONFIG_WAIT = 15.0


def _check_project(where: locate.Place, project: Path) -> None:
    info = locate.read_info(where)
    if info is None or not locate.pid_alive(info.get("pid")):
        return
    theirs = info.get("project")
    if isinstance(theirs, str) and not locate.same_project(theirs, project):
        raise CannotJoin(
            f"the orchestrator on tmux socket '{where.tmux_socket}' (pid {info.get('pid')}) serves another project, "
            f"{theirs}; this one is {project}. Use another --tmux-socket (or unset CAO_TMUX_SOCKET: each project then "
            "gets its own)"
        )
    theirs = info.get("config")
    if isinstance(theirs, str) and os.path.realpath(theirs) != os.path.realpath(paths.config_dir()):
        raise OtherConfig(
            f"the orchestrator on tmux socket '{where.tmux_socket}' (pid {info.get('pid')}) reads the config dir "
            f"{theirs}; this front end's is {paths.config_dir()} (XDG_CONFIG_HOME). Use another --tmux-socket, or "
            "end that orchestrator (cao/shutdown)"
        )


async def _check_identity(where: locate.Place, project: Path) -> None:
    """Refuse another project at once; wait for an orchestrator of another config dir to end."""
    deadline = time.monotonic() + CONFIG_WAIT
    while True:
        try:
            _check_project(where, project)
            return
        except OtherConfig:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _try_connect(where: locate.Place) -> Optional[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    if not locate.socket_is_ours(where.socket):
        return None
    try:
        return await asyncio.open_unix_connection(str(where.socket), limit=1 << 20)
    except (ConnectionRefusedError, FileNotFoundError):
        return None  # stale: its orchestrator is gone


def _log_tail(path: Path, size: int = 2000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode(errors="replace").strip()
    except OSError:
        return ""


async def _with_start_lock(where: locate.Place) -> int:
    fd = paths.open_private(where.start_lock, os.O_RDWR | os.O_CREAT)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise CannotJoin(f"another front end has been starting the orchestrator for {START_TIMEOUT:.0f} s") from None
            await asyncio.sleep(0.02)


async def connect(
    tmux_socket: str,
    project: Path,
    *,
    session: str = "cao",
    log_level: str = "warning",
    started: Optional[prelaunch.Started] = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the project's orchestrator, started if none runs. `started`: the one this
    front end launched already (daemon.prelaunch), with the start lock it holds."""
    where = locate.place(tmux_socket)
    if started is not None:
        fd, process = started.lock_fd, started.process
    else:
        await _check_identity(where, project)
        if (pair := await _try_connect(where)) is not None:
            return pair
        fd = await _with_start_lock(where)
    try:
        if started is None:
            await _check_identity(where, project)  # another front end may have started one meanwhile
            if (pair := await _try_connect(where)) is not None:
                return pair
            process = prelaunch.spawn_orchestrator(where, project, session, log_level)
            mark("orchestrator launched")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if (pair := await _try_connect(where)) is not None:
                return pair
            if process.poll() is not None:
                _check_project(where, project)
                tail = _log_tail(where.log)
                raise CannotJoin(
                    f"the orchestrator exited at start (status {process.returncode}); its log {where.log} ends:\n{tail}"
                )
            await asyncio.sleep(0.01)
        raise CannotJoin(f"the orchestrator did not listen on {where.socket} within {START_TIMEOUT:.0f} s; see {where.log}")
    finally:
        os.close(fd)


# ---- relaying -----------------------------------------------------------------------------


async def _stdout_writer(stream: Any) -> tuple[Optional[asyncio.StreamWriter], Any]:
    """An asyncio writer for stdout when it is a pipe or socket; else (None, the raw stream)."""
    import stat

    mode = os.fstat(stream.fileno()).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stream)
        return asyncio.StreamWriter(transport, protocol, None, loop), stream
    return None, stream


class _Out:
    def __init__(self, writer: Optional[asyncio.StreamWriter], raw: Any) -> None:
        self._writer = writer
        self._raw = raw

    async def write(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.write(data)
            await self._writer.drain()
        else:
            await asyncio.to_thread(self._raw.write, data)

    # The `editor.transport.PipeWriter` interface, for MessageReader's answers before joining.
    def buffered(self) -> int:
        return self._writer.transport.get_write_buffer_size() if self._writer is not None else 0

    def send_now(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.write(data)
        else:
            self._raw.write(data)

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.drain(), 5)
            self._writer.close()
        else:
            with contextlib.suppress(OSError, ValueError):
                self._raw.flush()


class _SyncWriter:
    """What MessageReader writes to (its `write`) while the forwarder answers by itself."""

    def __init__(self, out: _Out) -> None:
        self._out = out

    def write(self, data: bytes) -> None:
        self._out.send_now(data)


async def _pump(source: asyncio.StreamReader, write: Any) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await source.read(1 << 16):
            await write(chunk)


async def _relay(
    stdin: asyncio.StreamReader, out: _Out, sock_reader: asyncio.StreamReader, sock_writer: asyncio.StreamWriter
) -> int:
    async def to_orchestrator(chunk: bytes) -> None:
        sock_writer.write(chunk)
        await sock_writer.drain()

    upstream = asyncio.ensure_future(_pump(stdin, to_orchestrator))
    downstream = asyncio.ensure_future(_pump(sock_reader, out.write))
    done, pending = await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
    if upstream in done:  # the client closed: what it sent last still reaches the orchestrator
        with contextlib.suppress(Exception):
            sock_writer.write_eof()
            await asyncio.wait_for(asyncio.shield(downstream), 2)
    for task in pending:
        task.cancel()
    with contextlib.suppress(Exception):
        sock_writer.close()
    await out.close()
    return 0


def _frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def _drop_first_answer(sock_reader: asyncio.StreamReader, msg_id: Any, out: _Out) -> None:
    """Read the orchestrator's answer to the relayed `initialize` (the forwarder answered it)."""
    from cao_sidecar.editor.transport import MessageReader

    class _Discard:
        def write(self, data: bytes) -> None:
            pass

    message = await MessageReader(sock_reader, _Discard()).next_message()
    if message is not None and message.get("id") != msg_id:
        await out.write(_frame(message))  # not the expected answer: pass it on


async def _serve_refusal(messages: Any, reason: str) -> int:
    """Could not join: every request gets the reason (as an orchestrator that failed to start
    did before), until the client leaves."""
    messages.initialized = True  # the forwarder answered `initialize`
    while (message := await messages.next_message()) is not None:
        method = message.get("method")
        if method == "exit":
            return 1
        if "id" in message and method == "shutdown":
            messages.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
        elif "id" in message and method is not None:
            messages.send({"jsonrpc": "2.0", "id": message["id"], "error": {"code": JOIN_ERROR, "message": reason}})
    return 1


async def forward_lsp(
    *, tmux_socket: Optional[str], session: str, log_level: str, head: bytes = b"", started: Optional[prelaunch.Started] = None
) -> int:
    """`head`: what was read of stdin already (daemon.prelaunch); `started`: the orchestrator
    launched for its `initialize`."""
    from cao_sidecar.daemon.lsp_door import answer_initialize
    from cao_sidecar.editor import handshake
    from cao_sidecar.editor.transport import MessageReader, open_stdin_reader, take_stdout_for_protocol

    out = _Out(*await _stdout_writer(take_stdout_for_protocol()))
    stdin = await open_stdin_reader(sys.stdin.buffer, head=head)
    messages = MessageReader(stdin, _SyncWriter(out))
    initialize = await answer_initialize(messages)
    mark("initialize answered")
    if initialize is None:
        if started is not None:
            os.close(started.lock_fd)  # it ends by itself: no one joins within its grace
        await out.close()
        return 0
    if started is not None:
        project, socket = started.project, started.tmux_socket
    else:
        root = handshake.workspace_root(initialize.get("params"))
        project = await asyncio.to_thread(Path(root or os.getcwd()).resolve)
        socket = paths.tmux_socket_name(tmux_socket, project)
    try:
        sock_reader, sock_writer = await connect(socket, project, session=session, log_level=log_level, started=started)
    except (CannotJoin, OSError, paths.UnsafeDirectory) as exc:
        log.error("cannot join the orchestrator: %s", exc)
        code = await _serve_refusal(messages, f"cao-sidecar: {exc}")
        await out.close()
        return code
    mark("joined the orchestrator")
    sock_writer.write(locate.preamble("lsp") + _frame(initialize))
    await _drop_first_answer(sock_reader, initialize["id"], out)
    return await _relay(stdin, out, sock_reader, sock_writer)


async def forward_lines(
    door: str,
    *,
    tmux_socket: Optional[str],
    project: Optional[str],
    session: str,
    log_level: str,
    started: Optional[prelaunch.Started] = None,
) -> int:
    """`--acp` and `mcp`: relay newline-delimited JSON-RPC to the orchestrator's `door`."""
    from cao_sidecar.editor.transport import open_stdin_reader, take_stdout_for_protocol

    out = _Out(*await _stdout_writer(take_stdout_for_protocol()))
    if started is not None:
        root, socket = started.project, started.tmux_socket
    else:
        root = await asyncio.to_thread(Path(project or os.getcwd()).resolve)
        socket = paths.tmux_socket_name(tmux_socket, root)
    try:
        sock_reader, sock_writer = await connect(socket, root, session=session, log_level=log_level, started=started)
    except (CannotJoin, OSError, paths.UnsafeDirectory) as exc:
        print(f"cao-sidecar: cannot join the orchestrator: {exc}", file=sys.stderr)
        await out.close()
        return 1
    sock_writer.write(locate.preamble(door))
    return await _relay(await open_stdin_reader(sys.stdin.buffer), out, sock_reader, sock_writer)


def main_forward(
    door: str,
    *,
    tmux_socket: Optional[str],
    project: Optional[str],
    session: str,
    log_level: str,
    head: bytes = b"",
    started: Optional[prelaunch.Started] = None,
) -> int:
    """`head` and `started`: see daemon.prelaunch (`--stdio`'s first bytes, an orchestrator launched)."""
    try:
        if door == "lsp":
            return asyncio.run(
                forward_lsp(tmux_socket=tmux_socket, session=session, log_level=log_level, head=head, started=started)
            )
        return asyncio.run(
            forward_lines(door, tmux_socket=tmux_socket, project=project, session=session, log_level=log_level, started=started)
        )
    except KeyboardInterrupt:
        return 130
