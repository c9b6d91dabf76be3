"""The parts every process starts with: logging, the orchestration core, the agent face.

`cao_sidecar.runtime.Runtime` composes them for the orchestrator; the MCP SDK is imported in a
thread (about a second, cao_sidecar.preload), so the event loop keeps serving meanwhile. Agents
launch once the agent face listens (its sockets, URL and credentials), before its server runs.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from cao_sidecar import paths, preload
from cao_sidecar.startup_trace import mark

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


async def start_core(*, tmux_socket: str, session: str, workspace: Path, take_lock: bool = True) -> Any:
    from cao_sidecar.core.orchestrator import Orchestrator
    from cao_sidecar.profiles.catalog import ProfileCatalog
    from cao_sidecar.terminal.tmux import TmuxMissing, TmuxServer

    from cao_sidecar.core.errors import CaoError

    state = paths.ensure_private_dir(paths.state_dir())
    try:
        if take_lock:
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
        mark("tmux started")
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
    from cao_sidecar.agent_face.http import AgentFace

    # Stable per tmux socket, so agents adopted after a restart still reach us (their
    # environment holds the address they were started with).
    mcp_socket = core.state_dir / f"mcp-{tmux_socket}.sock"
    try:
        mcp_socket = paths.unix_socket_path(mcp_socket)
    except paths.UnsafeDirectory as exc:  # binding below then fails and says so: agents run without tools
        log.error("%s", exc)
    agent_face = AgentFace(core, mcp_socket, core.state_dir / f"mcp-{tmux_socket}.port")
    created(agent_face)
    try:
        # Sockets, URL and credentials need no SDK: agents launch now, and a CLI that connects
        # early waits in the listen backlog until the server below accepts.
        agent_face.bind()
    except Exception:  # agents can still run, they just cannot delegate
        log.exception("the MCP server could not listen; agents cannot call tools")
        core.agents_may_start.set()
        return agent_face
    core.agents_may_start.set()
    mark("agent face bound")
    try:
        # About a second of imports, in a thread but under one GIL: not beside an editor's first
        # requests (a first spawn), unless an agent that connects as it starts is launched.
        await preload.agent_face_modules(when_calm=core.tool_client_launched)
        # Our own tools module in a thread too (pydantic models): the core's modules, which it
        # imports, are loaded by now, so the loop never waits on its import lock.
        await asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "cao_sidecar.agent_face.tools")
        await agent_face.start()
        mark("agent face serving")
    except Exception:  # agents can still run, they just cannot delegate
        log.exception("the MCP server failed to start; agents cannot call tools")
    return agent_face
