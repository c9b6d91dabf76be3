"""Wires the process together: the core, the editor face on stdio, the agent face, one loop.

Start-up order matters for how fast an editor sees us: answer `initialize` first (light
imports only), then load pygls and start the core (tmux), then — in a thread — import the MCP
SDK and start the agent face. Agents are launched only once the agent face is up.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from cao_sidecar import paths
from cao_sidecar.editor import handshake
from cao_sidecar.editor.transport import (
    SERVER_NOT_INITIALIZED,
    MessageReader,
    PipeWriter,
    open_stdin_reader,
    take_stdout_for_protocol,
)

log = logging.getLogger("cao_sidecar")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pygls logs every message it sends at INFO, and a traceback for every error answer (most
    # are expected: unknown profile, timeout, ...). Our handlers log the unexpected ones.
    if level.upper() != "DEBUG":
        logging.getLogger("pygls").setLevel(logging.WARNING)
        logging.getLogger("pygls.protocol.json_rpc").setLevel(logging.CRITICAL)


async def start_core(*, tmux_socket: str, session: str, workspace: Path) -> Any:
    from cao_sidecar.core.orchestrator import Orchestrator
    from cao_sidecar.profiles.catalog import ProfileCatalog
    from cao_sidecar.terminal.tmux import TmuxMissing, TmuxServer

    from cao_sidecar.core.errors import CaoError

    state = paths.ensure_private_dir(paths.state_dir())
    try:
        paths.acquire_instance_lock(state, tmux_socket)  # held until the process ends
    except paths.InstanceBusy as exc:
        raise CaoError(str(exc)) from None
    catalog = ProfileCatalog(workspace_dirs=[workspace / ".cao" / "agents"], user_dir=paths.user_profiles_dir())
    core = Orchestrator(
        tmux=TmuxServer(tmux_socket),
        catalog=catalog,
        state_dir=state,
        default_cwd=str(workspace),
        default_session=session,
    )
    try:
        await core.start()
    except TmuxMissing as exc:  # one line that says what to do, on every door
        raise CaoError(str(exc)) from None
    return core


def log_core_failure(exc: BaseException) -> None:
    """A known failure (no tmux, another sidecar) is one line; anything else gets its traceback."""
    from cao_sidecar.core.errors import CaoError

    if isinstance(exc, CaoError):
        log.error("the orchestration core failed to start: %s", exc.message)
    else:
        log.error("the orchestration core failed to start", exc_info=exc)


async def start_agent_face(core: Any, tmux_socket: str, created: Callable[[Any], None] = lambda face: None) -> Any:
    """Start the agent face (the MCP server agents call) for `core`, then let agents launch.

    Shared by every editor face (LSP on stdio, ACP). `created(face)` is called before the server
    starts, so a caller can close it even if start-up is cancelled half-way.
    """
    # The MCP SDK takes about a second to import: a thread keeps the event loop serving.
    await asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "cao_sidecar.agent_face.tools")
    from cao_sidecar.agent_face.http import AgentFace

    # Stable per tmux socket, so agents adopted after a restart still reach us (their
    # environment holds the address they were started with).
    agent_face = AgentFace(core, core.state_dir / f"mcp-{tmux_socket}.sock", core.state_dir / f"mcp-{tmux_socket}.port")
    created(agent_face)
    try:
        await agent_face.start()
    except Exception:  # noqa: BLE001 - agents can still run, they just cannot delegate
        log.exception("the MCP server failed to start; agents cannot call tools")
    core.agents_may_start.set()
    return agent_face


class OwnCore:
    """The core a door starts in its own process (`--acp`, `mcp`): the core, live profiles and
    flows, then the agent face. `ready` resolves with the core, or with why it could not start
    (every request that needs it reports that). `on_core(core, live)` runs before `ready` is set."""

    def __init__(
        self, *, tmux_socket: str, session: str, workspace: Path, on_core: Callable[[Any, Any], None] = lambda core, live: None
    ) -> None:
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[Any] = loop.create_future()
        self.live: Any = None
        self.agent_face: Any = None
        self._boot_task = loop.create_task(self._boot(tmux_socket, session, workspace, on_core))

    async def _boot(self, tmux_socket: str, session: str, workspace: Path, on_core: Callable[[Any, Any], None]) -> None:
        try:
            core = await start_core(tmux_socket=tmux_socket, session=session, workspace=workspace)
        except Exception as exc:  # noqa: BLE001 - reported to every request that needs the core
            log_core_failure(exc)
            self.ready.set_exception(exc)
            return
        from cao_sidecar.profiles.live import start_live

        # Profile edits take effect, flows run; the folder's .cao/ only once the user trusts it.
        self.live = await start_live(core, None, workspace)
        on_core(core, self.live)
        self.ready.set_result(core)
        await start_agent_face(core, tmux_socket, self._created)

    def _created(self, face: Any) -> None:
        self.agent_face = face

    async def close(self) -> None:
        """Stop watching; agents keep running in tmux."""
        self._boot_task.cancel()
        if self.live is not None:
            await self.live.close()
        if self.agent_face is not None:
            await self.agent_face.close()
        if self.ready.done() and not self.ready.cancelled() and self.ready.exception() is None:
            await self.ready.result().close()


async def _handshake(reader: MessageReader) -> Optional[dict[str, Any]]:
    """Wait for `initialize` and answer it. Returns the message, or None at end of input/exit."""
    while (message := await reader.next_message()) is not None:
        method = message.get("method")
        if method == "initialize" and "id" in message:
            reader.send({"jsonrpc": "2.0", "id": message["id"], "result": handshake.initialize_result()})
            return message
        if method == "exit":
            return None
        if "id" in message and method is not None:
            reader.send_error(message["id"], SERVER_NOT_INITIALIZED, "send 'initialize' first")
    return None


async def serve_stdio(*, tmux_socket: str, session: str) -> int:
    protocol_out = take_stdout_for_protocol()
    loop = asyncio.get_running_loop()
    writer = PipeWriter(protocol_out)
    await writer.connect()
    reader = MessageReader(await open_stdin_reader(sys.stdin.buffer), writer)

    initialize = await _handshake(reader)
    if initialize is None:
        writer.close()
        return 0
    workspace = Path(handshake.workspace_root(initialize.get("params")) or os.getcwd())
    from cao_sidecar import trust

    # Before anything loads the workspace's .cao/: the editor may decide trust for its folders.
    trust.POLICY.set_editor_decision(None, handshake.workspace_trusted(initialize.get("params")))

    from cao_sidecar.agent_face.http import AgentFace
    from cao_sidecar.editor.ask import ask_user_enabled
    from cao_sidecar.editor.server import build_server, connect_live, connect_notifications
    from cao_sidecar.profiles.live import start_live

    core_ready: asyncio.Future[Any] = loop.create_future()
    server = build_server(core_ready)
    server.protocol.set_writer(writer)
    # pygls sees the initialize too (client capabilities, its own state), but must not answer it.
    server.protocol.answered_initialize_id = initialize["id"]
    reader.dispatch(server.protocol, initialize)
    agent_face: Optional[AgentFace] = None
    live: Any = None

    async def boot() -> None:
        nonlocal live
        try:
            core = await start_core(tmux_socket=tmux_socket, session=session, workspace=workspace)
        except Exception as exc:  # noqa: BLE001 - reported to every cao/* request
            log_core_failure(exc)
            core_ready.set_exception(exc)
            return
        # Profiles and flows: watched files, diagnostics, the flow scheduler (all folders).
        live = await start_live(core, initialize.get("params"), workspace)
        connect_notifications(server, core, ask_user=ask_user_enabled(initialize.get("params")))
        if live is not None:
            connect_live(server, live)
        core_ready.set_result(core)

        def created(face: AgentFace) -> None:
            nonlocal agent_face
            agent_face = face
            server.agent_face = face  # type: ignore[attr-defined] # for cao/stats

        await start_agent_face(core, tmux_socket, created)

    boot_task = loop.create_task(boot())
    code = 0
    try:
        await reader.run(server.protocol)
    except SystemExit as exc:  # the LSP `exit` notification
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        boot_task.cancel()
        if live is not None:
            await live.close()
        if agent_face is not None:
            await agent_face.close()
        if core_ready.done() and not core_ready.cancelled() and core_ready.exception() is None:
            await core_ready.result().close()
        writer.close()
    return code
