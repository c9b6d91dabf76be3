"""What the core needs from an agent CLI: how to launch it and how to read its screen.

A provider is stateless. `classify` and `extract_answer` are pure functions of the screen text
(tested against captured screens); everything that touches processes lives in the core and the
terminal layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol

import attrs

from cao_sidecar.core.status import AgentStatus


@attrs.define
class LaunchContext:
    """Facts about the agent being launched that the provider may put on its command line."""

    terminal_id: str
    session: str
    working_directory: str
    agent_dir: Path  # private per-agent directory under the state dir (transcripts, configs)
    model: Optional[str] = None
    system_prompt: str = ""
    env: dict[str, str] = attrs.field(factory=dict)  # what the core wants in the agent's environment


@attrs.define
class LaunchSpec:
    argv: list[str]
    env: dict[str, str] = attrs.field(factory=dict)


class Provider(Protocol):
    name: str
    # Text typed (then Enter) to ask the CLI to quit.
    exit_command: str
    # Key (tmux key name) that interrupts the current turn.
    interrupt_key: str

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        """The command (argv, no shell) and extra environment that start this CLI."""
        ...

    def classify(self, screen: str) -> AgentStatus:
        """Status shown by the screen (visible part, plain text). Never EXITED: the core knows that
        from the process itself."""
        ...

    def extract_answer(self, screen: str) -> Optional[str]:
        """The final answer to the last input, read from the screen (scrollback included), or None."""
        ...

    def read_answer(self, agent_dir: Path) -> Optional[str]:
        """The final answer from an event source the CLI writes (transcript), if it has one."""
        ...
