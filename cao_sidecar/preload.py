"""Heavy libraries imported in a thread, each group when first asked for, in the order asked.

pygls/lsprotocol (about half a second) serve the editor door once its first cao/* requests are
answered (daemon.early); the MCP SDK, pydantic and uvicorn (about a second) serve the agent face,
ACP and MCP hosts. Imported on the event loop, they would stall every connection; imported beside
the runtime's start and the first spawn, they slowed those (one GIL).

Two threads importing one package's modules at once can deadlock (Python raises
`_DeadlockError`): the event loop's thread therefore loads the runtime's own modules before the
import thread starts, and imports anything that needs these libraries only after awaiting
`editor_modules()` or `agent_face_modules()`.
"""

from __future__ import annotations

import asyncio
import importlib
import queue
import sys
import threading
from typing import Any, Callable, Optional

from cao_sidecar.startup_trace import mark

# The event loop's thread gives the GIL up at every system call and then waits up to a switch
# interval (5 ms) to get it back from the import thread: a short one while it runs keeps the
# loop's start-up (tmux, the first spawn) from crawling.
SWITCH_INTERVAL = 0.0005
HOLD_MAX_SECONDS = 1.0  # see hold()
EDITOR_MODULES = ("lsprotocol.types", "pygls.lsp.server", "pygls.protocol")
AGENT_FACE_MODULES = ("mcp", "mcp.server.mcpserver", "mcp.server.transport_security", "mcp_types", "pydantic", "uvicorn")
# Loaded on the loop's thread first (quick): the import thread must find them there.
# With these, starting the runtime imports nothing more: it can run beside the import thread.
OWN_MODULES = (
    "cao_sidecar.runtime", "cao_sidecar.app", "cao_sidecar.core.orchestrator", "cao_sidecar.profiles.live",
    "cao_sidecar.hosts.team", "cao_sidecar.workflows.engine", "cao_sidecar.agent_face.http", "cao_sidecar.handlers",
)  # fmt: skip


class _Preload:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.editor: asyncio.Future[None] = loop.create_future()
        self.agent_face: asyncio.Future[None] = loop.create_future()
        # Each group loads when first asked for, in the order asked: never beside the runtime's
        # start and the first spawn, which they would slow down (one GIL), unless needed.
        self._wanted: queue.SimpleQueue[tuple[tuple[str, ...], asyncio.Future[None]]] = queue.SimpleQueue()
        self._asked: set[int] = set()
        self.holds = 0
        self.calm = asyncio.Event()  # no hold open (`hold`)
        self.calm.set()
        for name in OWN_MODULES:
            importlib.import_module(name)
        threading.Thread(target=self._run, name="cao-preload", daemon=True).start()

    def want(self, modules: tuple[str, ...], done: "asyncio.Future[None]") -> None:
        if id(done) not in self._asked:
            self._asked.add(id(done))
            self._wanted.put((modules, done))

    def _run(self) -> None:
        interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        try:
            for _ in range(2):
                modules, done = self._wanted.get()
                error: Optional[BaseException] = None
                try:
                    for name in modules:
                        importlib.import_module(name)
                except Exception as exc:  # noqa: BLE001 - the awaiting side imports again and reports it
                    error = exc
                self.loop.call_soon_threadsafe(_settle, done, error)
        finally:
            sys.setswitchinterval(interval)


def _settle(future: "asyncio.Future[None]", error: Optional[BaseException]) -> None:
    if not future.done():
        future.set_result(None)  # a failure shows where the module is used, with its context
    del error


_current: Optional[_Preload] = None


def start() -> _Preload:
    """Start the import thread (once per event loop: tests run several); it imports what is asked."""
    global _current
    loop = asyncio.get_running_loop()
    if _current is None or _current.loop is not loop:
        _current = _Preload(loop)
    return _current


def hold() -> Callable[[], None]:
    """Latency-critical work starts (an editor's first requests, answered before pygls): imports
    asked with `when_calm`, and `calm()` waiters, wait until it ends, or for HOLD_MAX_SECONDS at
    most (a first request can be a long handoff: its worker may call tools before it ends).
    Returns the release (idempotent)."""
    current = start()
    current.holds += 1
    current.calm.clear()
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            timer.cancel()
            current.holds -= 1
            if current.holds == 0:
                current.calm.set()

    timer = current.loop.call_later(HOLD_MAX_SECONDS, release)
    return release


async def calm() -> None:
    """Return once no hold is open (at once in a process without the import thread)."""
    current = _current
    if current is not None and current.loop is asyncio.get_running_loop():
        await current.calm.wait()


async def editor_modules() -> None:
    """Wait until the editor door's libraries are imported (asking for them)."""
    current = start()
    current.want(EDITOR_MODULES, current.editor)
    await asyncio.shield(current.editor)


async def agent_face_modules(*, when_calm: Optional["asyncio.Event"] = None) -> None:
    """Wait until the agent face's (and ACP's, MCP hosts') libraries are imported (asking for them).

    `when_calm`: ask only once no hold is open (`hold`), or once this event is set (they are
    needed now), or once something else asked for them."""
    current = start()
    if when_calm is not None and id(current.agent_face) not in current._asked:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(current.calm.wait()), asyncio.ensure_future(when_calm.wait())]
        try:
            await asyncio.wait([*waits, current.agent_face], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
    mark("agent face libraries asked")
    current.want(AGENT_FACE_MODULES, current.agent_face)
    await asyncio.shield(current.agent_face)
