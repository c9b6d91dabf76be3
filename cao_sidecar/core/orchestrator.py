"""The orchestration core: spawn, handoff, assign, messages, teardown.

Every face (the editor's cao/* methods, the agents' MCP tools, the command line) calls these
methods; none of them talks to tmux or to providers directly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Awaitable, Callable, Optional

import attrs

from cao_sidecar import paths
from cao_sidecar.core import prompts
from cao_sidecar.core.agent import Agent, PendingPrompt, Turn, TurnResult
from cao_sidecar.core.crash_hooks import crash_point
from cao_sidecar.core.errors import (
    AgentExited,
    AgentFailed,
    AgentNotReady,
    AgentTimeout,
    CaoError,
    InvalidRequest,
    TerminalError,
    UnknownTerminal,
)
from cao_sidecar.core.inbox import Inbox
from cao_sidecar.core.leads import Caller, LeadMailboxes
from cao_sidecar.core.monitor import StatusMonitor
from cao_sidecar.core.reporting import AssignReports
from cao_sidecar.core.statedir import check_room, refusing_when_full
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.core.typed_text import text_for_agent
from cao_sidecar.core.worktree_manager import WorktreeManager
from cao_sidecar.profiles.catalog import ProfileCatalog
from cao_sidecar.storage.agents import AgentRecord, AgentStore
from cao_sidecar.storage.logs import ConversationLogs
from cao_sidecar.storage.messages import MessageStore, StoredMessage
from cao_sidecar.storage.reports import Report, ReportStore
from cao_sidecar.storage.state_db import open_state_db
from cao_sidecar.providers import LaunchContext, cli_facts, get_provider, own_python
from cao_sidecar.providers.base import flag_like_value, profile_options
from cao_sidecar.terminal.tmux import PaneGone, TmuxError, TmuxServer
from cao_sidecar.settings import settings
from cao_sidecar.wire import ASSIGN_TIMEOUT_SECONDS, HANDOFF_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
READY_TIMEOUT = settings().ready_timeout
EXIT_GRACE_SECONDS = 2.0
CLEANUP_WAIT_SECONDS = EXIT_GRACE_SECONDS + 3.0  # close() waits this long for failed agents' removal
STARTUP_DIALOG_POLL = 0.25  # while a startup dialog shows, look at the screen this often
STARTUP_DIALOG_REPEAT = 3.0  # answer the same dialog again if it is still there after this
STARTUP_FAIL_AFTER = 2.0  # a dialog only the user can answer (login) fails the launch after this
# With the CLI's events active, a turn the screen says is over but no event ended is taken from
# the screen after this long (a lost hook must not hang a turn forever).
EVENT_GRACE_SECONDS = settings().event_grace
TMUX_START_ATTEMPTS = 10  # about 9 s in all: a loaded machine can hold a killed server longer
ENTER_RETRY_AFTER = (0.5, 1.5)  # seconds after sending: press Enter again if the turn never started
# Environment passed through to agents so they find the same tools as the sidecar.
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "PYTHONPATH", "CAO_MOCK_DELAY_MS")


@attrs.define
class WorkerOutcome:
    agent: Agent
    status: AgentStatus
    output: str
    error: Optional[CaoError] = None


StatusListener = Callable[[Agent, Optional[AgentStatus], AgentStatus], None]
CompletedListener = Callable[[WorkerOutcome], None]


def check_agent_text(text: str, field: str) -> None:
    """Refuse text that could act as more than one input to an agent's terminal."""
    if "\x1b[200~" in text or "\x1b[201~" in text:
        raise InvalidRequest(
            f"field '{field}' contains a bracketed-paste marker (ESC [200~ or ESC [201~), which would let "
            "the rest of the text act as typed keys; remove it",
            field=field,
        )


