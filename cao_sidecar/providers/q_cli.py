"""Provider `q_cli`: Amazon Q Developer CLI (`q chat`), Kiro CLI's predecessor.

Same screen and agent-file model as `kiro_cli` (see that module); agent files live in
`~/.aws/amazonq/cli-agents/`, and the product names itself "Amazon Q". Its hooks report only
processing (no `stop` trigger in Q's agent format).
"""

from __future__ import annotations

from pathlib import Path

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers.kiro_cli import KiroCliProvider


class QCliProvider(KiroCliProvider):
    name = "q_cli"
    cli = CliFacts(
        title="Amazon Q Developer CLI",
        binary="q",
        install="see Amazon Q Developer's docs: 'Installing Amazon Q for command line'",
        login="run `q login` in a terminal",
    )
    command = ("q", "chat")
    product = "Amazon Q"
    agents_dir = Path("~/.aws/amazonq/cli-agents")
    # Amazon Q's agent format has no `stop` trigger (docs/hooks.md of amazon-q-developer-cli):
    # a turn's end comes from the screen.
    hook_triggers = ("userPromptSubmit", "preToolUse", "postToolUse")
    event_statuses = frozenset({AgentStatus.PROCESSING})
