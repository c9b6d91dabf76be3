"""`cao-sidecar --acp`: boots the core and the agent face like the LSP face does (app.py), then
serves the Agent Client Protocol on stdio until the client closes it."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

from acp.agent.connection import AgentSideConnection

from cao_sidecar import stdio
from cao_sidecar.acp_face.agent import CaoAcpAgent
from cao_sidecar.acp_face.transport import MAX_LINE, LineTransport
from cao_sidecar.app import log_core_failure, start_agent_face, start_core
from cao_sidecar.stdio import PipeWriter, take_stdout_for_protocol

log = logging.getLogger(__name__)


async def serve_acp(*, tmux_socket: str, session: str) -> int:
    protocol_out = take_stdout_for_protocol()  # stdout is the protocol; stray prints go to stderr
    writer = PipeWriter(protocol_out)
    await writer.connect()
    transport = LineTransport(await stdio.open_reader(sys.stdin.buffer, limit=MAX_LINE), writer)
    loop = asyncio.get_running_loop()
    core_ready: asyncio.Future[Any] = loop.create_future()
    agent = CaoAcpAgent(core_ready)
    conn = AgentSideConnection(agent, transport, listening=False)
    # Agents start where the editor started us (Zed: the project); each session names its own cwd.
    workspace = Path(os.getcwd())
    agent_face: Any = None
    live: Any = None

    async def boot() -> None:
        nonlocal live
        try:
            core = await start_core(tmux_socket=tmux_socket, session=session, workspace=workspace)
        except Exception as exc:  # noqa: BLE001 - reported to every request that needs the core
            log_core_failure(exc)
            core_ready.set_exception(exc)
            return
        agent.attach(core)
        from cao_sidecar.profiles.live import start_live

        # Profile edits take effect, flows run; the folder's .cao/ only once the user trusts it.
        live = await start_live(core, None, workspace)
        agent.live = live
        core_ready.set_result(core)

        def created(face: Any) -> None:
            nonlocal agent_face
            agent_face = face
            agent.agent_face = face  # for _cao/stats

        await start_agent_face(core, tmux_socket, created)

    boot_task = loop.create_task(boot())
    try:
        await conn.listen()
    finally:
        boot_task.cancel()
        agent.close()
        if live is not None:
            await live.close()
        if agent_face is not None:
            await agent_face.close()
        if core_ready.done() and not core_ready.cancelled() and core_ready.exception() is None:
            await core_ready.result().close()
        await conn.close()
        writer.close()
    return 0


def main_acp(tmux_socket: str, session: str) -> Optional[int]:
    try:
        return asyncio.run(serve_acp(tmux_socket=tmux_socket, session=session))
    except KeyboardInterrupt:
        return 130
