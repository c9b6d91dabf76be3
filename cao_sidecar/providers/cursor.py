"""Provider `cursor`: Cursor's terminal agent (`cursor-agent`).

Constructed from provider-notes.md and checked against others' real screens of 2026.06.15
(cursor-agent installs with its own downloader, which cannot run here; see
tests/fixtures/screens/corpus.tsv). Screen:

    > the last input                       (or a boxed input echo)
    ⬢ Thinking  ctrl+c to stop             busy: a spinner line with "ctrl+c to stop"
    the answer text                        plain text, no marker
    ────────────────────────
    → Add a follow-up                      the prompt (❯, → or >), placeholder or typed text
    ────────────────────────
    Claude 4.5 Sonnet · 12%               footer

2026.x does not echo the input: "→ Add a follow-up" (a finished turn) with the answer above it,
"⠠⠛ Composing … ctrl+c to stop" while busy, "→ Plan, search, build anything" on a new session.

Waiting: "↑/↓ to navigate" choice lists (command approvals: "Run this command?"), the workspace
trust question, "(y/n)". `--force` allows commands without asking (bypass mode).

MCP: cursor-agent reads MCP servers only from `.cursor/mcp.json` (workspace) or
`~/.cursor/mcp.json`; there is no per-process option, so the sidecar does not wire its server
into Cursor agents (they can be handed tasks but cannot call our tools unless you add it there).
"""

from __future__ import annotations

import re
from typing import Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers.base import LaunchContext
from cao_sidecar.providers.patterns import AnswerRule, PatternProvider, compile_rules
from cao_sidecar.providers.screen import Dialog, Screen

S = AgentStatus
RULE = re.compile(r"^\s*[─━]{10,}")


class CursorProvider(PatternProvider):
    name = "cursor"
    cli = CliFacts(
        title="Cursor CLI",
        binary="cursor-agent",
        install="curl https://cursor.com/install -fsS | bash",
        login="run `cursor-agent login` in a terminal, or set CURSOR_API_KEY",
    )
    command = ("cursor-agent",)
    exit_command = "/quit"
    interrupt_key = "C-c"
    model_args = ("--model", "{model}")
    rules = compile_rules(
        [
            (
                S.WAITING_USER_ANSWER,
                r"↑/↓ to navigate|Run this command\?|\(y/n\)|^\s*[❯→>] \d+\. |"
                r"Trust this workspace|Do you trust",
                12,
                "bottom",
                "waiting: choices at the bottom",
            ),
            (
                S.PROCESSING,
                r"ctrl\+c to stop|\(esc to interrupt\)|^\s*[⠁-⣿]+ \S",
                8,
                "bottom",
                "processing: 'ctrl+c to stop' or a spinner at the bottom",
            ),
            (
                S.ERROR,
                r"^\s*(?:Error|error):|Request failed|Connection error",
                0,
                "after_input",
                "error: an error line after the last input",
            ),
            # "Add a follow-up" is the placeholder of a conversation whose turn is over (2026.x
            # does not echo the input, so there may be no "> " line to find the answer under).
            (
                S.COMPLETED,
                r"^\s*→ Add a follow-up",
                6,
                "bottom",
                "completed: 'Add a follow-up' at the bottom, the answer of the finished turn above it",
            ),
            (S.IDLE, r"^\s*[❯→](?: |$)|Plan, search, build anything", 6, "bottom", "idle: the prompt near the bottom"),
        ]
    )
    input_pattern = re.compile(r"^\s*[>❯] \S")
    answer = AnswerRule(
        start=re.compile(r"^\s*\S"),
        end=re.compile(r"^\s*[─━]{10,}|^\s*[❯→] "),
    )
    dialogs = (
        Dialog("workspace trust", r"Trust this workspace|Do you trust", keys=("Enter",)),
        Dialog(
            "login",
            r"cursor-agent login|Press any key to sign in|Not logged in",
            fail="cursor-agent is not logged in: run `cursor-agent login` in a terminal",
        ),
    )

    def _launch_args(self, ctx: LaunchContext) -> list[str]:
        if ctx.options.get("permission_mode") == "bypassPermissions" or ctx.options.get("force"):
            return ["--force"]
        return []

    def _extract(self, s: Screen) -> Optional[str]:
        """Plain answer text: everything after the last input up to the prompt box, without the
        busy lines."""
        last_input = self._last_input(s)
        if last_input < 0:
            return None
        start = last_input + 1
        while start < len(s.lines) and RULE.match(s.lines[start]):
            start += 1  # the rule under a boxed input echo
        end = len(s.lines)
        for i in range(start, len(s.lines)):
            if RULE.match(s.lines[i]):
                end = i
                break
        lines = [line for line in s.lines[start:end] if "ctrl+c to stop" not in line]
        while lines and not lines[0].strip():
            lines.pop(0)
        indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
        text = "\n".join(line[indent:] for line in lines).strip("\n")
        return text or None