class Orchestrator:
    def __init__(
        self,
        *,
        tmux: TmuxServer,
        catalog: ProfileCatalog,
        state_dir: Path,
        default_cwd: str,
        default_session: str = "cao",
    ) -> None:
        self.tmux = tmux
        self.catalog = catalog
        self.state_dir = state_dir
        self.default_cwd = default_cwd
        self.default_session = default_session
        self.agents: dict[str, Agent] = {}
        db, notice = open_state_db(state_dir / "state.db")
        # Things the user should hear about once an editor is connected (a state db set aside).
        self.notices: list[str] = [notice] if notice else []
        self.messages = MessageStore(db)
        self.agent_store = AgentStore(db)
        self.mailboxes = LeadMailboxes(self.messages)  # what host leads (MCP hosts) are sent
        reports = ReportStore(db)
        reports.prune()
        self.logs = ConversationLogs(state_dir / "logs")
        self.assigns = AssignReports(
            state_dir=state_dir, messages=self.messages, agent_store=self.agent_store, reports=reports, logs=self.logs,
            queue_stored=self.queue_stored,
        )  # fmt: skip
        self.worktrees = WorktreeManager(
            state_dir=state_dir, db=db, agents=self.agents, agent_store=self.agent_store, terminate=self.terminate
        )
        self.assigns.describe_work = self.worktrees.describe
        self._inboxes: dict[str, Inbox] = {}
        self._status_listeners: list[StatusListener] = []
        self._prompt_listeners: list[Callable[[Agent, PendingPrompt], None]] = []
        self._background: set[asyncio.Task[object]] = set()
        self._cleanups: set[asyncio.Task[object]] = set()
        self._closing = False
        self._env_hooks: list[Callable[[Agent], dict[str, str]]] = []
        # Set once everything agents may call (the MCP server) is up; launches wait for it.
        self.agents_may_start = asyncio.Event()
        self._monitor = StatusMonitor(tmux, self._on_classified)
        tmux.add_exit_listener(self._on_pane_exit)
        tmux.add_output_data_listener(self._on_output_data)

    # ---- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start tmux, then adopt the agents a previous sidecar left running (core.recovery)."""
        from cao_sidecar.core.recovery import adopt_agents

        for attempt in range(TMUX_START_ATTEMPTS):
            try:
                await self.tmux.start()
                break
            except TmuxError as exc:
                # A server killed a moment ago can still hold the socket: the new one then dies
                # at once ("server exited unexpectedly"). It is free a moment later.
                if attempt == TMUX_START_ATTEMPTS - 1:
                    raise
                log.warning("tmux did not start (%s); trying again", exc)
                await asyncio.sleep(0.2 * (attempt + 1))
        await adopt_agents(self)

    async def close(self) -> None:
        """Stop watching. Agents keep running in tmux: they outlive the sidecar (failed ones'
        windows are removed first)."""
        if self._cleanups:
            await asyncio.wait(list(self._cleanups), timeout=CLEANUP_WAIT_SECONDS)
        self._closing = True
        self.assigns.closing = True
        for task in list(self._background):
            task.cancel()
        await self.tmux.close()
        self.logs.close()
        self.messages.close()

    def add_status_listener(self, listener: StatusListener) -> None:
        self._status_listeners.append(listener)

    def add_completed_listener(self, listener: CompletedListener) -> None:
        """`listener(outcome)` in this process when an assign ends (not again after a restart)."""
        self.assigns.add_listener(listener)

    def set_report_sink(self, sink: Callable[[Report], None], ready: Callable[[], bool] = lambda: True) -> None:
        """`sink(report)` gets every assign's report exactly once, across restarts: the ones
        waiting in the state db at once, then each as it is made (the editor's workerCompleted).
        A report waits while `ready()` is false (the editor does not read what was sent)."""
        self.assigns.set_sink(sink, ready)

    def add_prompt_listener(self, listener: Callable[[Agent, PendingPrompt], None]) -> None:
        """`listener(agent, prompt)` when a waiting agent's question changes on screen (a new status
        comes with its prompt through the status listeners)."""
        self._prompt_listeners.append(listener)

    def add_env_hook(self, hook: Callable[[Agent], dict[str, str]]) -> None:
        """`hook(agent)` adds to a launching agent's environment (e.g. its MCP credential)."""
        self._env_hooks.append(hook)

    # ---- queries ------------------------------------------------------------------------------

    def get_agent(self, terminal_id: str) -> Agent:
        agent = self.agents.get(terminal_id)
        if agent is None:
            raise UnknownTerminal(f"no agent with terminal id '{terminal_id}'", terminalId=terminal_id)
        return agent

    def resolve_target(self, target: str, session: str | None, *, same_session: bool = False) -> Agent:
        """An agent by terminal id, or by name within `session`. With `same_session` (an agent's
        own call) an agent of another session is not found: an agent acts only on its team."""
        agent = self.agents.get(target)
        if agent is not None:
            if same_session and agent.session != session:
                raise UnknownTerminal(f"no agent '{target}' in your session '{session}'", terminalId=target)
            return agent
        named = [a for a in self.agents.values() if a.name == target and (session is None or a.session == session)]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise InvalidRequest(f"more than one agent is named '{target}'; use its terminal id", field="target")
        raise UnknownTerminal(f"no agent with terminal id or name '{target}'", terminalId=target)

    def list_agents(self, session: str | None = None) -> list[Agent]:
        return [a for a in self.agents.values() if session is None or a.session == session]

    async def get_output(self, terminal_id: str, mode: str = "last") -> str:
        agent = self.get_agent(terminal_id)
        if mode == "full":
            if agent.alive and agent.pane_id is not None:
                try:
                    return await self.tmux.capture(agent.pane_id, history=True)
                except TmuxError:
                    pass
            return agent.screen
        if agent.last_answer is not None:
            return agent.last_answer
        return await self._read_answer(agent) or ""

    # ---- spawn --------------------------------------------------------------------------------

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
        profile = self.catalog.get(profile_name)
        provider_impl = get_provider(provider or profile.provider, workspace=self.default_cwd)
        session = session or self.default_session
        if not NAME_PATTERN.fullmatch(session):
            raise InvalidRequest("field 'session' must be 1-64 letters, digits, '_' or '-'", field="session")
        if name is not None:
            if not NAME_PATTERN.fullmatch(name):
                raise InvalidRequest("field 'name' must be 1-64 letters, digits, '_' or '-'", field="name")
            if any(a.name == name and a.session == session and a.alive for a in self.agents.values()):
                raise InvalidRequest(f"an agent named '{name}' already runs in session '{session}'", field="name")
        cwd = os.path.abspath(os.path.expanduser(working_directory or profile.working_directory or self.default_cwd))
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
        )
        self.worktrees.plan(agent, worktree, base_ref)  # raises before anything is stored
        with refusing_when_full(self.state_dir):
            self.agent_store.save(
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
        self.agents[terminal_id] = agent
        self.new_inbox(agent)
        self.logs.event(
            "spawn", terminal_id, profile=profile.name, provider=provider_impl.name, session=session,
            workingDirectory=cwd, name=name,
        )
        self._emit_status(agent, None, AgentStatus.STARTING)
        return agent

    async def launch(self, agent: Agent, *, ready_timeout: float = READY_TIMEOUT) -> None:
        """Start the agent's CLI in a new tmux window and wait until it takes input."""
        try:
            await self.agents_may_start.wait()
            await self.worktrees.prepare(agent)  # its own git worktree, if it gets one
            # Files for the agent (its dir, credential, settings): a full disk is stateDirFull.
            with refusing_when_full(self.state_dir):
                paths.ensure_private_dir(agent.agent_dir.parent)
                agent.agent_dir.mkdir(exist_ok=True, mode=0o700)
                env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
                env.update(own_python.safe_pythonpath(env))  # no entry that means "the agent's cwd"
                env.update(
                    CAO_TERMINAL_ID=agent.terminal_id,
                    CAO_SESSION=agent.session,
                    CAO_PROFILE=agent.profile.name,
                )
                env.update(agent.profile.env)
                for hook in self._env_hooks:
                    env.update(hook(agent))
                ctx = LaunchContext(
                    terminal_id=agent.terminal_id,
                    session=agent.session,
                    working_directory=agent.working_directory,
                    agent_dir=agent.agent_dir,
                    model=agent.profile.model,
                    system_prompt=agent.profile.system_prompt,
                    env=env,
                    options=profile_options(agent.profile),
                )
                flag_like = flag_like_value(ctx)
                if flag_like is not None:
                    raise InvalidRequest(
                        f"profile '{agent.profile.name}': {flag_like} begins with '-' and could be taken as a "
                        "command-line flag; the agent is not started",
                        field="profile",
                    )
                try:
                    spec = agent.provider.launch(ctx)
                except ValueError as exc:  # a value the provider cannot put on its command line
                    raise InvalidRequest(f"profile '{agent.profile.name}': {exc}", field="profile") from exc
                env.update(spec.env)
            missing = cli_facts.missing_command(agent.provider, spec.argv, env)
            if missing is not None:  # say so now, not "exited before it was ready" later
                raise AgentNotReady(f"agent '{agent.profile.name}' cannot start: {missing}", terminalId=agent.terminal_id)
            # The launch wired the CLI's own events (hooks, notify): they end its turns.
            agent.events_active = spec.events
            window_name = agent.name or f"{agent.profile.name}-{agent.terminal_id}"
            try:
                pane = await self.tmux.new_window(
                    agent.session, window_name, spec.argv, env=env, cwd=agent.working_directory
                )
            except TmuxError as exc:
                raise TerminalError(f"tmux could not start the agent: {exc}", terminalId=agent.terminal_id) from exc
            agent.pane_id, agent.pane_pid = pane.pane_id, pane.pid
            self.agent_store.update(agent.terminal_id, pane_id=pane.pane_id, pid=pane.pid)
            self._monitor.watch(agent)
            if pane.dead:
                self._on_pane_exit(pane.pane_id, pane.dead_status)
            started = asyncio.get_running_loop().time()
            await self._wait_ready(agent, ready_timeout)
            if spec.connects_to_sidecar:
                # Ready means ready to delegate: the CLI's first turn must have our tools.
                await self._wait_mcp_connection(agent, ready_timeout, started)
            self.logs.event("ready", agent.terminal_id, mcpConnected=agent.mcp_connected.is_set())
        except BaseException:
            self._spawn_cleanup(self._discard(agent))
            raise

    async def spawn(self, profile_name: str, **kwargs: object) -> Agent:
        ready_timeout = kwargs.pop("ready_timeout", READY_TIMEOUT)
        agent = self.create(profile_name, **kwargs)  # type: ignore[arg-type]
        await self.launch(agent, ready_timeout=ready_timeout)  # type: ignore[arg-type]
        return agent

    async def _wait_ready(self, agent: Agent, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        answered: dict[str, float] = {}  # startup dialog rule → when we last answered it
        # Some CLIs draw their prompt for a moment before a startup dialog replaces it: ready
        # means ready for this long (the provider's `ready_settle_seconds`).
        settle = float(getattr(agent.provider, "ready_settle_seconds", 0.0))
        while True:
            if agent.status.accepts_input:
                logged_out = cli_facts.logged_out(agent.provider, agent.screen)
                if logged_out is not None:
                    raise AgentNotReady(
                        f"agent '{agent.profile.name}' cannot start: {logged_out}",
                        terminalId=agent.terminal_id,
                        screenTail=agent.screen_tail(),
                    )
                if settle <= 0:
                    return
                await asyncio.sleep(min(settle, max(0.0, deadline - asyncio.get_running_loop().time())))
                settle = 0.0
                continue
            if agent.status is AgentStatus.EXITED:
                raise AgentExited(
                    f"agent '{agent.profile.name}' exited before it was ready",
                    terminalId=agent.terminal_id,
                    screenTail=agent.screen_tail(),
                )
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AgentNotReady(
                    f"agent '{agent.profile.name}' was not ready for input after {timeout:g}s "
                    f"(status {agent.status.value})",
                    terminalId=agent.terminal_id,
                    screenTail=agent.screen_tail(),
                )
            if agent.status is AgentStatus.WAITING_USER_ANSWER:
                await self._answer_startup_dialog(agent, answered)
                # A dialog can follow another without a status change: look again soon.
                remaining = min(remaining, STARTUP_DIALOG_POLL)
            await agent.wait_change(remaining)

    async def _wait_mcp_connection(self, agent: Agent, timeout: float, started: float) -> None:
        remaining = timeout - (asyncio.get_running_loop().time() - started)
        if await agent.wait_mcp_connection(max(0.0, remaining)):
            return
        if not agent.alive:
            raise AgentExited(
                f"agent '{agent.profile.name}' exited before it was ready",
                terminalId=agent.terminal_id,
                screenTail=agent.screen_tail(),
            )
        raise AgentNotReady(
            f"agent '{agent.profile.name}' was not ready after {timeout:g}s: the CLI did not connect to the "
            "sidecar's MCP server",
            terminalId=agent.terminal_id,
            screenTail=agent.screen_tail(),
        )

    def mcp_request_seen(self, terminal_id: str) -> None:
        """The agent face saw a request with this agent's credential on our MCP endpoint."""
        agent = self.agents.get(terminal_id)
        if agent is None or agent.mcp_connected.is_set():
            return
        agent.mcp_connected.set()
        self.logs.event("mcp.connected", terminal_id)

    async def _answer_startup_dialog(self, agent: Agent, answered: dict[str, float]) -> None:
        """Answer a startup dialog (trust, consent, update) with the keys the provider names, or
        fail at once on one only the user can answer (login). Each dialog is answered again only
        if it is still there a while later."""
        action_of = getattr(agent.provider, "startup_action", None)
        if action_of is None or agent.pane_id is None:
            return
        action = action_of(agent.screen, profile_options(agent.profile))
        # A fail dialog's sighting lasts only while it stays on screen: two brief frames seconds
        # apart (Gemini CLI draws its auth dialogs before their "Existing API key" line) are not one.
        seen_fail = "fail:" + action.rule if action is not None and action.fail else None
        for rule in [r for r in answered if r.startswith("fail:") and r != seen_fail]:
            del answered[rule]
        if action is None:
            return
        if action.fail:
            # Only a dialog that stays is final (a frame can be caught before its last lines).
            first_seen = answered.setdefault("fail:" + action.rule, asyncio.get_running_loop().time())
            if asyncio.get_running_loop().time() - first_seen < STARTUP_FAIL_AFTER:
                return
            raise AgentNotReady(
                f"agent '{agent.profile.name}' is stopped at a startup dialog ({action.rule}): {action.fail}",
                terminalId=agent.terminal_id,
                screenTail=agent.screen_tail(),
            )
        now = asyncio.get_running_loop().time()
        if not action.keys or now - answered.get(action.rule, -1e9) < STARTUP_DIALOG_REPEAT:
            return
        if sum(1 for rule in answered if not rule.startswith("fail:")) >= 8 and action.rule not in answered:
            return
        answered[action.rule] = now
        log.info("agent %s: answering startup dialog '%s' with %s", agent.terminal_id, action.rule, action.keys)
        try:
            await self.tmux.send_keys(agent.pane_id, *action.keys)
        except TmuxError:
            pass
        self._monitor.refresh(agent)

    # ---- input and turns ----------------------------------------------------------------------

    async def _send_input(self, agent: Agent, text: str) -> Turn:
        if not agent.alive or agent.pane_id is None:
            raise AgentExited("agent has exited", terminalId=agent.terminal_id, screenTail=agent.screen_tail())
        # Callers check what they accept (strict); here what the sidecar relays is made typeable.
        text = text_for_agent(agent.provider, text, "message", strict=False)
        if not await self._owns_pane(agent):
            # Its pane died with a tmux server unnoticed, and the id now names another agent's.
            agent.pane_id = None
            await self._mark_exited(agent, None)
            raise AgentExited("agent has exited (its tmux server was restarted)", terminalId=agent.terminal_id)
        pane_id = agent.pane_id
        if not agent.alive or pane_id is None:  # it exited while we asked tmux
            raise AgentExited("agent has exited", terminalId=agent.terminal_id, screenTail=agent.screen_tail())
        turn = agent.begin_turn(text)
        agent.last_answer = None  # "last answer" is now this turn's (read when it is asked for)
        self.logs.event("input", agent.terminal_id, text=text)
        try:
            crash_point("before_paste", text)
            await self.tmux.paste_text(pane_id, text)
            crash_point("after_paste", text)
            await self.tmux.send_keys(pane_id, "Enter")
            crash_point("after_enter", text)
        except PaneGone as exc:
            agent.turn = None
            raise AgentExited("agent has exited", terminalId=agent.terminal_id, screenTail=agent.screen_tail()) from exc
        except ValueError as exc:  # the terminal layer refused the text itself
            agent.turn = None
            raise InvalidRequest(str(exc), field="message") from exc
        except TmuxError as exc:
            agent.turn = None
            raise TerminalError(f"could not type into the agent: {exc}", terminalId=agent.terminal_id) from exc
        self._spawn_background(self._retry_enter(agent, turn))
        return turn

    async def submit_typed_input(self, agent: Agent, text: str) -> Turn:
        """Press Enter for `text`, which a previous sidecar typed into the agent's input line and
        died before submitting (recovery): a turn as if it had been sent now, never the text again."""
        if not agent.alive or agent.pane_id is None:
            raise AgentExited("agent has exited", terminalId=agent.terminal_id, screenTail=agent.screen_tail())
        turn = agent.begin_turn(text)
        agent.last_answer = None
        self.logs.event("input", agent.terminal_id, text=text, enterOnly=True)
        try:
            await self.tmux.send_keys(agent.pane_id, "Enter")
        except TmuxError as exc:
            agent.turn = None
            raise TerminalError(f"could not press Enter in the agent: {exc}", terminalId=agent.terminal_id) from exc
        self._spawn_background(self._retry_enter(agent, turn))
        return turn

    async def _owns_pane(self, agent: Agent, *, live: bool = True) -> bool:
        """Whether the agent's pane id still names its own pane (same process; `live`: running)."""
        if agent.pane_pid is None:
            return True  # not known (an agent recorded before pids were): trust the id
        try:
            panes = await self.tmux.list_panes()
        except TmuxError:
            return True  # cannot tell: typing will say
        return any(p.pane_id == agent.pane_id and p.pid == agent.pane_pid and not (live and p.dead) for p in panes)

    async def _retry_enter(self, agent: Agent, turn: Turn) -> None:
        """TUIs sometimes swallow the Enter that follows a paste: press it again, never the text."""
        waited = 0.0
        for delay in ENTER_RETRY_AFTER:
            try:
                await asyncio.wait_for(asyncio.shield(turn.done), delay - waited)
                return
            except asyncio.TimeoutError:
                waited = delay
            if turn.seen_busy or agent.turn is not turn or not agent.alive or agent.pane_id is None:
                return
            if await self._took_input(agent, turn):
                # Another Enter would wait in the CLI's input and later submit an empty line, or
                # answer its next yes/no question with the default.
                log.info("turn of %s: the CLI took the input and has drawn nothing yet", agent.terminal_id)
                return
            log.info("turn of %s did not start; pressing Enter again", agent.terminal_id)
            try:
                await self.tmux.send_keys(agent.pane_id, "Enter")
            except TmuxError:
                return

    async def _took_input(self, agent: Agent, turn: Turn) -> bool:
        """The input line still shows the turn's text, but the cursor has left it for a blank row
        below: a line-oriented CLI took the Enter (it moves to a new line) and is working."""
        if agent.pane_id is None or agent.turn is not turn or not agent.shows_turn_input(agent.screen):
            return False
        try:
            rows, (_x, y) = await self.tmux.rows_and_cursor(agent.pane_id)
        except TmuxError:
            return False
        return y >= len(rows)

    def _on_classified(self, agent: Agent, status: AgentStatus, screen: str) -> None:
        if agent.terminating:
            return  # the exit command's own screen is not news; `exited` follows
        if status is AgentStatus.EXITED:
            # The screen shows the CLI gone (a shell prompt is back): same as the process ending.
            agent.screen = screen
            if agent.pane_id is not None:
                self._on_pane_exit(agent.pane_id, None)
            return
        if agent.overruled_by_events(status):
            # Events win: keep the screen (answers, tails), not its reading. If the screen says
            # the turn is over and no event comes, believe the screen after a grace period.
            agent.screen = screen
            if agent.turn is not None and status in (AgentStatus.COMPLETED, AgentStatus.ERROR, AgentStatus.IDLE):
                if agent.screen_fallback is None:
                    agent.screen_fallback = asyncio.get_running_loop().call_later(
                        EVENT_GRACE_SECONDS, self._screen_fallback, agent, agent.turn
                    )
            self._refresh_prompt(agent)
            return
        previous, finished = agent.apply(status, screen)
        if previous is not None:
            self._emit_status(agent, previous, agent.status)
        else:
            self._refresh_prompt(agent)
        if finished is not None:
            self._finish_turn(agent, finished)

    def _refresh_prompt(self, agent: Agent) -> None:
        if prompts.refresh(agent) and agent.prompt is not None:
            for listener in self._prompt_listeners:
                try:
                    listener(agent, agent.prompt)
                except Exception:  # noqa: BLE001
                    log.exception("prompt listener failed")

    def agent_event(
        self, agent: Agent, status: AgentStatus, answer: Optional[str] = None, *, confirmed: bool = False
    ) -> None:
        """A status the CLI reported itself (a hook, Codex's notify): it goes through the same turn
        machinery as screen classifications and beats them (see Agent.overruled_by_events)."""
        if agent.terminating or not agent.alive:
            return
        if status is AgentStatus.EXITED:
            if agent.pane_id is not None:
                self._on_pane_exit(agent.pane_id, None)
            return
        previous, finished = agent.apply_event(status, answer, confirmed)
        if previous is not None:
            self._emit_status(agent, previous, agent.status)
        if finished is not None:
            self._finish_turn(agent, finished)

    def _screen_fallback(self, agent: Agent, turn: Turn) -> None:
        """The events never ended this turn although the screen did: take the screen's word."""
        agent.screen_fallback = None
        if agent.turn is not turn or not agent.alive or agent.terminating:
            return
        status = agent.provider.classify(agent.screen)
        if status not in (AgentStatus.COMPLETED, AgentStatus.ERROR, AgentStatus.IDLE):
            return
        log.warning("agent %s: no end-of-turn event within %gs; using the screen", agent.terminal_id, EVENT_GRACE_SECONDS)
        previous, finished = agent.apply(status, agent.screen)
        if previous is not None:
            self._emit_status(agent, previous, agent.status)
        if finished is not None:
            self._finish_turn(agent, finished)

    def _finish_turn(self, agent: Agent, result: TurnResult) -> None:
        turn = agent.turn
        agent.turn = None
        if agent.screen_fallback is not None:
            agent.screen_fallback.cancel()
            agent.screen_fallback = None
        if result.answer is not None:
            agent.last_answer = result.answer
        if turn is not None and not turn.done.done():
            turn.done.set_result(result)

    def _on_output_data(self, pane_id: str, data: bytes) -> None:
        agent = self._monitor.agent_for_pane(pane_id)
        if agent is not None:
            self.logs.output(agent.terminal_id, data)

    def _on_pane_exit(self, pane_id: str, exit_status: int | None) -> None:
        agent = self._monitor.agent_for_pane(pane_id)
        if agent is not None and agent.alive:
            self._spawn_background(self._mark_exited(agent, exit_status))

    async def _mark_exited(self, agent: Agent, exit_status: int | None) -> None:
        if agent.pane_id is not None:
            try:
                agent.screen = await self.tmux.capture(agent.pane_id)
            except TmuxError:
                pass
        if not agent.alive:
            return
        self._monitor.unwatch(agent)
        previous = agent.mark_exited()
        if previous is not None:
            self._emit_status(agent, previous, AgentStatus.EXITED)
        if agent.turn is not None:
            self._finish_turn(agent, TurnResult(AgentStatus.EXITED, agent.screen))
        inbox = self._inboxes.get(agent.terminal_id)
        if inbox is not None:
            inbox.fail_all(AgentExited("agent exited before the message was delivered", terminalId=agent.terminal_id))
        if agent.pane_id is not None and not agent.terminating:
            # remain-on-exit kept the window so we could read its last screen; now drop it.
            try:
                await self.tmux.kill_window(agent.pane_id)
            except TmuxError:
                pass
            # The pane id may be given to a new pane (tmux restarts numbering with its server):
            # this agent must never act on that one.
            agent.pane_id = None
        log.info("agent %s exited (status %s)", agent.terminal_id, exit_status)

    async def run_turn(self, agent: Agent, text: str, timeout: float, task_id: str | None = None) -> str:
        """Give `agent` one task (through its inbox) and return its final answer. `task_id`: the
        task is in the message store already (an assign's, stored when it was acknowledged)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        inbox = self._inboxes.get(agent.terminal_id)
        if inbox is None:
            raise AgentExited("agent has exited", terminalId=agent.terminal_id, screenTail=agent.screen_tail())
        if task_id is not None:
            delivery = inbox.put_stored(task_id, text, first=True)
        else:
            with refusing_when_full(self.state_dir):
                delivery = inbox.put(text)
        try:
            turn = await asyncio.wait_for(asyncio.shield(delivery.sent), timeout)
            result = await asyncio.wait_for(asyncio.shield(turn.done), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            delivery.sent.cancel()
            raise AgentTimeout(
                f"agent '{agent.profile.name}' did not finish within {timeout:g}s (status {agent.status.value})",
                terminalId=agent.terminal_id,
                screenTail=agent.screen_tail(),
            ) from None
        except asyncio.CancelledError:
            delivery.sent.cancel()
            raise
        if result.status is AgentStatus.EXITED:
            raise AgentExited(
                f"agent '{agent.profile.name}' exited during the task",
                terminalId=agent.terminal_id,
                screenTail=agent.screen_tail(),
            )
        if result.status is AgentStatus.ERROR:
            raise AgentFailed(
                f"agent '{agent.profile.name}' reported an error",
                terminalId=agent.terminal_id,
                screenTail=agent.screen_tail(),
            )
        answer = result.answer if result.answer is not None else await self._read_answer(agent, result.screen)
        agent.last_answer = answer
        self.agent_store.update(agent.terminal_id, last_answer=answer)
        self.logs.event("answer", agent.terminal_id, text=answer)
        return answer

    async def _read_answer(self, agent: Agent, screen: str | None = None) -> str:
        answer = agent.provider.read_answer(agent.agent_dir)
        if answer is not None:
            return answer
        if agent.alive and agent.pane_id is not None:
            try:
                screen = await self.tmux.capture(agent.pane_id, history=True)
            except TmuxError:
                pass
        return agent.provider.extract_answer(screen or agent.screen) or ""

    # ---- handoff / assign / messages ----------------------------------------------------------

    async def handoff(
        self,
        message: str,
        *,
        profile: str | None = None,
        terminal_id: str | None = None,
        provider: str | None = None,
        working_directory: str | None = None,
        session: str | None = None,
        timeout: float = HANDOFF_TIMEOUT_SECONDS,
        keep: bool = False,
        on_agent: Callable[[Agent], None] | None = None,
        caller: Caller | None = None,
        worktree: bool | None = None,
        base_ref: str | None = None,
    ) -> tuple[Agent, str]:
        """Run one task to completion on a new worker (profile) or an existing agent (terminal_id).

        A worker started for an agent (`caller`) joins the caller's session and working directory.
        """
        if (profile is None) == (terminal_id is None):
            raise InvalidRequest("give exactly one of 'profile' or 'terminalId'", field="profile")
        if not message.strip():
            raise InvalidRequest("field 'message' must not be empty", field="message")
        check_agent_text(message, "message")
        if timeout <= 0:
            raise InvalidRequest("field 'timeoutSeconds' must be positive", field="timeoutSeconds")
        check_room(self.state_dir)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        new_worker = terminal_id is None
        if caller is not None:
            session = session or caller.session
            working_directory = working_directory or caller.working_directory
        if new_worker:
            agent = self.create(
                profile, provider=provider, working_directory=working_directory, session=session,  # type: ignore[arg-type]
                worktree=worktree, base_ref=base_ref,
            )
        else:
            agent = self.get_agent(terminal_id)  # type: ignore[arg-type]
            if caller is agent:
                raise InvalidRequest("an agent cannot hand a task to itself", field="terminalId")
            if not agent.alive:
                raise AgentExited("agent has exited", terminalId=agent.terminal_id, screenTail=agent.screen_tail())
        if on_agent is not None:
            on_agent(agent)
        self.logs.event(
            "handoff.start", agent.terminal_id, profile=agent.profile.name, newWorker=new_worker,
            caller=caller.terminal_id if caller else None, message=message,
        )
        task_id: str | None = None
        if new_worker:
            # Recorded like an assign: if the sidecar dies mid-handoff, its successor still runs
            # the task, reports the answer (editor notification, caller's inbox) and tears the
            # worker down.
            try:
                task_id = self.assigns.record_task(
                agent.terminal_id, agent.profile.name, message, caller.terminal_id if caller else None, keep, timeout
            )
            except BaseException:
                self._spawn_background(self._discard(agent))
                raise
        try:
            text_for_agent(agent.provider, message, "message")  # refused before anything starts
            if new_worker:
                try:
                    await asyncio.wait_for(self.launch(agent, ready_timeout=min(READY_TIMEOUT, timeout)), timeout)
                except asyncio.TimeoutError:
                    raise AgentTimeout(
                        f"agent '{agent.profile.name}' was not ready within {timeout:g}s",
                        terminalId=agent.terminal_id,
                        screenTail=agent.screen_tail(),
                    ) from None
            answer = await self.run_turn(agent, message, max(0.001, deadline - loop.time()), task_id=task_id)
        except BaseException as exc:
            if self._closing and isinstance(exc, asyncio.CancelledError):
                raise  # the sidecar stops: its successor follows the worker and reports it
            self.logs.event(
                "handoff.end", agent.terminal_id, ok=False,
                error=exc.message if isinstance(exc, CaoError) else type(exc).__name__,
            )
            if isinstance(exc, (asyncio.CancelledError, AgentTimeout)) and agent.alive and agent.turn is not None:
                await self._interrupt(agent)
            if new_worker:
                await self.assigns.close_handoff(agent.terminal_id)  # the caller hears it as the answer
                if not keep:
                    self._spawn_cleanup(self.teardown(agent))
            raise
        self.logs.event("handoff.end", agent.terminal_id, ok=True)
        await self.worktrees.finish(agent.terminal_id)  # its work committed and summarised
        if new_worker:
            await self.assigns.close_handoff(agent.terminal_id)  # the caller gets the answer itself
        if new_worker and not keep:
            await self.teardown(agent)
        return agent, answer

    def assign(
        self,
        message: str,
        *,
        profile: str,
        provider: str | None = None,
        working_directory: str | None = None,
        session: str | None = None,
        timeout: float = ASSIGN_TIMEOUT_SECONDS,
        keep: bool = True,
        caller: Caller | None = None,
        worktree: bool | None = None,
        base_ref: str | None = None,
    ) -> Agent:
        """Start a worker on `message` in the background; completion goes to the listeners and,
        for an agent's assign, to that agent's inbox."""
        if not message.strip():
            raise InvalidRequest("field 'message' must not be empty", field="message")
        check_agent_text(message, "message")
        if caller is not None:
            session = session or caller.session
            working_directory = working_directory or caller.working_directory
        agent = self.create(
            profile, provider=provider, working_directory=working_directory, session=session, worktree=worktree,
            base_ref=base_ref,
        )
        try:
            task_id = self.assigns.record_task(
                agent.terminal_id, agent.profile.name, message, caller.terminal_id if caller else None, keep, timeout
            )
        except BaseException:
            self._spawn_background(self._discard(agent))
            raise
        self.logs.event(
            "assign.start", agent.terminal_id, profile=profile, caller=caller.terminal_id if caller else None,
            message=message,
        )
        self._spawn_background(
            self.run_assigned(agent, task_id, message, time.time() + timeout, keep, caller.terminal_id if caller else None)
        )
        return agent

    async def run_assigned(
        self, agent: Agent, task_id: str, message: str, deadline: float, keep: bool, caller_id: str | None
    ) -> None:
        """Launch a new worker, give it its stored task, report how it ended. `deadline` is wall-clock."""
        outcome: WorkerOutcome
        try:
            text_for_agent(agent.provider, message, "message")  # refused before anything starts
            remaining = deadline - time.time()
            if remaining <= 0:
                raise AgentTimeout("the assigned task did not start in time", terminalId=agent.terminal_id)
            await self.launch(agent, ready_timeout=min(READY_TIMEOUT, remaining))
            answer = await self.run_turn(agent, message, max(0.001, deadline - time.time()), task_id=task_id)
            outcome = WorkerOutcome(agent, AgentStatus.COMPLETED, answer)
        except CaoError as exc:
            status = agent.status if agent.status in (AgentStatus.ERROR, AgentStatus.EXITED) else AgentStatus.ERROR
            outcome = WorkerOutcome(agent, status, agent.screen_tail(), exc)
        except Exception as exc:  # noqa: BLE001 - an acknowledged assign is reported whatever failed
            log.exception("assign on %s failed unexpectedly", agent.terminal_id)
            outcome = WorkerOutcome(
                agent, AgentStatus.ERROR, agent.screen_tail(),
                AgentFailed(f"the worker could not run the task: {exc}", terminalId=agent.terminal_id),
            )
        await self.report_assigned(outcome, caller_id, keep)

    async def report_assigned(self, outcome: WorkerOutcome, caller_id: str | None, keep: bool) -> None:
        """Report how an assign ended, exactly once (core.reporting); then tear the worker down
        unless it is kept."""
        await self.worktrees.finish(outcome.agent.terminal_id)  # its work committed and summarised
        if await self.assigns.report(outcome, caller_id) and not keep and outcome.agent.terminal_id in self.agents:
            await self.teardown(outcome.agent)

    async def send_message(
        self, terminal_id: str, message: str, sender: str | None = None, sender_agent: Caller | None = None,
        *, relay: bool = False,
    ) -> tuple[str, str]:
        """Queue `message` for an agent; returns (message id, 'delivered' | 'queued').

        If it can never be delivered (the receiver exits first) the store marks it failed and a
        sending agent is told so in its own inbox, once (MessageStore.mark_failed), after a
        restart too.
        """
        agent = self.get_agent(terminal_id)
        if not agent.alive:
            raise AgentExited("agent has exited", terminalId=terminal_id, screenTail=agent.screen_tail())
        if not message:
            raise InvalidRequest("field 'message' must not be empty", field="message")
        text = f"[message from {sender}] {message}" if sender else message
        check_agent_text(text, "message")
        text = text_for_agent(agent.provider, text, "message", strict=not relay)
        check_room(self.state_dir)
        inbox = self._inboxes[terminal_id]
        immediate = inbox.can_deliver_now()
        with refusing_when_full(self.state_dir):
            delivery = inbox.put(text, sender, sender_agent.terminal_id if sender_agent else None)
        self.logs.event("message", terminal_id, messageId=delivery.message_id, sender=sender, text=message)
        if immediate:
            await asyncio.shield(delivery.sent)  # raises if typing failed
            return delivery.message_id, "delivered"
        return delivery.message_id, "queued"

    def new_inbox(self, agent: Agent) -> Inbox:
        """The inbox of a new or adopted agent (every input to it goes through it)."""
        inbox = self._inboxes[agent.terminal_id] = Inbox(agent, self._send_input, self.messages, self.queue_stored)
        return inbox

    def queue_stored(self, message: StoredMessage) -> None:
        """Queue a message the store holds already (a report for an assigning agent, a notice of a
        message that failed) in its receiver's inbox; it fails if the receiver has exited."""
        if self.mailboxes.accept(message):  # a host lead's: it waits until the host reads it
            return
        receiver = self.agents.get(message.receiver)
        inbox = self._inboxes.get(message.receiver)
        if receiver is not None and receiver.alive and inbox is not None:
            inbox.put_stored(message.message_id, message.text, message.sender)
        else:
            self.messages.mark_failed(message.message_id, "the receiving agent has exited")

    async def answer(self, terminal_id: str, answer: str, prompt_id: Optional[str] = None) -> tuple[str, str]:
        """Answer the question an agent waits on (status waiting_user_answer), as its CLI expects:
        a choice's key (menu digit, shortcut letter) or its text and Enter; free text and Enter
        for a question without choices. Each question is answered once (prompt_id, when given,
        must still be the question shown). Returns (prompt id, what was typed, readable)."""
        agent = self.get_agent(terminal_id)
        if not agent.alive or agent.pane_id is None:
            raise AgentExited("agent has exited", terminalId=terminal_id, screenTail=agent.screen_tail())
        check_agent_text(answer, "answer")
        if "\n" in answer or "\r" in answer:
            raise InvalidRequest("an answer is one line (no line breaks)", field="answer")
        text_for_agent(agent.provider, answer, "answer")
        pending, choice = prompts.take(agent, answer, prompt_id)
        key = choice.key if choice is not None else None
        text = choice.text if choice is not None else answer
        typed = f"key {key}" if key is not None else f"{text!r} + Enter"
        self.logs.event("input", terminal_id, text=answer, answer=True, promptId=pending.id, typed=typed)
        try:
            if key is not None:
                await self.tmux.send_keys(agent.pane_id, key)
            else:
                if text:
                    await self.tmux.paste_text(agent.pane_id, text)
                await self.tmux.send_keys(agent.pane_id, "Enter")
        except PaneGone as exc:
            raise AgentExited("agent has exited", terminalId=terminal_id, screenTail=agent.screen_tail()) from exc
        except ValueError as exc:
            pending.answered = False
            raise InvalidRequest(str(exc), field="answer") from exc
        except TmuxError as exc:
            pending.answered = False
            raise TerminalError(f"could not type into the agent: {exc}", terminalId=terminal_id) from exc
        return pending.id, typed

    # ---- teardown -----------------------------------------------------------------------------

    async def _interrupt(self, agent: Agent) -> None:
        pane_id = agent.pane_id
        if pane_id is None or not agent.alive or not await self._owns_pane(agent):
            return
        try:
            await self.tmux.send_keys(pane_id, agent.provider.interrupt_key)
        except TmuxError:
            pass
        if agent.turn is not None:
            self._finish_turn(agent, TurnResult(AgentStatus.ERROR, agent.screen))

    async def teardown(self, agent: Agent) -> None:
        """Ask the CLI to exit, give it a moment, then remove its window and forget it."""
        if agent.terminating:
            return
        agent.terminating = True
        try:
            pane_id = agent.pane_id
            if agent.alive and pane_id is not None and await self._owns_pane(agent):
                if agent.status.accepts_input and agent.turn is None:
                    try:
                        await self.tmux.paste_text(pane_id, agent.provider.exit_command)
                        await self.tmux.send_keys(pane_id, "Enter")
                    except TmuxError:
                        pass
                    deadline = asyncio.get_running_loop().time() + EXIT_GRACE_SECONDS
                    enter_again = asyncio.get_running_loop().time() + ENTER_RETRY_AFTER[0]
                    while agent.alive:
                        now = asyncio.get_running_loop().time()
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
            await self._discard(agent)
        finally:
            agent.terminating = True

    async def terminate(self, terminal_id: str) -> None:
        await self.teardown(self.get_agent(terminal_id))

    async def _discard(self, agent: Agent) -> None:
        """Remove the window and the record; report the agent as exited if it was not yet."""
        agent.terminating = True
        self._monitor.unwatch(agent)
        pane_id = agent.pane_id  # _mark_exited may clear it while we ask tmux
        if pane_id is not None and await self._owns_pane(agent, live=False):
            try:
                await self.tmux.kill_window(pane_id)
            except TmuxError:
                pass
        previous = agent.mark_exited()
        if previous is not None:
            self._emit_status(agent, previous, AgentStatus.EXITED)
        if agent.turn is not None:
            self._finish_turn(agent, TurnResult(AgentStatus.EXITED, agent.screen))
        inbox = self._inboxes.pop(agent.terminal_id, None)
        if inbox is not None:
            inbox.fail_all(AgentExited("agent was terminated", terminalId=agent.terminal_id))
        self.agents.pop(agent.terminal_id, None)
        self._spawn_background(self.worktrees.drop_if_empty(agent.terminal_id))  # one with work stays
        if self.agent_store.has_assign(agent.terminal_id):
            # Kept (as exited) until its assign is reported, so a successor can still report it.
            self.agent_store.update(agent.terminal_id, status=AgentStatus.EXITED.value)
        else:
            self.agent_store.remove(agent.terminal_id)
        shutil.rmtree(agent.agent_dir, ignore_errors=True)

    # ---- plumbing -----------------------------------------------------------------------------

    def _emit_status(self, agent: Agent, previous: AgentStatus | None, status: AgentStatus) -> None:
        prompts.on_status(agent, status)
        if agent.terminal_id in self.agents:
            self.agent_store.update(agent.terminal_id, status=status.value)
        self.logs.event("status", agent.terminal_id, status=status.value, previous=previous.value if previous else None)
        if status is AgentStatus.EXITED:
            self.logs.close_output(agent.terminal_id)
        for listener in self._status_listeners:
            try:
                listener(agent, previous, status)
            except Exception:  # noqa: BLE001
                log.exception("status listener failed")

    def _spawn_background(self, coro: Awaitable[object]) -> asyncio.Task[object]:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _spawn_cleanup(self, coro: Awaitable[object]) -> None:
        """A background removal of a failed agent's window: close() lets it finish, so a failed
        `run` (whose sidecar closes right after) leaves no dead window behind."""
        task = self._spawn_background(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _background_done(self, task: asyncio.Task[object]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())
