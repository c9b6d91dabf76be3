"""Providers described by data: ordered status patterns, an answer rule, startup dialogs.

Used by the CLIs we cannot capture here (Kiro, Amazon Q, Copilot, Cursor) and by user-defined
providers (providers/user.py), so a new CLI needs no code. How a screen is read:

1. tmux's dead-pane notice or a shell prompt on the last line → exited;
2. the status rules, in order; each looks at the bottom `window` non-blank lines (or only the
   last line, or only the lines after the last submitted input); the first match decides;
3. a rule with status `idle` that matches while an answer follows the last input gives
   `completed` (a CLI without a completion marker is also completed by the core's rule "idle
   again after it was seen busy");
4. nothing matched → `default` (processing: the CLI is drawing something we do not know).

The answer: the lines after the last input (`input` pattern) from the last line matching
`answer.start` down to the first line matching `answer.end` (or the live prompt); `strip` is a
regex removed from the start of each answer line (e.g. the marker and its indentation).
"""

from __future__ import annotations

import re
from typing import Mapping, Optional, Sequence

import attrs

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.base import Classification, LaunchContext, LaunchSpec
from cao_sidecar.providers.screen import Screen, ScreenProvider, command_from_options, extra_args

S = AgentStatus


@attrs.frozen
class StatusRule:
    status: AgentStatus
    pattern: re.Pattern[str]
    name: str = ""
    window: int = 4  # bottom non-blank lines looked at
    scope: str = "bottom"  # bottom | last_line | after_input

    @property
    def label(self) -> str:
        return self.name or f"{self.status.value}: /{self.pattern.pattern}/ in {self._where()}"

    def _where(self) -> str:
        if self.scope == "last_line":
            return "the last line"
        if self.scope == "after_input":
            return "the lines after the last input"
        return f"the last {self.window} lines"


@attrs.frozen
class AnswerRule:
    start: Optional[re.Pattern[str]] = None
    end: Optional[re.Pattern[str]] = None
    strip: Optional[re.Pattern[str]] = None


def fill_template(template: Sequence[str], placeholder: str, value: str) -> list[str]:
    """`template` with `placeholder` replaced by `value`, so that the value never stands alone as
    an argument beginning with '-' (a flag to the CLI): `["--model", "{model}"]` with a value
    `-x` becomes `["--model=-x"]`; where no `--long` option precedes it, ValueError."""
    out: list[str] = []
    for arg in template:
        if arg == placeholder and value.startswith("-"):
            if out and out[-1].startswith("--") and "=" not in out[-1]:
                out[-1] = f"{out[-1]}={value}"
                continue
            raise ValueError(f"the value for {placeholder} begins with '-' and would stand alone as a flag")
        out.append(arg.replace(placeholder, value))
    return out


class PatternProvider(ScreenProvider):
    """A provider whose screen rules are data (see the module doc)."""

    name = "patterns"
    command: Sequence[str] = ()
    env: Mapping[str, str] = {}
    rules: Sequence[StatusRule] = ()
    input_pattern: Optional[re.Pattern[str]] = None
    prompt_pattern: Optional[re.Pattern[str]] = None  # the live prompt line (answer ends above it)
    answer: AnswerRule = AnswerRule()
    default_status: AgentStatus = S.PROCESSING
    model_args: Sequence[str] = ()  # e.g. ("--model", "{model}")
    system_prompt_args: Sequence[str] = ()

    # ---- launch -------------------------------------------------------------------------------

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        argv = command_from_options(list(self.command) or [self.name], ctx)
        if ctx.model and self.model_args:
            argv += fill_template(self.model_args, "{model}", ctx.model)
        if ctx.system_prompt and self.system_prompt_args:
            argv += fill_template(self.system_prompt_args, "{system_prompt}", ctx.system_prompt)
        argv += self._launch_args(ctx)
        argv += extra_args(ctx)
        env = {k: v.replace("{agent_dir}", str(ctx.agent_dir)) for k, v in self.env.items()}
        return LaunchSpec(argv=argv, env=env)

    def _launch_args(self, ctx: LaunchContext) -> list[str]:
        return []

    # ---- screen -------------------------------------------------------------------------------

    def _last_input(self, s: Screen) -> int:
        if self.input_pattern is None:
            return -1
        end = len(s.lines)
        if self.prompt_pattern is not None and end and self.prompt_pattern.search(s.lines[-1]):
            end -= 1  # the live prompt is not a submitted input
        pattern = self.input_pattern
        return s.last_index(lambda line: bool(pattern.search(line)), 0, end)

    def match_rules(self, s: Screen) -> Classification:
        """Only the rules, on a parsed screen (no empty-screen or exited-shell reading): for a
        provider that lays these rules over another's (providers.user)."""
        return self._classify(s)

    def _classify(self, s: Screen) -> Classification:
        last_input: Optional[int] = None
        for rule in self.rules:
            if rule.scope == "last_line":
                lines: Sequence[str] = s.lines[-1:]
            elif rule.scope == "after_input":
                if last_input is None:
                    last_input = self._last_input(s)
                if last_input < 0:
                    continue
                lines = s.lines[last_input + 1 :]
            else:
                lines = s.tail(rule.window)
            if any(rule.pattern.search(line) for line in lines):
                if rule.status is S.IDLE and self.answer.start is not None and self._extract(s) is not None:
                    return Classification(S.COMPLETED, f"{rule.label}, and an answer follows the last input")
                return Classification(rule.status, rule.label)
        return Classification(self.default_status, f"no rule matched (default {self.default_status.value})")

    def _extract(self, s: Screen) -> Optional[str]:
        if self.answer.start is None:
            return None
        last_input = self._last_input(s)
        end = len(s.lines)
        if self.prompt_pattern is not None and end and self.prompt_pattern.search(s.lines[-1]):
            end -= 1
        start_pattern = self.answer.start
        head = s.last_index(lambda line: bool(start_pattern.search(line)), last_input + 1, end)
        if head < 0:
            return None
        out: list[str] = []
        for line in s.lines[head:end]:
            if out and self.answer.end is not None and self.answer.end.search(line):
                break
            if self.answer.strip is not None:
                line = self.answer.strip.sub("", line, count=1)
            out.append(line)
        return "\n".join(out)


def compile_rules(specs: Sequence[tuple[AgentStatus, str, int, str, str]]) -> tuple[StatusRule, ...]:
    """(status, regex, window, scope, name) tuples → rules (for the built-in pattern providers)."""
    return tuple(StatusRule(st, re.compile(rx), name, window, scope) for st, rx, window, scope, name in specs)
