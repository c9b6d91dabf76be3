"""One runtime per project: the orchestration core, live profiles and flows, the agent face.

Every door (editors over LSP, ACP, MCP hosts, scripts) works on the same `Runtime`; the
orchestrator process (`cao_sidecar.daemon.serve`) starts it once and hands it to each
connection. Start-up order: the core (tmux, adopted agents), then the live config, then in the
background the agent face (it listens at once and agents may launch; its server runs once the MCP
SDK is imported, about a second) and the pool of warm workers (core.pool). Closing stops
watching and stops the warm workers; the user's agents keep running in tmux and a successor
adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Optional

import attrs

from cao_sidecar import preload
from cao_sidecar.daemon.fanout import CoreScope, Fanout, LiveScope

if TYPE_CHECKING:
    from cao_sidecar.agent_face.http import AgentFace
    from cao_sidecar.core.orchestrator import Orchestrator
    from cao_sidecar.profiles.live import LiveConfig

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class Runtime:
    core: "Orchestrator"
    live: Optional["LiveConfig"]
    workspace: Path
    tmux_socket: str
    agent_face: Optional["AgentFace"] = None
    fanout: Fanout = attrs.field(factory=Fanout)
    agent_face_ready: asyncio.Event = attrs.field(factory=asyncio.Event)

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        *,
        tmux_socket: str,
        session: str,
        workspace: Path,
        initialize_params: Any = None,
        take_lock: bool = True,
    ) -> AsyncIterator["Runtime"]:
        """The running runtime, closed at the end of the block. `take_lock`: False when the
        caller already holds the instance lock (the orchestrator takes it before it listens)."""
        from cao_sidecar.app import start_agent_face, start_core
        from cao_sidecar.profiles.live import start_live

        core = await start_core(tmux_socket=tmux_socket, session=session, workspace=workspace, take_lock=take_lock)
        from cao_sidecar.hosts.team import hosts_of

        # The team's hosts run their calls on this core (not a connection's view of it); the ones
        # it used before are linked to again.
        hosts_of(core).forward_messages(core.supervisor)  # reports for hosts' agents, kept until sent
        hosts_of(core).remember_in(core.state_dir / f"hosts-{tmux_socket}.json")
        runtime: Optional[Runtime] = None
        face_task: Optional[asyncio.Task[Any]] = None
        pool_task: Optional[asyncio.Task[None]] = None
        workflows_task: Optional[asyncio.Task[None]] = None
        try:
            # Watching starts once an editor's first requests are served (cao_sidecar.preload).
            live = await start_live(core, initialize_params, workspace, watch_after=preload.calm)
            runtime = cls(core=core, live=live, workspace=workspace, tmux_socket=tmux_socket)
            runtime.fanout.connect_core(core)
            if live is not None:
                runtime.fanout.connect_live(live)
            workflows_task = _start_workflows(runtime)

            def created(face: "AgentFace") -> None:
                assert runtime is not None
                runtime.agent_face = face

            async def start_face() -> None:
                assert runtime is not None
                await start_agent_face(core, tmux_socket, created)
                runtime.agent_face_ready.set()

            face_task = asyncio.get_running_loop().create_task(start_face())
            if core.pool is not None:  # warm workers (profiles' `pool: N`), once the runtime serves
                pool_task = asyncio.get_running_loop().create_task(core.pool.start())
                if live is not None:
                    live.on_profiles_changed(core.pool.refresh)
            yield runtime
        finally:
            if pool_task is not None and not pool_task.done():
                pool_task.cancel()
                with contextlib.suppress(BaseException):
                    await pool_task
            if workflows_task is not None:
                workflows_task.cancel()
            if face_task is not None:
                face_task.cancel()
                with contextlib.suppress(BaseException):
                    await face_task
            if runtime is not None and runtime.live is not None:
                await runtime.live.close()
            if runtime is not None and runtime.agent_face is not None:
                await runtime.agent_face.close()
            await hosts_of(core).close()  # the links end; the nodes keep their agents
            if core.workflows is not None:
                await core.workflows.close()
            await core.close()
            from cao_sidecar.hosts.node import end_idle_tmux

            await end_idle_tmux(core)  # a host's node with no agent left leaves no tmux server

    def scope(self) -> tuple[CoreScope, Optional[LiveScope]]:
        """The core and live config for one connection: its listeners go when it `close()`s them."""
        return CoreScope(self.core, self.fanout), (LiveScope(self.live, self.fanout) if self.live is not None else None)

    def agents_alive(self) -> int:
        """The user's live agents (warm workers of the pool keep nothing alive)."""
        return sum(1 for agent in self.core.list_agents() if agent.alive)

    def workflows_active(self) -> int:
        """Workflow scripts running now: the orchestrator stays for them."""
        return self.core.workflows.active if self.core.workflows is not None else 0


def _start_workflows(runtime: Runtime) -> "asyncio.Task[None]":
    """The workflow engine on the core; runs a dead orchestrator left resume in the background
    (their scripts join the team like any client)."""
    from cao_sidecar.workflows.engine import WorkflowEngine

    engine = WorkflowEngine(runtime.core, project=runtime.workspace, tmux_socket=runtime.tmux_socket)
    runtime.core.workflows = engine
    engine.add_listener(runtime.fanout.emitter("workflow"))

    async def start() -> None:
        try:
            await engine.start()
        except Exception:  # the team works without resumed runs
            log.exception("resuming workflow runs failed")

    return asyncio.get_running_loop().create_task(start())
