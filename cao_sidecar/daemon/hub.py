"""The orchestrator's shared state: the runtime, its connections, and when to end.

- The runtime starts with the first connection (after its `initialize`: the editor's trust
  decision applies before the workspace's `.cao/` is read; its workspace folders are watched).
- Trust: each editor's `initializationOptions.workspaceTrusted` is kept per connection; the team
  follows the most careful one connected (any `false` wins; `true` needs no one saying `false`).
- Lifetime: the process ends when no connection and no live agent is left for `grace` seconds
  (`CAO_ORCHESTRATOR_GRACE`, default 3), on `cao/shutdown`, or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import attrs

from cao_sidecar import trust
from cao_sidecar.startup_trace import mark

if TYPE_CHECKING:
    from cao_sidecar.runtime import Runtime

log = logging.getLogger(__name__)


def grace_seconds() -> float:
    from cao_sidecar.settings import settings

    return settings().orchestrator_grace


@attrs.define(eq=False)
class Connection:
    id: int
    door: str
    trusted: Optional[bool] = None  # the editor's own trust decision for its workspace


class Hub:
    def __init__(self, *, project: Path, tmux_socket: str, session: str, grace: Optional[float] = None) -> None:
        self.project = project
        self.tmux_socket = tmux_socket
        self.session = session
        self.grace = grace_seconds() if grace is None else grace
        self.connections: dict[int, Connection] = {}
        self.runtime_ready: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()
        self.stopping = asyncio.Event()
        self.terminate_agents = False
        self._ids = itertools.count(1)
        self._first_join = asyncio.Event()
        self._initialize_params: Any = None
        self._idle: Optional[asyncio.TimerHandle] = None
        self._sockets = 0  # accepted connections, joined or not yet (preamble, initialize)

    # ---- connections --------------------------------------------------------------------------

    def opened(self) -> None:
        """A connection was accepted: the orchestrator stays while it is open."""
        self._sockets += 1
        self._check_idle()

    def closed(self) -> None:
        self._sockets -= 1
        self._check_idle()

    def join(self, door: str, *, trusted: Optional[bool] = None, initialize_params: Any = None) -> Connection:
        connection = Connection(next(self._ids), door, trusted)
        self.connections[connection.id] = connection
        if not self._first_join.is_set():
            self._initialize_params = initialize_params
            self._first_join.set()
        self._apply_trust()
        self._check_idle()
        log.info("connection %d (%s) joined; %d connected", connection.id, door, len(self.connections))
        return connection

    def leave(self, connection: Connection) -> None:
        if self.connections.pop(connection.id, None) is None:
            return
        log.info("connection %d (%s) left; %d connected", connection.id, connection.door, len(self.connections))
        self._apply_trust()
        self._check_idle()

    def _apply_trust(self) -> None:
        decisions = [c.trusted for c in self.connections.values() if c.trusted is not None]
        combined = False if False in decisions else (True if decisions else None)
        if combined == trust.POLICY.editor_default:
            return
        trust.POLICY.set_editor_decision(None, combined)
        runtime = self.runtime()
        if runtime is not None and runtime.live is not None:
            asyncio.get_running_loop().create_task(runtime.live.refresh_trust())

    # ---- the runtime --------------------------------------------------------------------------

    def runtime(self) -> Optional["Runtime"]:
        ready = self.runtime_ready
        return ready.result() if ready.done() and not ready.cancelled() and ready.exception() is None else None

    async def run(self) -> None:
        """Start the runtime with the first connection; hold it until the end; then close it."""
        from cao_sidecar import preload
        from cao_sidecar.app import log_core_failure
        from cao_sidecar.runtime import Runtime

        preload.start()  # pygls and the MCP SDK import while the first client connects and initializes
        self._check_idle()  # a starter that never connects: the process still ends
        first = asyncio.ensure_future(self._first_join.wait())
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait([first, stop], return_when=asyncio.FIRST_COMPLETED)
        first.cancel()
        if self.stopping.is_set():
            stop.cancel()
            self.runtime_ready.cancel()
            return
        mark("first client joined")
        # The runtime starts at once, while pygls still loads: the editor door answers cao/*
        # requests without it (daemon.early) and keeps what the runtime says meanwhile (adopted
        # agents' states, a trust notice about the workspace's files) for its editor.
        try:
            async with Runtime.start(
                tmux_socket=self.tmux_socket,
                session=self.session,
                workspace=self.project,
                initialize_params=self._initialize_params,
                take_lock=False,
            ) as runtime:
                runtime.fanout.add("status", lambda *_: self._check_idle())
                runtime.fanout.add("workflow", lambda *_: self._check_idle())
                self.runtime_ready.set_result(runtime)
                mark("runtime ready")
                self._check_idle()
                await stop
                if self.terminate_agents:
                    await self._terminate_all(runtime)
        except Exception as exc:  # noqa: BLE001 - reported to every connection's requests
            log_core_failure(exc)
            if not self.runtime_ready.done():
                self.runtime_ready.set_exception(exc)
                self.runtime_ready.exception()  # retrieved: no "never retrieved" warning
            self._check_idle()
            await stop

    async def _terminate_all(self, runtime: "Runtime") -> None:
        for terminal_id in [a.terminal_id for a in runtime.core.list_agents()]:  # warm ones go with the pool
            try:
                await runtime.core.terminate(terminal_id)
            except Exception:  # the others still go
                log.exception("terminating %s at shutdown failed", terminal_id)

    def shutdown(self, terminate_agents: bool = False) -> None:
        """`cao/shutdown`: end the orchestrator for every connection."""
        self.terminate_agents = self.terminate_agents or terminate_agents
        self.stopping.set()

    # ---- lifetime -----------------------------------------------------------------------------

    def _busy(self) -> bool:
        if self.connections or self._sockets > 0:
            return True
        runtime = self.runtime()
        return runtime is not None and (runtime.agents_alive() > 0 or runtime.workflows_active() > 0)

    def _check_idle(self) -> None:
        if self._busy():
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            return
        if self._idle is None and not self.stopping.is_set():
            self._idle = asyncio.get_running_loop().call_later(self.grace, self._idle_over)

    def _idle_over(self) -> None:
        self._idle = None
        if not self._busy():
            log.info("no connection and no agent left: the orchestrator ends")
            self.stopping.set()
