"""`cao-sidecar serve`: the orchestrator process of one project (issue 17's process model).

It holds the instance lock (one per state dir and tmux socket), listens on the 0600 Unix socket
`<state dir>/orchestrator-<tmux socket>.sock` and serves each connection through its door: an
optional first line `cao-door: lsp|acp|mcp` picks it (none: `lsp`). Front ends (`--stdio`,
`--acp`, `mcp`) start it detached and relay their stdio to it (`daemon.forward`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket as socketlib
import stat
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from cao_sidecar import paths
from cao_sidecar.daemon import locate
from cao_sidecar.daemon.hub import Hub
from cao_sidecar.daemon.streams import SocketWriter, rebuffer
from cao_sidecar.editor.transport import MAX_HEADER_LINE
from cao_sidecar.startup_trace import mark

log = logging.getLogger(__name__)

PREAMBLE_LIMIT = MAX_HEADER_LINE * 4  # = the LSP door's own line limit
LOCK_WAIT_SECONDS = 15.0
MAX_LINE = 64 * 1024 * 1024  # newline-delimited doors (ACP, MCP): as acp_face.transport


class CannotServe(RuntimeError):
    """The orchestrator cannot start (another runs, or its socket path is not ours)."""


def bind_private_socket(path: Path) -> socketlib.socket:
    """A listening Unix socket at `path`, 0600 from the start. A stale socket (or a symlink:
    unlinking one never follows it) is replaced; anything else there is refused."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not (stat.S_ISSOCK(info.st_mode) or stat.S_ISLNK(info.st_mode)) or info.st_uid != os.getuid():
            raise CannotServe(f"{path} exists and is not a socket of ours; remove it to start the orchestrator")
        path.unlink()  # stale: we hold the instance lock, so no live orchestrator serves it
    sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    sock.listen(64)
    sock.setblocking(False)
    return sock


