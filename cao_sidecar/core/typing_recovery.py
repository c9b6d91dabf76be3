"""A message a crashed sidecar was typing in: typed again, submitted with Enter, or left alone.

The inbox records "typing" durably before the first key (MessageStore.mark_typing) and "delivered"
after the Enter. A kill in between leaves a queued message that may be anywhere: not typed yet,
pasted and waiting in the input line for its Enter, or taken by the CLI. On adoption the agent's
screen and records decide, and nothing is ever typed twice:

- the input line holds the text (providers that read it: `typed_input`) -> Enter only, unless
  the cursor has left that line for a blank row below (a line-oriented CLI took it) -> nothing;
- the CLI's own record (its transcript: `inputs_since`) shows it took the text -> nothing;
  the record shows it did not -> typed again (the kill fell before the paste);
- no record: busy or finished on screen -> taken; an empty input line the provider can read ->
  typed again; otherwise Enter only (harmless on an empty input), and counted as delivered.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Optional

from cao_sidecar.core.agent import Agent
from cao_sidecar.core.errors import CaoError
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.storage.messages import StoredMessage
from cao_sidecar.terminal.tmux import TmuxError

if TYPE_CHECKING:
    from cao_sidecar.core.supervisor import AgentSupervisor

log = logging.getLogger(__name__)

# Inputs the CLI took this long before "typing" was recorded still count (clock steps).
CLOCK_SLACK_SECONDS = 1.0
MIN_CLIPPED_MATCH = 20  # a cut input line must show this much of the text to count as it


class Settled(enum.Enum):
    ENTERED = "Enter pressed for the text in the input line"
    TAKEN = "the agent had taken it"
    RETYPE = "not typed in: queued again"


def _words(text: str) -> str:
    return " ".join(text.split())


def input_line_holds(typed: Optional[str], text: str) -> bool:
    """Whether an input line's text is `text`: all of it, its last line (a multi-line paste), or
    the start of its first line cut to the window's width."""
    if typed is None or not typed.strip():
        return False
    shown, lines = _words(typed), text.strip().splitlines()
    if shown == _words(text) or (lines and shown == _words(lines[-1])):
        return True
    return bool(lines) and len(shown) >= MIN_CLIPPED_MATCH and _words(lines[0]).startswith(shown)


async def settle_typing(core: "AgentSupervisor", agent: Agent, message: StoredMessage) -> Settled:
    """Finish or requeue `message`, which the previous sidecar was typing into `agent`."""
    assert message.typing_at is not None and agent.pane_id is not None
    try:
        screen = await core.tmux.capture(agent.pane_id)
    except TmuxError:
        return Settled.RETYPE  # the inbox finds out what became of the pane
    provider = agent.provider
    typed = provider.typed_input(screen)
    outcome = _decide(agent, message, screen, typed)
    if outcome is Settled.ENTERED and await _cursor_left_input_line(core, agent.pane_id):
        outcome = Settled.TAKEN  # a line-oriented CLI took the Enter and has drawn nothing yet
    if outcome is Settled.ENTERED:
        agent.screen = screen  # the turn's "before" screen
        try:
            await core.submit_typed_input(agent, message.text)
        except CaoError as exc:
            log.warning("agent %s: could not press Enter for message %s: %s", agent.terminal_id, message.message_id, exc)
    elif outcome is Settled.TAKEN and typed is None and provider.classify(screen) is AgentStatus.IDLE:
        # Cannot read the input line: an Enter submits the text if it waits there, else nothing.
        try:
            await core.tmux.send_keys(agent.pane_id, "Enter")
        except TmuxError:
            pass
    if outcome is not Settled.RETYPE:
        core.stores.messages.mark_delivered(message.message_id)
    log.info("agent %s, message %s cut off while typed in: %s", agent.terminal_id, message.message_id, outcome.value)
    return outcome


def _decide(agent: Agent, message: StoredMessage, screen: str, typed: Optional[str]) -> Settled:
    if input_line_holds(typed, message.text):
        return Settled.ENTERED
    assert message.typing_at is not None
    taken = agent.provider.inputs_since(agent.agent_dir, message.typing_at - CLOCK_SLACK_SECONDS)
    if taken is not None:
        return Settled.TAKEN if any(_words(t) == _words(message.text) for t in taken) else Settled.RETYPE
    status = agent.provider.classify(screen)
    if status in (AgentStatus.PROCESSING, AgentStatus.WAITING_USER_ANSWER, AgentStatus.COMPLETED, AgentStatus.ERROR):
        return Settled.TAKEN
    if typed is not None and not typed.strip():
        return Settled.RETYPE
    return Settled.TAKEN


async def _cursor_left_input_line(core: "AgentSupervisor", pane_id: str) -> bool:
    """The cursor sits on a blank row below the input line (as core.typist reads it after an Enter)."""
    try:
        rows, (_x, y) = await core.tmux.rows_and_cursor(pane_id)
    except TmuxError:
        return False
    return y >= len(rows)
