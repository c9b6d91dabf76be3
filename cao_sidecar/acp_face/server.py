"""The ACP door: the Agent Client Protocol over one connection of the project's orchestrator
(`cao-sidecar --acp` is a forwarder to it, `daemon.forward`), until the client closes it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Optional

from acp.agent.connection import AgentSideConnection

from cao_sidecar.acp_face.agent import CaoAcpAgent
from cao_sidecar.acp_face.transport import LineTransport

log = logging.getLogger(__name__)


async def serve_acp_connection(
    runtime_scope: Awaitable[tuple[Any, Any]],
    reader: asyncio.StreamReader,
    writer: Any,
    *,
    on_shutdown: Optional[Callable[[bool], None]] = None,
    agent_face: Optional[Callable[[], Awaitable[Any]]] = None,
) -> None:
    """Serve ACP over one connection of the orchestrator (`daemon.serve`). `runtime_scope`
    gives this connection's (core, live) scopes once the runtime is up; `writer` has the
    `stdio.PipeWriter` interface; `on_shutdown` is what `_cao/shutdown` does; `agent_face()` waits
    for the runtime's agent face (for `_cao/stats`)."""
    loop = asyncio.get_running_loop()
    transport = LineTransport(reader, writer)
    core_ready: asyncio.Future[Any] = loop.create_future()
    agent = CaoAcpAgent(core_ready, on_shutdown)
    # The SDK's Agent protocol lists every optional ACP method; its router calls only those we define.
    conn = AgentSideConnection(agent, transport, listening=False)  # type: ignore[arg-type]

    async def attach() -> None:
        try:
            core, live = await runtime_scope
        except Exception as exc:  # noqa: BLE001 - reported to every request that needs the core
            core_ready.set_exception(exc)
            core_ready.exception()
            return
        agent.attach(core)
        agent.live = live  # profile edits take effect, flows run
        core_ready.set_result(core)
        if agent_face is not None:
            agent.agent_face = await agent_face()

    attaching = loop.create_task(attach())
    try:
        await conn.listen()
    finally:
        attaching.cancel()
        agent.close()
        await conn.close()
        writer.close()
