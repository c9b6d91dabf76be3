"""The status an agent can be in, as the wire contract names them."""

from __future__ import annotations

import enum


class AgentStatus(str, enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    PROCESSING = "processing"
    # Working, but neither its screen nor its events changed for the stall time (core.stalls).
    STALLED = "stalled"
    COMPLETED = "completed"
    WAITING_USER_ANSWER = "waiting_user_answer"
    ERROR = "error"
    EXITED = "exited"

    @property
    def accepts_input(self) -> bool:
        """An agent in this status can take a new task or message now. After an error the CLI
        is back at its prompt too (it reported the error and waits for the next input)."""
        return self in (AgentStatus.IDLE, AgentStatus.COMPLETED, AgentStatus.ERROR)


# A turn that reaches one of these is over (successfully or not).
TURN_END = frozenset({AgentStatus.COMPLETED, AgentStatus.ERROR, AgentStatus.EXITED})
# What a screen shows at the end of a turn: an answer, an error, or the bare prompt again. Before
# the input took effect it shows the same, so a turn trusts these only once it has seen more.
SCREEN_END = frozenset({AgentStatus.COMPLETED, AgentStatus.ERROR, AgentStatus.IDLE})
# The agent works on a turn (a question it asks is part of the turn).
BUSY = frozenset({AgentStatus.PROCESSING, AgentStatus.STALLED, AgentStatus.WAITING_USER_ANSWER})
