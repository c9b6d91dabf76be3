"""Typing into an agent's terminal: paste the text, press Enter, and make sure the CLI took it.

TUIs sometimes swallow the Enter that follows a paste, so a turn that never starts gets Enter again
(never the text); a line-oriented CLI that took the input and moved its cursor to a blank row is
left alone (another Enter would submit an empty line or answer its next question). A pane id
tmux handed to another agent's pane after a restart is never typed into (`owns_pane`).
A CLI that dropped the text itself (still at its prompt seconds later, the text nowhere on its
screen, nothing busy seen) gets the text again, at most twice (`input_dropped`).
The supervisor owns the agents and their turns; this module only types (core.supervisor).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from cao_sidecar.core.agent import Agent, Turn
from cao_sidecar.core.crash_hooks import crash_point
from cao_sidecar.core.errors import AgentExited, InvalidRequest, TerminalError
from cao_sidecar.core.typed_text import text_for_agent
from cao_sidecar.storage.logs import ConversationLogs
from cao_sidecar.terminal.tmux import PaneGone, TmuxError, TmuxServer

log = logging.getLogger(__name__)

ENTER_RETRY_AFTER = (0.5, 1.5)  # seconds after sending: press Enter again if the turn never started
# Seconds after the last Enter: a CLI still at its prompt, with the text nowhere on its screen,
# dropped it (Claude Code does, typed into right after its startup dialog under load): type it again.
RETYPE_AFTER = 4.0
MAX_RETYPES = 2


async def owns_pane(tmux: TmuxServer, agent: Agent, *, live: bool = True) -> bool:
    """Whether the agent's pane id still names its own pane (same process; `live`: running)."""
    if agent.pane_pid is None:
        return True  # not known (an agent recorded before pids were): trust the id
    try:
        panes = await tmux.list_panes()
    except TmuxError:
        return True  # cannot tell: typing will say
    return any(p.pane_id == agent.pane_id and p.pid == agent.pane_pid and not (live and p.dead) for p in panes)


def input_dropped(agent: Agent, turn: Turn) -> bool:
    """Whether the CLI dropped the turn's text: nothing busy seen (a CLI busy when the text came
    may queue it and hide it until it submits it: Qwen Code does), back at (or still at) its prompt,
    and neither the text (its first 40 visible characters, however wrapped) nor a paste placeholder
    anywhere on the screen."""
    if turn.seen_busy or turn.shown_busy or not agent.status.accepts_input:
        return False
    screen = "".join(agent.screen.split())
    needle = "".join(turn.text.split())[:40]
    return bool(needle) and needle not in screen and "Pastedtext" not in screen and "[Pasted" not in screen


class Typist:
    """Types turns into agents' panes. `pane_lost(agent)` marks an agent whose pane id now names
    another pane as exited; `in_background(coro)` runs the Enter retry as the supervisor's task."""

    def __init__(
        self,
        tmux: TmuxServer,
        logs: ConversationLogs,
        pane_lost: Callable[[Agent], Awaitable[None]],
        in_background: Callable[[Awaitable[object]], object],
    ) -> None:
        self.tmux = tmux
        self.logs = logs
        self.pane_lost = pane_lost
        self.in_background = in_background

    async def send_input(self, agent: Agent, text: str) -> Turn:
        """Type `text` into the agent and press Enter: a new turn."""
        if not agent.alive or agent.pane_id is None:
            raise AgentExited("agent has exited", terminalId=agent.terminal_id, screenTail=agent.screen_tail())
        # Callers check what they accept (strict); here what the sidecar relays is made typeable.
        text = text_for_agent(agent.provider, text, "message", strict=False)
        if not await owns_pane(self.tmux, agent):
            # Its pane died with a tmux server unnoticed, and the id now names another agent's.
            agent.pane_id = None
            await self.pane_lost(agent)
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
        self.in_background(self._retry_enter(agent, turn))
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
        self.in_background(self._retry_enter(agent, turn))
        return turn

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
        for attempt in range(1, MAX_RETYPES + 1):
            try:
                await asyncio.wait_for(asyncio.shield(turn.done), RETYPE_AFTER)
                return
            except asyncio.TimeoutError:
                pass
            if agent.turn is not turn or not agent.alive or agent.pane_id is None or not input_dropped(agent, turn):
                return
            log.warning("turn of %s: the CLI dropped the typed text; typing it again (%d)", agent.terminal_id, attempt)
            self.logs.event("input.retyped", agent.terminal_id, attempt=attempt)
            try:
                await self.tmux.paste_text(agent.pane_id, turn.text)
                await self.tmux.send_keys(agent.pane_id, "Enter")
            except (TmuxError, ValueError):
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
