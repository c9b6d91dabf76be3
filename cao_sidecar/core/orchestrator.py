"""The orchestration core, composed: stores, event source, agent supervisor and team.

`Orchestrator` is the team (core.team) over a supervisor it builds from the stores of one state
dir. Faces keep calling it as before; the few supervisor calls they make (agents, create,
launch, teardown, hooks and events from the agent face) are passed through here, and the
listener methods are adapters over core.events (each returns its unsubscribe handle).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from cao_sidecar.core.agent import Agent, PendingPrompt
from cao_sidecar.core.events import (
    EventSource,
    PromptChanged,
    StatusChanged,
    Subscription,
    WorkerCompleted,
    WorkerOutcome,
)
from cao_sidecar.core.leads import LeadMailboxes
from cao_sidecar.core.pool import WorkerPool
from cao_sidecar.core.reporting import AssignReports
from cao_sidecar.core.spec import WorkerSpec
from cao_sidecar.core.startup import EnvHook
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.core.stores import open_stores
from cao_sidecar.core.supervisor import READY_TIMEOUT, AgentSupervisor
from cao_sidecar.core.team import Team, check_agent_text
from cao_sidecar.core.worktree_manager import WorktreeManager
from cao_sidecar.profiles.catalog import ProfileCatalog
from cao_sidecar.settings import settings
from cao_sidecar.storage.agents import AgentStore
from cao_sidecar.storage.logs import ConversationLogs
from cao_sidecar.storage.messages import MessageStore, StoredMessage
from cao_sidecar.storage.reports import Report
from cao_sidecar.terminal.tmux import TmuxServer

if TYPE_CHECKING:
    from cao_sidecar.workflows.engine import RunListener, WorkflowEngine

__all__ = ["READY_TIMEOUT", "Orchestrator", "WorkerOutcome", "WorkerSpec", "check_agent_text"]

StatusListener = Callable[[Agent, Optional[AgentStatus], AgentStatus], None]
PromptListener = Callable[[Agent, PendingPrompt], None]
CompletedListener = Callable[[WorkerOutcome], None]


class Orchestrator(Team):
    def __init__(
        self,
        *,
        tmux: TmuxServer,
        catalog: ProfileCatalog,
        state_dir: Path,
        default_cwd: str,
        default_session: str = "cao",
    ) -> None:
        stores, notice = open_stores(state_dir, tmux.socket_name)
        events = EventSource()
        supervisor = AgentSupervisor(
            tmux=tmux, catalog=catalog, stores=stores, events=events, state_dir=state_dir,
            default_cwd=default_cwd, default_session=default_session,
        )  # fmt: skip
        assigns = AssignReports(
            state_dir=state_dir, messages=stores.messages, agent_store=stores.agents, reports=stores.reports,
            logs=stores.logs, events=events, queue_stored=supervisor.queue_stored,
        )  # fmt: skip
        pool = WorkerPool(supervisor, max_workers=settings().pool_max_workers, max_memory_mb=settings().pool_max_memory_mb)
        super().__init__(supervisor, assigns, pool)
        assigns.describe_work = supervisor.worktrees.describe  # a worker's report says where its work is
        # Things the user should hear about once an editor is connected (a state db set aside).
        self.notices: list[str] = [notice] if notice else []
        # Workflow runs (cao_sidecar.workflows.engine); the runtime sets it once the core is up.
        self.workflows: Optional[WorkflowEngine] = None

    # ---- the supervisor's state, as faces read it ---------------------------------------------

    @property
    def agents(self) -> dict[str, Agent]:
        return self.supervisor.agents

    @property
    def tmux(self) -> TmuxServer:
        return self.supervisor.tmux

    @property
    def catalog(self) -> ProfileCatalog:
        return self.supervisor.catalog

    @property
    def state_dir(self) -> Path:
        return self.supervisor.state_dir

    @property
    def default_session(self) -> str:
        return self.supervisor.default_session

    @property
    def logs(self) -> ConversationLogs:
        return self.supervisor.stores.logs

    @property
    def messages(self) -> MessageStore:
        return self.supervisor.stores.messages

    @property
    def agent_store(self) -> AgentStore:
        return self.supervisor.stores.agents

    @property
    def agents_may_start(self) -> asyncio.Event:
        return self.supervisor.agents_may_start

    @property
    def tool_client_launched(self) -> asyncio.Event:
        return self.supervisor.tool_client_launched

    @property
    def worktrees(self) -> WorktreeManager:
        return self.supervisor.worktrees

    @property
    def mailboxes(self) -> LeadMailboxes:
        return self.supervisor.mailboxes

    @property
    def queued_messages(self) -> int:
        return self.supervisor.queued_messages

    # ---- supervisor calls faces make ----------------------------------------------------------

    def create(
        self,
        profile_name: str,
        *,
        provider: str | None = None,
        working_directory: str | None = None,
        session: str | None = None,
        name: str | None = None,
        worktree: bool | None = None,
        base_ref: str | None = None,
    ) -> Agent:
        """Validate a spawn request and register the agent (status starting). Nothing runs yet."""
        return self.supervisor.create(
            WorkerSpec(profile_name, provider, working_directory, session, name, worktree=worktree, base_ref=base_ref)
        )

    async def launch(self, agent: Agent, *, ready_timeout: float = READY_TIMEOUT) -> None:
        await self.supervisor.launch(agent, ready_timeout=ready_timeout)

    async def teardown(self, agent: Agent) -> None:
        await self.supervisor.teardown(agent)

    def queue_stored(self, message: StoredMessage) -> None:
        self.supervisor.queue_stored(message)

    def add_env_hook(self, hook: EnvHook) -> None:
        self.supervisor.add_env_hook(hook)

    def mcp_request_seen(self, terminal_id: str) -> None:
        self.supervisor.mcp_request_seen(terminal_id)

    def agent_event(self, agent: Agent, status: AgentStatus, answer: Optional[str] = None, *, confirmed: bool = False) -> None:
        self.supervisor.agent_event(agent, status, answer, confirmed=confirmed)

    # ---- listeners: adapters over core.events -------------------------------------------------

    def add_status_listener(self, listener: StatusListener) -> Subscription[StatusChanged]:
        return self.events.subscribe(StatusChanged, lambda e: listener(e.agent, e.previous, e.status))

    def add_prompt_listener(self, listener: PromptListener) -> Subscription[PromptChanged]:
        """`listener(agent, prompt)` when a waiting agent's question changes on screen (a new status
        comes with its prompt through the status listeners)."""
        return self.events.subscribe(PromptChanged, lambda e: listener(e.agent, e.prompt))

    def add_completed_listener(self, listener: CompletedListener) -> Subscription[WorkerCompleted]:
        """`listener(outcome)` in this process when an assign ends (not again after a restart)."""
        return self.events.subscribe(WorkerCompleted, lambda e: listener(e.outcome))

    def set_report_sink(self, sink: Callable[[Report], None], ready: Callable[[], bool] = lambda: True) -> None:
        """`sink(report)` gets every assign's report exactly once, across restarts: the ones
        waiting in the state db at once, then each as it is made (the editor's workerCompleted).
        A report waits while `ready()` is false (the editor does not read what was sent)."""
        self.assigns.set_sink(sink, ready)

    def add_workflow_listener(self, listener: "RunListener") -> None:
        """`listener(run info)` when a workflow run or one of its steps changes."""
        if self.workflows is not None:
            self.workflows.add_listener(listener)
