"""Provider `grok_cli`: Grok CLI (`grok`, npm `@vibe-kit/grok-cli`; 0.0.34 captured here).

Screen (bottom = newest):

      > the last input                      a submitted input (two spaces in)
      ⏺ Bash(touch x)                       a tool call, its result under "    ⎿ "
      \\ Calibrating... (1s · ↑ 799 tokens · esc to interrupt)    busy
      ⏺ the answer                          an answer: "⏺ " head, continuation lines
      ⏺ Sorry, I encountered an error: …    an error
      ╭──────────────────────╮
      │ ❯ Ask me anything... │              the prompt box (placeholder or typed text)
      ╰──────────────────────╯
      ⏸ auto-edit: off (shift + tab)  ≋ grok-code-fast-1      footer

A tool confirmation replaces the prompt box: "Do you want to proceed with this operation?" over
"1. Yes" … "4. No, with feedback" and "↑↓ navigate • Enter select • Esc cancel" (digits do not
select: Enter takes the highlighted first choice, Esc cancels). Without an API key Grok CLI
prints "Error: API key required" and exits.

Launch: `grok [--model M]`; the model server from the profile's env (GROK_API_KEY,
GROK_BASE_URL: any OpenAI-compatible server, GROK_MODEL) or `~/.grok/user-settings.json`.
Not wired: our MCP server (Grok CLI reads MCP servers only from the workspace's
`.grok/settings.json`, a shared file, where the agent's credential must not go) and a system
prompt (it reads `.grok/GROK.md` from the workspace or the home directory only).
"""

from __future__ import annotations

import re
from typing import Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.base import Classification, LaunchContext, LaunchSpec
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers.prompt import Choice, ScreenPrompt, read_prompt
from cao_sidecar.providers.screen import Screen, ScreenProvider, command_from_options, extra_args

S = AgentStatus

PROMPT = re.compile(r"^\s*│\s*❯")
BOX_TOP = re.compile(r"^\s*╭─{10,}")
INPUT = re.compile(r"^  > \S")
BUSY = re.compile(r"esc to interrupt\)\s*$")
HEAD = re.compile(r"^  ⏺ ")
# "⏺ Bash(ls)", "⏺ Run bash command(ls)": no blank before the parenthesis (an answer may end "… (no output)").
TOOL_CALL = re.compile(r"^  ⏺ [A-Z][\w ]*\w\(.*\)\s*$")
ERROR = re.compile(r"^  ⏺ Sorry, I encountered an error")
CONFIRM = re.compile(r"Do you want to proceed with this operation\?|↑↓ navigate • Enter select|Requesting user confirmation")
MENU_FOOTER = re.compile(r"↑↓ navigate • Enter select")


class GrokCliProvider(ScreenProvider):
    name = "grok_cli"
    cli = CliFacts(
        title="Grok CLI",
        binary="grok",
        install="npm install -g @vibe-kit/grok-cli",
        login="set GROK_API_KEY (and GROK_BASE_URL for another OpenAI-compatible server) in the profile's env, "
        "or save apiKey in ~/.grok/user-settings.json",
        credential_files=("~/.grok/user-settings.json",),
        credential_env=("GROK_API_KEY",),
    )
    exit_command = "exit"
    interrupt_key = "Escape"

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        argv = command_from_options(["grok"], ctx)
        if ctx.model:
            argv.append("--model=" + ctx.model)
        argv += extra_args(ctx)
        return LaunchSpec(argv=argv)

    # ---- screen -------------------------------------------------------------------------------

    @staticmethod
    def _prompt(s: Screen) -> int:
        for i in range(len(s.lines) - 1, max(0, len(s.lines) - 6) - 1, -1):
            if PROMPT.match(s.lines[i]) and i > 0 and BOX_TOP.match(s.lines[i - 1]):
                return i
        return -1

    def _classify(self, s: Screen) -> Classification:
        prompt = self._prompt(s)
        if prompt < 0:
            if any(CONFIRM.search(line) for line in s.tail(12)):
                return Classification(S.WAITING_USER_ANSWER, "a tool confirmation in place of the prompt box")
            if any(BUSY.search(line) for line in s.tail(4)):
                return Classification(S.PROCESSING, "busy line at the bottom")
            return Classification(S.STARTING, "no prompt box yet")
        end = prompt - 1  # the box's top edge
        if any(BUSY.search(line) for line in s.tail(3, end)):
            return Classification(S.PROCESSING, "'esc to interrupt)' right above the prompt box")
        last_input = s.last_index(lambda line: bool(INPUT.match(line)), 0, end)
        if last_input < 0:
            return Classification(S.IDLE, "prompt box, no input yet")
        head = s.last_index(lambda line: bool(HEAD.match(line)) and not TOOL_CALL.match(line), last_input + 1, end)
        if head >= 0 and ERROR.match(s.lines[head]):
            return Classification(S.ERROR, "'Sorry, I encountered an error' follows the last input")
        if head >= 0:
            return Classification(S.COMPLETED, "an answer (⏺) follows the last input")
        return Classification(S.IDLE, "prompt box; no answer after the last input")

    def _extract(self, s: Screen) -> Optional[str]:
        prompt = self._prompt(s)
        end = prompt - 1 if prompt >= 0 else len(s.lines)
        last_input = s.last_index(lambda line: bool(INPUT.match(line)), 0, end)
        head = s.last_index(lambda line: bool(HEAD.match(line)) and not TOOL_CALL.match(line), last_input + 1, end)
        if head < 0 or ERROR.match(s.lines[head]):
            return None
        out = [s.lines[head][4:]]
        for line in s.lines[head + 1 : end]:
            if HEAD.match(line) or INPUT.match(line) or BUSY.search(line) or line.lstrip().startswith("⎿"):
                break
            out.append(line[4:] if line.startswith("    ") else line.strip())
        return "\n".join(out)

    def read_prompt(self, screen: str) -> ScreenPrompt:
        """Grok's confirmation menu takes no digits: Enter picks the first choice (highlighted), Esc
        cancels. Its question and detail are read as usual."""
        lines = screen.rstrip().split("\n")
        footer = next((i for i in range(len(lines) - 1, max(-1, len(lines) - 4), -1) if MENU_FOOTER.search(lines[i])), -1)
        if footer < 0:
            return read_prompt(screen)
        generic = read_prompt("\n".join(lines[:footer]))
        if not generic.choices:
            return generic
        first = generic.choices[0].label
        return ScreenPrompt(
            text=generic.text, detail=generic.detail, choices=(Choice(label=first, key="Enter"), Choice(label="No", key="Escape"))
        )
