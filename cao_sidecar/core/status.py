"""The status an agent can be in, as the wire contract names them."""

from __future__ import annotations

import enum


class AgentStatus(str, enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    PROCESSING = "processing"
    COMPLETED = "completed"
    WAITING_USER_ANSWER = "waiting_user_answer"
    ERROR = "error"
    EXITED = "exited"

    @property
    def accepts_input(self) -> bool:
        """An agent in this status can take a new task or message now. After an error the CLI
        is back at its prompt too (it reported the error and waits for the next input)."""
        return self in (AgentStatus.IDLE, AgentStatus.COMPLETED, AgentStatus.ERROR)

    @property
    def ends_turn(self) -> bool:
        """A turn that reaches this status is over (successfully or not)."""
        return self in (AgentStatus.COMPLETED, AgentStatus.ERROR, AgentStatus.EXITED)