async def read_door(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """The door the connection asks for, and the bytes read past the preamble (to serve)."""
    try:
        first = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return "lsp", exc.partial
    except asyncio.LimitOverrunError:
        return "lsp", b""  # no line at all within the limit: LSP framing will report it
    if not first.startswith(locate.PREAMBLE_PREFIX):
        return "lsp", first
    return first[len(locate.PREAMBLE_PREFIX) :].strip().decode("ascii", "replace"), b""


Door = Callable[[Hub, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _door(name: str) -> tuple[Door, int] | str:
    """The door's serve function and its line limit, or why there is none."""
    if name == "lsp":
        from cao_sidecar.daemon.lsp_door import serve_lsp

        return serve_lsp, PREAMBLE_LIMIT
    if name == "acp":
        from cao_sidecar.acp_face.server import serve_acp_connection

        async def serve_acp(hub: Hub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connection = hub.join("acp")
            runtime_scope = _scoped(hub)
            try:
                await serve_acp_connection(
                    runtime_scope, reader, SocketWriter(writer), on_shutdown=hub.shutdown, agent_face=lambda: _agent_face(hub)
                )
            finally:
                runtime_scope.close()
                hub.leave(connection)

        return serve_acp, MAX_LINE
    if name == "mcp":
        from cao_sidecar.host_face import serve_host_door

        async def serve_mcp(hub: Hub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connection = hub.join("mcp")
            try:
                await serve_host_door(await asyncio.shield(hub.runtime_ready), reader, writer)
            finally:
                hub.leave(connection)

        return serve_mcp, MAX_LINE
    return f"unknown door {name!r}; doors: {', '.join(locate.DOORS)}"


async def _agent_face(hub: Hub) -> Any:
    """The runtime's agent face, once it has started."""
    runtime = await asyncio.shield(hub.runtime_ready)
    await runtime.agent_face_ready.wait()
    return runtime.agent_face


class _ScopedRuntime:
    """Awaitable (core, live) scopes of the hub's runtime for one connection; `close()` drops them."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._scopes: list[Any] = []

    def __await__(self) -> Any:
        return self._get().__await__()

    async def _get(self) -> tuple[Any, Any]:
        runtime = await asyncio.shield(self._hub.runtime_ready)
        core, live = runtime.scope()
        self._scopes.extend(s for s in (core, live) if s is not None)
        return core, live

    def close(self) -> None:
        for scope in self._scopes:
            scope.close()


def _scoped(hub: Hub) -> _ScopedRuntime:
    return _ScopedRuntime(hub)


class DoorServer:
    """Accepts connections on the socket and serves each through its door."""

    def __init__(self, hub: Hub, listener: socketlib.socket) -> None:
        self.hub = hub
        self._listener = listener
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.hub.opened()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        pump = None
        try:
            name, rest = await read_door(reader)
            if name in ("acp", "mcp"):  # their libraries: never beside the import thread (cao_sidecar.preload)
                from cao_sidecar import preload

                await preload.agent_face_modules()
            door = _door(name)
            if isinstance(door, str):
                log.warning("refused a connection: %s", door)
                writer.write(f"cao-sidecar: {door}\n".encode())
                await writer.drain()
                return
            serve, limit = door
            door_reader, pump = rebuffer(reader, rest, limit)
            await serve(self.hub, door_reader, writer)
        except asyncio.CancelledError:
            pass  # the orchestrator ends: the connection with it (asyncio would log a cancelled task)
        except (ConnectionError, OSError) as exc:
            log.info("a connection failed: %s", exc)
        except Exception:  # one connection's failure never ends the others
            log.exception("a connection failed")
        finally:
            if pump is not None:
                pump.cancel()
            SocketWriter(writer).close()
            self._writers.discard(writer)
            self.hub.closed()
            if task is not None:
                self._tasks.discard(task)

    async def run(self) -> None:
        server = await asyncio.start_unix_server(self._serve_connection, sock=self._listener, limit=PREAMBLE_LIMIT)
        running = asyncio.get_running_loop().create_task(self.hub.run())
        try:
            await self.hub.stopping.wait()
        finally:
            server.close()
            for writer in list(self._writers):  # every front end sees the end and exits
                SocketWriter(writer).close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5)
            await running  # closes the runtime (agents keep running in tmux)


async def serve(*, project: Path, tmux_socket: str, session: str) -> int:
    where = locate.place(tmux_socket)
    # A front end starts us only when no orchestrator accepts: one that holds the lock is ending
    # (it no longer listens); it lets go in a moment.
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            paths.acquire_instance_lock(where.state, tmux_socket)  # held until the process ends
            break
        except paths.InstanceBusy as exc:
            if time.monotonic() > deadline:
                log.error("%s", exc)
                return 1
            await asyncio.sleep(0.05)
    locate.write_info(where, project)  # before listening: whoever connects can check the project
    try:
        socket_path = where.socket
        listener = bind_private_socket(socket_path)
    except (CannotServe, OSError, paths.UnsafeDirectory) as exc:
        log.error("cannot listen for the project's front ends: %s", exc)
        return 1
    hub = Hub(project=project, tmux_socket=tmux_socket, session=session)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, hub.stopping.set)
    log.info("orchestrator of %s listening on %s (pid %d)", project, where.socket, os.getpid())
    mark("listening")
    try:
        await DoorServer(hub, listener).run()
    finally:
        with contextlib.suppress(OSError):
            if locate.socket_is_ours(where.socket):
                where.socket.unlink()
        with contextlib.suppress(OSError):
            where.info.unlink()
    return 0


def main_serve(project: str | None, tmux_socket: str, session: str) -> int:
    mark("serve main")
    # Import profiling (bench) is for this process: tmux and the agents it starts must not print it.
    os.environ.pop("PYTHONPROFILEIMPORTTIME", None)
    root = Path(project or os.getcwd()).resolve()
    try:
        return asyncio.run(serve(project=root, tmux_socket=tmux_socket, session=session))
    except KeyboardInterrupt:
        return 130
