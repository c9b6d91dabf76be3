"""Wires the process together: the core, the editor face on stdio, one event loop."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from pathlib import Path

from cao_sidecar import paths
from cao_sidecar.agent_face.http import AgentFace
from cao_sidecar.core.orchestrator import Orchestrator
from cao_sidecar.editor.server import build_server, connect_notifications
from cao_sidecar.editor.transport import MessageReader, PipeWriter, open_stdin_reader, take_stdout_for_protocol
from cao_sidecar.profiles.catalog import ProfileCatalog
from cao_sidecar.terminal.tmux import TmuxServer

log = logging.getLogger("cao_sidecar")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pygls logs every message it sends at INFO; keep it quiet unless asked for debug.
    if level.upper() != "DEBUG":
        logging.getLogger("pygls").setLevel(logging.WARNING)


async def start_core(*, tmux_socket: str, session: str, workspace: Path) -> Orchestrator:
    state = paths.ensure_private_dir(paths.state_dir())
    catalog = ProfileCatalog(workspace_dirs=[workspace / ".cao" / "agents"], user_dir=paths.user_profiles_dir())
    core = Orchestrator(
        tmux=TmuxServer(tmux_socket),
        catalog=catalog,
        state_dir=state,
        default_cwd=str(workspace),
        default_session=session,
    )
    await core.start()
    return core


async def serve_stdio(*, tmux_socket: str, session: str) -> int:
    protocol_out = take_stdout_for_protocol()
    loop = asyncio.get_running_loop()
    core_ready: asyncio.Future[Orchestrator] = loop.create_future()
    server = build_server(core_ready)
    writer = PipeWriter(protocol_out)
    await writer.connect()
    server.protocol.set_writer(writer)

    agent_face: AgentFace | None = None

    async def boot() -> None:
        nonlocal agent_face
        try:
            workspace = Path(server.workspace_root or os.getcwd())
            core = await start_core(tmux_socket=tmux_socket, session=session, workspace=workspace)
        except Exception as exc:  # noqa: BLE001 - reported to every cao/* request
            log.exception("the orchestration core failed to start")
            core_ready.set_exception(exc)
            return
        connect_notifications(server, core)
        if server.workspace_root:
            core.default_cwd = server.workspace_root
        core_ready.set_result(core)
        # The MCP SDK takes about a second to import: do it in a thread after `initialize` was
        # answered, so neither the editor's handshake nor the event loop waits for it.
        await server.initialized.wait()
        await loop.run_in_executor(None, importlib.import_module, "cao_sidecar.agent_face.tools")
        agent_face = AgentFace(core, core.state_dir / f"mcp-{os.getpid()}.sock")
        try:
            await agent_face.start()
        except Exception:  # noqa: BLE001 - agents can still run, they just cannot delegate
            log.exception("the MCP server failed to start; agents cannot call tools")
        core.agents_may_start.set()

    boot_task = loop.create_task(boot())
    reader = MessageReader(await open_stdin_reader(sys.stdin.buffer), server.protocol)
    code = 0
    try:
        await reader.run()
    except SystemExit as exc:  # the LSP `exit` notification
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        boot_task.cancel()
        if agent_face is not None:
            await agent_face.close()
        if core_ready.done() and not core_ready.cancelled() and core_ready.exception() is None:
            await core_ready.result().close()
        writer.close()
    return code
