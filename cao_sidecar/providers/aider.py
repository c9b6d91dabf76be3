"""Provider `aider`: Aider (`aider`, a line-oriented REPL; PyPI `aider-chat`).

Screen (0.86; bottom = newest):

    Readonly: notes.md                     the files in the chat (when there are any)
    > the last input                       the prompt line with the submitted text
    the answer, plain text                 (streamed; no marker)
    Tokens: 600 sent, 6 received.          after every answer (cost too, for priced models)
    ──────────────────────                 a rule before every prompt
    >                                      the prompt ("architect>", "ask>", "code>" in modes)

Right after Enter, and again once the "Waiting for MODEL" spinner is cleared and before the
answer streams, the screen is the prompt line with the input and nothing below: the same text
as an input pasted and not yet submitted. `typed_input` gives the core that text, so it neither
ends the turn on that screen nor presses Enter again when the CLI has already taken the line.

Waiting: "(Y)es/(N)o [Yes]:" questions (also "(D)on't ask again", "(A)ll", "(S)kip all").
Errors: litellm exceptions ("litellm.APIConnectionError: ...") after the last input.

Aider has no MCP client: an aider worker can be handed tasks but cannot call our tools. The
profile's prompt is given as a read-only context file (`--read`), there is no system prompt flag.
At start it may ask questions (release notes, .gitignore, git repo): the launch turns them off
with flags, and the core answers what is left with "n".
"""

from __future__ import annotations

import re
from typing import Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers.base import Classification, LaunchContext, LaunchSpec
from cao_sidecar.providers.screen import (
    RULE_LINE,
    Dialog,
    Screen,
    ScreenProvider,
    command_from_options,
    extra_args,
)

S = AgentStatus

PROMPT = re.compile(r"^(?:(?:architect|ask|code|help|context|multi)(?: multi)?)?> ?$")
INPUT = re.compile(r"^(?:(?:architect|ask|code|help|context|multi)(?: multi)?)?> (?=\S)")
QUESTION = re.compile(r"\(Y\)es/\(N\)o.*\]:\s*\S*$|\(Y\)es/\(N\)o.*\?\s*$")
TOKENS = re.compile(r"^Tokens: .* sent, .* received")
ERROR = re.compile(r"^litellm\.\w+(?:Error|Exception)|^\w*Error: |^The API provider|^Unable to|^Retrying in ")
RETRY = re.compile(r"^Retrying in ")
# Its "Waiting for MODEL" spinner: a 10-column frame with a two-glyph scanner ("█░", or "#=" without
# unicode), then the text.
SPINNER = re.compile(r"^ {0,8}(?:░█|█░|=#|#=) {0,8} Waiting for \S")
FILE_LIST = ("Readonly:", "Editable:", "Read-only:")


class AiderProvider(ScreenProvider):
    name = "aider"
    cli = CliFacts(
        title="Aider",
        binary="aider",
        install="pipx install aider-chat",
        login="set your model provider's API key (e.g. ANTHROPIC_API_KEY or OPENAI_API_KEY) or put it in ~/.aider.conf.yml",
        credential_files=("~/.aider.conf.yml",),
        credential_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY", "DEEPSEEK_API_KEY"),
    )
    exit_command = "/exit"
    interrupt_key = "C-c"
    # Input is read line by line: a message is typed as one line (core/typed_text.py).
    bracketed_paste = False
    dialogs = (Dialog("startup question", r"\(Y\)es/\(N\)o", keys=("n", "Enter"), window=2),)

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        argv = command_from_options(["aider"], ctx)
        # Screen as captured (pretty output, its rule before every prompt); no update checks or
        # release notes, no analytics, no .gitignore edits in the user's repository.
        argv += ["--no-check-update", "--no-analytics", "--no-show-release-notes", "--no-gitignore"]
        if ctx.model:
            argv.append("--model=" + ctx.model)
        if ctx.system_prompt:
            path = ctx.agent_dir / "aider-conventions.md"
            path.write_text(ctx.system_prompt + "\n", encoding="utf-8")
            argv += ["--read", str(path)]
        if ctx.options.get("permission_mode") == "bypassPermissions" or ctx.options.get("yes_always"):
            argv += ["--yes-always"]
        argv += extra_args(ctx)
        return LaunchSpec(argv=argv, env={})

    @staticmethod
    def _last_input(s: Screen, end: int) -> int:
        """The last submitted input: a prompt line with text that comes right after the rule aider
        draws before every prompt (a "> " line inside an answer is a quote, not an input)."""
        for i in range(end - 1, -1, -1):
            if INPUT.match(s.lines[i]):
                j = i - 1
                # Between the rule and the prompt: blank lines and the chat's file lists.
                while j >= 0 and (not s.lines[j].strip() or s.lines[j].startswith(FILE_LIST)):
                    j -= 1
                if j < 0 or RULE_LINE.match(s.lines[j]):
                    return i
        return -1

    def typed_input(self, screen: str) -> Optional[str]:
        """The text on the prompt line when that line is the bottom of the screen (typed, pasted,
        or submitted with nothing drawn below it yet: the screen cannot tell)."""
        s = Screen(screen)
        if not s.lines:
            return None
        match = INPUT.match(s.lines[-1])
        return s.lines[-1][match.end() :] if match else None

    def _classify(self, s: Screen) -> Classification:
        last = s.lines[-1]
        if QUESTION.search(last):
            return Classification(S.WAITING_USER_ANSWER, "a (Y)es/(N)o question on the last line")
        if PROMPT.match(last):
            last_input = self._last_input(s, len(s.lines) - 1)
            if last_input < 0:
                return Classification(S.IDLE, "prompt, no input yet")
            after = s.lines[last_input + 1 : -1]
            if any(TOKENS.match(line) for line in after):
                return Classification(S.COMPLETED, "prompt; 'Tokens: … sent, … received' follows the last input")
            if any(ERROR.match(line) and not RETRY.match(line) for line in after):
                return Classification(S.ERROR, "prompt; an error follows the last input")
            if self._extract(s) is not None:
                return Classification(S.COMPLETED, "prompt; output follows the last input")
            return Classification(S.IDLE, "prompt; nothing after the last input")
        if INPUT.match(last):
            return Classification(S.IDLE, "prompt with typed text")
        if not any(line.startswith("Aider v") for line in s.lines[:40]) and self._last_input(s, len(s.lines)) < 0:
            return Classification(S.STARTING, "no banner and no prompt yet")
        if SPINNER.match(last):
            return Classification(S.PROCESSING, "the 'Waiting for MODEL' spinner, no prompt yet")
        return Classification(S.PROCESSING, "output below the last input, no prompt yet")

    def _extract(self, s: Screen) -> Optional[str]:
        end = len(s.lines)
        if end and PROMPT.match(s.lines[-1]):
            end -= 1
        last_input = self._last_input(s, end)
        if last_input < 0:
            return None
        out: list[str] = []
        for line in s.lines[last_input + 1 : end]:
            if TOKENS.match(line) or RULE_LINE.match(line):
                break
            if not SPINNER.match(line):
                out.append(line)
        text = "\n".join(out).strip("\n")
        return text or None
