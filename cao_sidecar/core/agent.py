"""An agent (one CLI process in one tmux window) and the turn it is working on.

The status an agent shows comes from its provider's reading of the screen, but a screen can lie
right after input was sent (it still shows the previous answer). A Turn tracks one input and
decides when its end is real: once the agent was seen busy, or the screen moved on from what it
showed when the input was sent. Idle without having been seen busy never ends a turn (the input
may still be sitting in the prompt). Nor does a screen whose input line still holds the turn's
own text: a line-oriented CLI (Aider) shows exactly that line, with nothing below, both before
Enter and after it took the line, until it draws its spinner or answer, and again between
clearing its spinner and streaming its answer.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import attrs

from cao_sidecar.core.status import BUSY, SCREEN_END, TURN_END, AgentStatus
from cao_sidecar.profiles.profile import Profile
from cao_sidecar.providers.base import Provider
from cao_sidecar.providers.prompt import ScreenPrompt


@attrs.define(eq=False)
class TurnResult:
    status: AgentStatus  # completed, error or exited
    screen: str
    answer: Optional[str] = None  # the exact final answer when an event (hook) brought it


@attrs.frozen
class Transition:
    """What one reading (screen, event, exit) did to an agent: the status it left, if it changed,
    and the turn it finished, if any. The supervisor commits both in one place."""

    previous: Optional[AgentStatus] = None
    finished: Optional[TurnResult] = None


NO_CHANGE = Transition()


@attrs.define(eq=False)
class Turn:
    text: str
    screen_before: str
    seen_busy: bool = False
    # The screen showed the CLI busy during the turn, even where its events overruled that reading
    # (a CLI whose Stop hook comes before it is done): it may hold the text in its queue, unseen.
    shown_busy: bool = False
    done: "asyncio.Future[TurnResult]" = attrs.field(factory=lambda: asyncio.get_running_loop().create_future())

    def shows_input(self, typed: Optional[str]) -> bool:
        """Whether `typed` (the text on the CLI's input line) is this turn's text, or the last line
        of a multi-line one; spacing may differ (the terminal's wrapping and trimming)."""
        if typed is None or not typed.strip():
            return False
        lines = self.text.strip().splitlines()
        return " ".join(typed.split()) in (" ".join(self.text.split()), " ".join(lines[-1].split()) if lines else "")

    def observe(self, status: AgentStatus, screen: str, input_shown: bool = False) -> Optional[TurnResult]:
        """Feed one classification; returns the result when this turn is over. `input_shown`: the
        screen's input line holds this turn's text with nothing below it."""
        if status is AgentStatus.IDLE and input_shown:
            return None  # not submitted yet, or taken and nothing drawn yet: never the end
        if status in BUSY:
            self.seen_busy = True
            return None
        if status is AgentStatus.EXITED:
            return TurnResult(status, screen)
        if status in TURN_END:
            if self.seen_busy or screen != self.screen_before:
                return TurnResult(status, screen)
            return None
        if status is AgentStatus.IDLE and self.seen_busy:
            # Back at an empty prompt after working, with no answer marker: interrupted, or a CLI
            # that draws no completion marker. Either way the turn is over.
            return TurnResult(AgentStatus.COMPLETED, screen)
        return None


# After an event, screens may lag behind for a moment; their contradicting readings are ignored.
EVENT_HOLD_SECONDS = 2.0


@attrs.define(eq=False)
class PendingPrompt:
    """One question of an agent: its id (stable while the same question is shown), what it asks,
    and whether someone answered it (an answer is typed once)."""

    id: str
    prompt: ScreenPrompt
    answered: bool = False


@attrs.define(eq=False)
class Agent:
    terminal_id: str
    session: str
    profile: Profile
    provider: Provider
    working_directory: str
    agent_dir: Path
    name: Optional[str] = None
    created_at: str = attrs.field(factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    pane_id: Optional[str] = None
    # The pane's process: a restarted tmux server numbers panes from %0 again, so a pane id
    # alone may name another agent's pane (Orchestrator checks both before typing).
    pane_pid: Optional[int] = None
    status: AgentStatus = AgentStatus.STARTING
    screen: str = ""  # last captured visible screen
    last_answer: Optional[str] = None
    turn: Optional[Turn] = None
    terminating: bool = False
    # The CLI's own events (hooks, notify) report this agent's turns: see overruled_by_events.
    events_active: bool = False
    event_at: float = 0.0  # monotonic time of the last event
    screen_fallback: Optional[asyncio.TimerHandle] = None
    # The question the agent waits on (status waiting_user_answer), as its screen shows it.
    prompt: Optional["PendingPrompt"] = None
    prompts_seen: int = 0
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event)
    # Set at the first request the agent's CLI made to our MCP endpoint (with its credential).
    mcp_connected: asyncio.Event = attrs.field(factory=asyncio.Event)
    # A warm worker of the pool (core.pool): hidden from the user's agents and from other
    # agents until a handoff or assign takes it (then False for good).
    pooled: bool = False

    @property
    def alive(self) -> bool:
        return self.status is not AgentStatus.EXITED

    @property
    def busy(self) -> bool:
        return self.turn is not None or not self.status.accepts_input

    async def wait_mcp_connection(self, timeout: float) -> bool:
        """Wait until the CLI has connected to our MCP endpoint; False if it did not within
        `timeout` or exited first."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.mcp_connected.is_set() and self.alive:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            try:  # short slices: an exit while we wait ends the wait too
                await asyncio.wait_for(self.mcp_connected.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass
        return self.mcp_connected.is_set()

    def screen_tail(self, lines: int = 15) -> str:
        rows = self.screen.rstrip("\n").splitlines()
        return "\n".join(rows[-lines:])

    def begin_turn(self, text: str) -> Turn:
        self.turn = Turn(text=text, screen_before=self.screen)
        # Typed while the screen shows the CLI busy (its events may say it is done): it may queue it.
        self.turn.shown_busy = bool(self.screen) and self.provider.classify(self.screen) in BUSY
        return self.turn

    def _set_status(self, status: AgentStatus) -> Optional[AgentStatus]:
        """Change the status and wake whoever waits for a change; returns the previous status,
        or None when it did not change."""
        if status is self.status:
            return None
        previous, self.status = self.status, status
        self._changed.set()
        self._changed = asyncio.Event()
        return previous

    def apply(self, status: AgentStatus, screen: str) -> Transition:
        """Record a new classification of the screen."""
        if self.status is AgentStatus.EXITED:
            return NO_CHANGE
        self.screen = screen
        finished = None
        if self.turn is not None:
            finished = self.turn.observe(status, screen, status is AgentStatus.IDLE and self.shows_turn_input(screen))
            if finished is None and status in SCREEN_END:
                # Stale end-of-turn screen from before the input: not a status change yet.
                return NO_CHANGE
            if finished is not None:
                status = finished.status
        return Transition(self._set_status(status), finished)

    def shows_turn_input(self, screen: str) -> bool:
        """The screen's input line holds the current turn's text (providers that can read their
        input line: see Provider.typed_input)."""
        return self.turn is not None and self.turn.shows_input(self.provider.typed_input(screen))

    def overruled_by_events(self, status: AgentStatus) -> bool:
        """Events win: once the CLI's event source is active, a screen reading of a status that the
        events report (idle counts as completed) does not change the status during a turn, nor
        right after an event (a redraw can lag behind the hook). Dialogs and exits still count."""
        if not self.events_active or status in (AgentStatus.WAITING_USER_ANSWER, AgentStatus.EXITED):
            return False
        covered = self.provider.event_statuses
        if not (status in covered or (status is AgentStatus.IDLE and AgentStatus.COMPLETED in covered)):
            return False
        return self.turn is not None or time.monotonic() - self.event_at < EVENT_HOLD_SECONDS

    def keep_overruled_screen(self, status: AgentStatus, screen: str) -> None:
        """Keep a screen whose reading the events overruled (its answers, tails), and note that it
        showed the CLI busy during the turn."""
        self.screen = screen
        if self.turn is not None and status in BUSY:
            self.turn.shown_busy = True

    def apply_event(self, status: AgentStatus, answer: Optional[str] = None, confirmed: bool = False) -> Transition:
        """Record a status the CLI reported itself. It ends the current turn when the turn was seen
        busy or the event names the turn's input (`confirmed`)."""
        if self.status is AgentStatus.EXITED:
            return NO_CHANGE
        self.events_active = True
        self.event_at = time.monotonic()
        finished = None
        if self.turn is not None:
            if status in BUSY:
                self.turn.seen_busy = True
            elif status in SCREEN_END:
                if not (self.turn.seen_busy or confirmed):
                    return NO_CHANGE  # a late event of an earlier turn
                if status is AgentStatus.IDLE:
                    status = AgentStatus.COMPLETED
                finished = TurnResult(status, self.screen, answer)
        elif status is AgentStatus.COMPLETED and answer is not None:
            self.last_answer = answer  # a turn the user started by typing into the window
        return Transition(self._set_status(status), finished)

    def mark_exited(self) -> Transition:
        """The process is gone: status exited, and the current turn (if any) ends with it. No
        change if the exit was known already."""
        if self.status is AgentStatus.EXITED:
            return NO_CHANGE
        finished = TurnResult(AgentStatus.EXITED, self.screen) if self.turn is not None else None
        return Transition(self._set_status(AgentStatus.EXITED), finished)

    def stalled(self) -> Transition:
        """Working, but nothing changed for the stall time (core.stalls)."""
        if self.status is not AgentStatus.PROCESSING:
            return NO_CHANGE
        return Transition(self._set_status(AgentStatus.STALLED))

    def unstalled(self) -> Transition:
        """A stalled agent's screen or events moved again: it is working."""
        if self.status is not AgentStatus.STALLED:
            return NO_CHANGE
        return Transition(self._set_status(AgentStatus.PROCESSING))

    def interrupted(self) -> Transition:
        """The current turn was interrupted (timeout, cancelled caller): it ends as an error."""
        if self.turn is None:
            return NO_CHANGE
        return Transition(None, TurnResult(AgentStatus.ERROR, self.screen))

    async def wait_change(self, timeout: float | None) -> None:
        """Wait for the next status change (or the timeout)."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
