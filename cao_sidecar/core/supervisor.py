"""The agent supervisor: every agent's life from spawn to teardown.

It owns the agents, their inboxes, the status monitor and tmux: it creates and launches agents
(core.startup), types input into them (core.typist), runs the turn machine (screen readings and the CLI's own
events go through `Agent.apply*`, and `_commit` applies what they did in one place), notices
exits and tears agents down. Team policies (handoff, assign, messages, answers) live in
core.team, over this class's public methods.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Awaitable, Callable, Optional

import attrs

from cao_sidecar import paths
from cao_sidecar.core import prompts
from cao_sidecar.core.agent import Agent, Transition, Turn
from cao_sidecar.core.errors import (
    AgentExited,
    InvalidRequest,
    TerminalError,
    UnknownTerminal,
)
from cao_sidecar.core.events import EventSource, PromptChanged, StatusChanged
from cao_sidecar.core.inbox import Inbox
from cao_sidecar.core.monitor import StatusMonitor
from cao_sidecar.core.stalls import StallWatch
from cao_sidecar.core.spec import checked_model
from cao_sidecar.core.startup import EnvHook, ReadyWaiter, check_installed, launch_command, wait_mcp_connection
from cao_sidecar.core.statedir import check_room, refusing_when_full
from cao_sidecar.core.status import SCREEN_END, AgentStatus
from cao_sidecar.core.leads import LeadMailboxes
from cao_sidecar.core.spec import WorkerSpec
from cao_sidecar.core.worktree_manager import WorktreeManager
from cao_sidecar.settings import settings
from cao_sidecar.startup_trace import mark
from cao_sidecar.core.stores import Stores
from cao_sidecar.core.typist import ENTER_RETRY_AFTER, Typist, owns_pane
from cao_sidecar.profiles.catalog import ProfileCatalog
from cao_sidecar.providers import get_provider
from cao_sidecar.storage.agents import AgentRecord
from cao_sidecar.storage.messages import StoredMessage
from cao_sidecar.terminal.tmux import TmuxError, TmuxServer

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
READY_TIMEOUT = settings().ready_timeout
EXIT_GRACE_SECONDS = 2.0
CLEANUP_WAIT_SECONDS = EXIT_GRACE_SECONDS + 3.0  # close() waits this long for failed agents' removal
# With the CLI's events active, a turn the screen says is over but no event ended is taken from
# the screen after this long (a lost hook must not hang a turn forever).
EVENT_GRACE_SECONDS = settings().event_grace
TMUX_START_ATTEMPTS = 10  # about 9 s in all: a loaded machine can hold a killed server longer


class AgentSupervisor:
    def __init__(
        self,
        *,
        tmux: TmuxServer,
        catalog: ProfileCatalog,
        stores: Stores,
        events: EventSource,
        state_dir: Path,
        default_cwd: str,
        default_session: str = "cao",
    ) -> None:
        self.tmux = tmux
        self.catalog = catalog
        self.stores = stores
        self.events = events
        self.state_dir = state_dir
        self.default_cwd = default_cwd
        self.default_session = default_session
        self.agents: dict[str, Agent] = {}
        self.mailboxes = LeadMailboxes(stores.messages)  # what host leads (MCP hosts) are sent
        self.route_elsewhere: Optional[Callable[[StoredMessage], None]] = None  # to box1:ab12cd34 (hosts)
        self.worktrees = WorktreeManager(
            state_dir=state_dir, db=stores.db, agents=self.agents, agent_store=stores.agents, terminate=self.terminate
        )
        self._inboxes: dict[str, Inbox] = {}
        self._background: set[asyncio.Task[object]] = set()
        self._cleanups: set[asyncio.Task[object]] = set()
        self._closing = False
        self._env_hooks: list[EnvHook] = []
        # Set once everything agents may call (the MCP server) is up; launches wait for it.
        self.agents_may_start = asyncio.Event()
        # Set when an agent whose CLI connects to the MCP server as it starts is launched (app.py).
        self.tool_client_launched = asyncio.Event()
        self._monitor = StatusMonitor(tmux, self._on_classified)
        self._stalls = StallWatch(self._on_stalled, lambda agent: settings().stall_seconds)
        self._ready = ReadyWaiter(tmux, self._monitor.refresh)
        self._typist = Typist(tmux, stores.logs, lambda agent: self._mark_exited(agent, None), self.spawn_background)
        tmux.add_exit_listener(self._on_pane_exit)
        tmux.add_output_data_listener(self._on_output_data)

    # ---- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start tmux (adopting the agents it still runs is core.recovery's, after this)."""
        for attempt in range(TMUX_START_ATTEMPTS):
            try:
                await self.tmux.start()
                return
            except TmuxError as exc:
                # A server killed a moment ago can still hold the socket: the new one then dies
                # at once ("server exited unexpectedly"). It is free a moment later.
                if attempt == TMUX_START_ATTEMPTS - 1:
                    raise
                log.warning("tmux did not start (%s); trying again", exc)
                await asyncio.sleep(0.2 * (attempt + 1))

    @property
    def closing(self) -> bool:
        return self._closing

    async def finish_cleanups(self) -> None:
        """Let the background removals of failed agents' windows finish (a failed `run`, whose
        sidecar closes right after, leaves no dead window behind)."""
        if self._cleanups:
            await asyncio.wait(list(self._cleanups), timeout=CLEANUP_WAIT_SECONDS)

    async def close(self) -> None:
        """Stop watching. Agents keep running in tmux: they outlive the sidecar."""
        await self.finish_cleanups()
        self._closing = True
        for task in list(self._background):
            task.cancel()
        await self.tmux.close()
        self.stores.close()

    def add_env_hook(self, hook: EnvHook) -> None:
        """`hook(agent)` adds to a launching agent's environment (e.g. its MCP credential)."""
        self._env_hooks.append(hook)

    # ---- queries ------------------------------------------------------------------------------

    def get_agent(self, terminal_id: str) -> Agent:
        agent = self.agents.get(terminal_id)
        if agent is None or agent.pooled:  # a warm worker is no one's to act on (core.pool)
            raise UnknownTerminal(f"no agent with terminal id '{terminal_id}'", terminalId=terminal_id)
        return agent

    def resolve_target(self, target: str, session: str | None, *, same_session: bool = False) -> Agent:
        """An agent by terminal id, or by name within `session`. With `same_session` (an agent's
        own call) an agent of another session is not found: an agent acts only on its team."""
        agent = self.agents.get(target)
        if agent is not None and not agent.pooled:
            if same_session and agent.session != session:
                raise UnknownTerminal(f"no agent '{target}' in your session '{session}'", terminalId=target)
            return agent
        named = [
            a for a in self.agents.values() if a.name == target and not a.pooled and (session is None or a.session == session)
        ]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise InvalidRequest(f"more than one agent is named '{target}'; use its terminal id", field="target")
        raise UnknownTerminal(f"no agent with terminal id or name '{target}'", terminalId=target)

    def list_agents(self, session: str | None = None, *, include_pooled: bool = False) -> list[Agent]:
        """The user's agents (warm workers of the pool only with `include_pooled`)."""
        return [
            a for a in self.agents.values()
            if (session is None or a.session == session) and (include_pooled or not a.pooled)
        ]  # fmt: skip

    def inbox_of(self, terminal_id: str) -> Optional[Inbox]:
        return self._inboxes.get(terminal_id)

    @property
    def queued_messages(self) -> int:
        """Messages waiting in all inboxes."""
        return sum(inbox.pending for inbox in self._inboxes.values())

    # ---- spawn --------------------------------------------------------------------------------

    def create(self, spec: WorkerSpec) -> Agent:
        """Validate a spawn request and register the agent (status starting). Nothing runs yet."""
        profile = self.catalog.get(spec.profile)
        if spec.model is not None:
            profile = attrs.evolve(profile, model=checked_model(spec.model))
        provider_impl = get_provider(spec.provider or profile.provider, workspace=self.default_cwd)
        session = spec.session or self.default_session
        name = spec.name
        if not NAME_PATTERN.fullmatch(session):
            raise InvalidRequest("field 'session' must be 1-64 letters, digits, '_' or '-'", field="session")
        if name is not None:
            if not NAME_PATTERN.fullmatch(name):
                raise InvalidRequest("field 'name' must be 1-64 letters, digits, '_' or '-'", field="name")
            if any(a.name == name and a.session == session and a.alive for a in self.agents.values()):
                raise InvalidRequest(f"an agent named '{name}' already runs in session '{session}'", field="name")
        cwd = os.path.abspath(os.path.expanduser(spec.working_directory or profile.working_directory or self.default_cwd))
        if not os.path.isdir(cwd):
            raise InvalidRequest(f"workingDirectory '{cwd}' is not a directory", field="workingDirectory")
        check_room(self.state_dir)
        terminal_id = secrets.token_hex(4)
        while terminal_id in self.agents:
            terminal_id = secrets.token_hex(4)
        agent_dir = self.state_dir / "agents" / terminal_id
        agent = Agent(
            terminal_id=terminal_id,
            session=session,
            profile=profile,
            provider=provider_impl,
            working_directory=cwd,
            agent_dir=agent_dir,
            name=name,
            pooled=spec.pooled,
        )
        self.worktrees.plan(agent, spec.worktree, spec.base_ref)  # raises before anything is stored
        with refusing_when_full(self.state_dir):
            self.stores.agents.save(
                AgentRecord(
                    terminal_id=terminal_id,
                    session=session,
                    profile=profile.name,
                    provider=provider_impl.name,
                    name=name,
                    working_directory=cwd,
                    agent_dir=str(agent_dir),
                    created_at=agent.created_at,
                    pane_id=None,
                    pid=None,
                    status=AgentStatus.STARTING.value,
                    last_answer=None,
                )
            )
        self.adopt(agent)
        self.stores.logs.event(
            "spawn", terminal_id, profile=profile.name, provider=provider_impl.name, session=session,
            workingDirectory=cwd, name=name,
        )  # fmt: skip
        self._emit_status(agent, None, AgentStatus.STARTING)
        return agent

    async def launch(self, agent: Agent, *, ready_timeout: float = READY_TIMEOUT) -> None:
        """Start the agent's CLI in a new tmux window and wait until it takes input."""
        try:
            mark("launch asked")
            await self.agents_may_start.wait()
            await self.worktrees.prepare(agent)  # its own git worktree, if it gets one
            # Files for the agent (its dir, credential, settings): a full disk is stateDirFull.
            with refusing_when_full(self.state_dir):
                paths.ensure_private_dir(agent.agent_dir.parent)
                agent.agent_dir.mkdir(exist_ok=True, mode=0o700)
                spec, env = launch_command(agent, self._env_hooks)
            check_installed(agent, spec, env)
            if spec.connects_to_sidecar:
                self.tool_client_launched.set()
            # The launch wired the CLI's own events (hooks, notify): they end its turns.
            agent.events_active = spec.events
            window_name = agent.name or f"{agent.profile.name}-{agent.terminal_id}"
            try:
                pane = await self.tmux.new_window(agent.session, window_name, spec.argv, env=env, cwd=agent.working_directory)
            except TmuxError as exc:
                raise TerminalError(f"tmux could not start the agent: {exc}", terminalId=agent.terminal_id) from exc
            self._forget_earlier_pane(agent, pane.pane_id)
            agent.pane_id, agent.pane_pid = pane.pane_id, pane.pid
            mark("agent window opened")
            self.stores.agents.set_pane(agent.terminal_id, pane.pane_id, pane.pid)
            self._monitor.watch(agent)
            if pane.dead:
                self._on_pane_exit(pane.pane_id, pane.dead_status)
            started = asyncio.get_running_loop().time()
            await self._ready.wait_ready(agent, ready_timeout)
            if spec.connects_to_sidecar:
                # Ready means ready to delegate: the CLI's first turn must have our tools.
                await wait_mcp_connection(agent, ready_timeout, started)
            mark("agent ready")
            self.stores.logs.event("ready", agent.terminal_id, mcpConnected=agent.mcp_connected.is_set())
        except BaseException:
            await self.clean_up(self.discard(agent))  # the failure is answered once the window is gone
            raise

    async def spawn(self, spec: WorkerSpec, *, ready_timeout: float = READY_TIMEOUT) -> Agent:
        agent = self.create(spec)
        await self.launch(agent, ready_timeout=ready_timeout)
        return agent

    def _forget_earlier_pane(self, agent: Agent, pane_id: str) -> None:
        """A restarted tmux server numbers panes from %0 again. Another agent that still holds
        `pane_id` had its pane die with the earlier server, and its exit was not seen (its report
        came after the id named the new pane, and the terminal layer dropped it): it has exited.
        Without this a busy agent waits forever; it must never act on the new pane either."""
        for other in list(self.agents.values()):
            if other is agent or other.pane_id != pane_id:
                continue
            self._monitor.unwatch(other)
            other.pane_id = None
            if other.alive and not other.terminating:
                log.warning("agent %s: its pane %s went with an earlier tmux server: exited", other.terminal_id, pane_id)
                self.spawn_background(self._mark_exited(other, None))

    def mcp_request_seen(self, terminal_id: str) -> None:
        """The agent face saw this agent's CLI get our tools (tools/list answered, or a tool called)."""
        agent = self.agents.get(terminal_id)
        if agent is None or agent.mcp_connected.is_set():
            return
        agent.mcp_connected.set()
        self.stores.logs.event("mcp.connected", terminal_id)

    def adopt(self, agent: Agent) -> Inbox:
        """Register a new agent, or one a previous sidecar left running (core.recovery), with its
        inbox (every input to it goes through it)."""
        self.agents[agent.terminal_id] = agent
        inbox = self._inboxes[agent.terminal_id] = Inbox(agent, self.send_input, self.stores.messages, self.queue_stored)
        return inbox

    def watch(self, agent: Agent) -> None:
        """Follow the agent's pane (it has one): its screen is classified at once, then on output."""
        self._monitor.watch(agent)

    def queue_stored(self, message: StoredMessage) -> None:
        """Queue a message the store holds already (a report for an assigning agent, a notice of a
        message that failed) in its receiver's inbox; it fails if the receiver has exited."""
        if self.mailboxes.accept(message):  # a host lead's: it waits until the host reads it
            return
        if ":" in message.receiver:  # an agent of another host: sent there (it waits until then)
            if self.route_elsewhere is not None:
                self.route_elsewhere(message)
            return
        receiver = self.agents.get(message.receiver)
        inbox = self._inboxes.get(message.receiver)
        if receiver is not None and receiver.alive and inbox is not None:
            inbox.put_stored(message.message_id, message.text, message.sender)
        else:
            self.stores.messages.mark_failed(message.message_id, "the receiving agent has exited")

    # ---- input and turns ----------------------------------------------------------------------

    async def send_input(self, agent: Agent, text: str) -> Turn:
        """Type `text` into the agent and press Enter: a new turn (the inbox calls this)."""
        return await self._typist.send_input(agent, text)

    async def submit_typed_input(self, agent: Agent, text: str) -> Turn:
        """Press Enter for text a previous sidecar typed and did not submit (core.typing_recovery)."""
        return await self._typist.submit_typed_input(agent, text)

    def _on_classified(self, agent: Agent, status: AgentStatus, screen: str) -> None:
        if agent.terminating:
            return  # the exit command's own screen is not news; `exited` follows
        if status is AgentStatus.EXITED:
            # The screen shows the CLI gone (a shell prompt is back): same as the process ending.
            agent.screen = screen
            if agent.pane_id is not None:
                self._on_pane_exit(agent.pane_id, None)
            return
        if self._stalls.screen_seen(agent, screen):
            self._commit(agent, agent.unstalled())
        elif agent.status is AgentStatus.STALLED and status is AgentStatus.PROCESSING:
            agent.screen = screen  # the same screen again (a spinner frame): still stalled
            return
        if agent.overruled_by_events(status):
            # Events win: keep the screen (answers, tails), not its reading. If the screen says
            # the turn is over and no event comes, believe the screen after a grace period.
            agent.keep_overruled_screen(status, screen)
            if agent.turn is not None and status in SCREEN_END:
                if agent.screen_fallback is None:
                    agent.screen_fallback = asyncio.get_running_loop().call_later(
                        EVENT_GRACE_SECONDS, self._screen_fallback, agent, agent.turn
                    )
            elif agent.screen_fallback is not None:
                # The screen works again (a line CLI's typed input reads as its prompt until the
                # CLI draws): the grace counts from the screen's last word that the turn is over.
                agent.screen_fallback.cancel()
                agent.screen_fallback = None
            self._refresh_prompt(agent)
            return
        transition = agent.apply(status, screen)
        if transition.previous is None:
            self._refresh_prompt(agent)
        self._commit(agent, transition)

    def _refresh_prompt(self, agent: Agent) -> None:
        if prompts.refresh(agent) and agent.prompt is not None:
            self.events.emit(PromptChanged(agent, agent.prompt))

    def agent_event(self, agent: Agent, status: AgentStatus, answer: Optional[str] = None, *, confirmed: bool = False) -> None:
        """A status the CLI reported itself (a hook, Codex's notify): it goes through the same turn
        machinery as screen classifications and beats them (see Agent.overruled_by_events)."""
        if agent.terminating or not agent.alive:
            return
        if status is AgentStatus.EXITED:
            if agent.pane_id is not None:
                self._on_pane_exit(agent.pane_id, None)
            return
        self._stalls.activity(agent)
        self._commit(agent, agent.unstalled())
        self._commit(agent, agent.apply_event(status, answer, confirmed))

    def _on_stalled(self, agent: Agent) -> None:
        if agent.terminating or not agent.alive:
            return
        log.warning(
            "agent %s: working, but no output or event for %.0fs: stalled",
            agent.terminal_id,
            self._stalls.quiet_seconds(agent),
        )
        self._commit(agent, agent.stalled())

    def _screen_fallback(self, agent: Agent, turn: Turn) -> None:
        """The events never ended this turn although the screen did: take the screen's word."""
        agent.screen_fallback = None
        if agent.turn is not turn or not agent.alive or agent.terminating:
            return
        status = agent.provider.classify(agent.screen)
        if status not in SCREEN_END:
            return
        log.warning("agent %s: no end-of-turn event within %gs; using the screen", agent.terminal_id, EVENT_GRACE_SECONDS)
        self._commit(agent, agent.apply(status, agent.screen))

    def _commit(self, agent: Agent, transition: Transition) -> None:
        """Apply what a reading did: announce the new status, then end the finished turn. The one
        place a turn ends (its `done` resolves once, whatever reports the end again)."""
        if transition.previous is not None:
            self._emit_status(agent, transition.previous, agent.status)
        result = transition.finished
        if result is None:
            return
        turn = agent.turn
        agent.turn = None
        if agent.screen_fallback is not None:
            agent.screen_fallback.cancel()
            agent.screen_fallback = None
        if result.answer is not None:
            agent.last_answer = result.answer
        if turn is not None and not turn.done.done():
            turn.done.set_result(result)

    def _emit_status(self, agent: Agent, previous: AgentStatus | None, status: AgentStatus) -> None:
        self._stalls.status_changed(agent, status)
        prompts.on_status(agent, status)
        if agent.terminal_id in self.agents:
            self.stores.agents.set_status(agent.terminal_id, status.value)
        self.stores.logs.event("status", agent.terminal_id, status=status.value, previous=previous.value if previous else None)
        if status is AgentStatus.EXITED:
            self.stores.logs.close_output(agent.terminal_id)
        self.events.emit(StatusChanged(agent, previous, status))

    def _on_output_data(self, pane_id: str, data: bytes) -> None:
        agent = self._monitor.agent_for_pane(pane_id)
        if agent is not None:
            self.stores.logs.output(agent.terminal_id, data)

    def _on_pane_exit(self, pane_id: str, exit_status: int | None) -> None:
        agent = self._monitor.agent_for_pane(pane_id)
        if agent is not None and agent.alive:
            self.spawn_background(self._mark_exited(agent, exit_status))

    async def _mark_exited(self, agent: Agent, exit_status: int | None) -> None:
        if agent.pane_id is not None:
            try:
                agent.screen = await self.tmux.capture(agent.pane_id)
            except TmuxError:
                pass
        if not agent.alive:
            return
        self._monitor.unwatch(agent)
        self._commit(agent, agent.mark_exited())
        inbox = self._inboxes.get(agent.terminal_id)
        if inbox is not None:
            inbox.fail_all(AgentExited("agent exited before the message was delivered", terminalId=agent.terminal_id))
        if agent.pane_id is not None and not agent.terminating:
            # remain-on-exit kept the window so we could read its last screen; now drop it
            # (unless the id names a new pane now: its server was restarted meanwhile).
            try:
                await self.tmux.kill_window(agent.pane_id, pid=agent.pane_pid)
            except TmuxError:
                pass
            # The pane id may be given to a new pane (tmux restarts numbering with its server):
            # this agent must never act on that one.
            agent.pane_id = None
        log.info("agent %s exited (status %s)", agent.terminal_id, exit_status)

    async def read_answer(self, agent: Agent, screen: str | None = None) -> str:
        """The agent's last answer: from the CLI's own record, else read from its screen."""
        answer = agent.provider.read_answer(agent.agent_dir)
        if answer is not None:
            return answer
        if agent.alive and agent.pane_id is not None:
            try:
                screen = await self.tmux.capture(agent.pane_id, history=True)
            except TmuxError:
                pass
        return agent.provider.extract_answer(screen or agent.screen) or ""

    # ---- teardown -----------------------------------------------------------------------------

    async def interrupt(self, agent: Agent) -> None:
        """Interrupt the agent's current turn (its CLI's interrupt key); the turn ends as an error."""
        pane_id = agent.pane_id
        if pane_id is None or not agent.alive or not await owns_pane(self.tmux, agent):
            return
        try:
            await self.tmux.send_keys(pane_id, agent.provider.interrupt_key)
        except TmuxError:
            pass
        self._commit(agent, agent.interrupted())

    async def teardown(self, agent: Agent) -> None:
        """Ask the CLI to exit, give it a moment, then remove its window and forget it."""
        if agent.terminating:
            return
        agent.terminating = True
        try:
            pane_id = agent.pane_id
            if agent.alive and pane_id is not None and await owns_pane(self.tmux, agent):
                if agent.status.accepts_input and agent.turn is None:
                    await self._ask_to_exit(agent, pane_id)
            await self.discard(agent)
        finally:
            agent.terminating = True

    async def _ask_to_exit(self, agent: Agent, pane_id: str) -> None:
        """Type the CLI's exit command and wait a moment for it to go."""
        loop = asyncio.get_running_loop()
        try:
            await self.tmux.paste_text(pane_id, agent.provider.exit_command)
            await self.tmux.send_keys(pane_id, "Enter")
        except TmuxError:
            pass
        deadline = loop.time() + EXIT_GRACE_SECONDS
        enter_again = loop.time() + ENTER_RETRY_AFTER[0]
        while agent.alive:
            now = loop.time()
            remaining = deadline - now
            if remaining <= 0:
                break
            if enter_again and now >= enter_again:
                # Like a task's Enter, the one after the exit command can be swallowed.
                enter_again = 0.0
                try:
                    await self.tmux.send_keys(pane_id, "Enter")
                except TmuxError:
                    pass
            await agent.wait_change(min(remaining, enter_again - now) if enter_again else remaining)

    async def terminate(self, terminal_id: str) -> None:
        await self.teardown(self.get_agent(terminal_id))

    async def discard(self, agent: Agent) -> None:
        """Remove the window and the record; report the agent as exited if it was not yet."""
        agent.terminating = True
        self._monitor.unwatch(agent)
        pane_id = agent.pane_id  # _mark_exited may clear it while we ask tmux
        if pane_id is not None and await owns_pane(self.tmux, agent, live=False):
            try:
                await self.tmux.kill_window(pane_id)
            except TmuxError:
                pass
        self._commit(agent, agent.mark_exited())
        inbox = self._inboxes.pop(agent.terminal_id, None)
        if inbox is not None:
            inbox.fail_all(AgentExited("agent was terminated", terminalId=agent.terminal_id))
        self.agents.pop(agent.terminal_id, None)
        self.spawn_background(self.worktrees.drop_if_empty(agent.terminal_id))  # one with work stays
        if self.stores.agents.has_assign(agent.terminal_id):
            # Kept (as exited) until its assign is reported, so a successor can still report it.
            self.stores.agents.set_status(agent.terminal_id, AgentStatus.EXITED.value)
        else:
            self.stores.agents.remove(agent.terminal_id)
        shutil.rmtree(agent.agent_dir, ignore_errors=True)

    # ---- background work ----------------------------------------------------------------------

    def spawn_background(self, coro: Awaitable[object]) -> asyncio.Task[object]:
        """Run `coro` as a task the supervisor keeps (and cancels on close); failures are logged."""
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def spawn_cleanup(self, coro: Awaitable[object]) -> asyncio.Task[object]:
        """A background removal of a failed agent's window: close() lets it finish, so a failed
        `run` (whose sidecar closes right after) leaves no dead window behind."""
        task = self.spawn_background(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def clean_up(self, coro: Awaitable[object]) -> None:
        """Remove a failed agent before its failure is answered (a client leaving on the answer finds
        no window); never cut short: a second cancel or a slow removal leaves it in the background."""
        await asyncio.wait([self.spawn_cleanup(coro)], timeout=CLEANUP_WAIT_SECONDS)

    def _background_done(self, task: asyncio.Task[object]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())
