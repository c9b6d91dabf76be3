"""What Gemini CLI and its fork Qwen Code share: the launch's model and approval-mode flags, the
command hooks that run hook_relay.py, and the reading of a screen whose live prompt sits in an
input box under the conversation (the box, its glyphs and its busy line differ: the subclass says).
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.base import Classification, LaunchContext
from cao_sidecar.providers.screen import Screen, ScreenProvider, command_from_options, relay_argv

S = AgentStatus


def base_argv(binary: str, ctx: LaunchContext, approval_modes: tuple[str, ...]) -> list[str]:
    """The command with the profile's model and approval mode (bypassPermissions = yolo)."""
    argv = command_from_options([binary], ctx)
    if ctx.model:
        argv.append("--model=" + ctx.model)
    mode = ctx.options.get("approval_mode")
    if ctx.options.get("permission_mode") == "bypassPermissions":
        mode = "yolo"
    if mode in approval_modes:
        argv.append("--approval-mode=" + mode)
    return argv


def relay_hooks(ctx: LaunchContext, provider: str, events: tuple[str, ...], matcher: str) -> Optional[dict[str, Any]]:
    """Settings `hooks`: each event runs hook_relay.py with the agent's credential file; None when
    the sidecar gave the agent no hook endpoint."""
    argv = relay_argv(ctx, provider, "--stdin")
    if argv is None:
        return None
    relay = shlex.join(argv)
    hook = {"type": "command", "command": relay, "timeout": 10000}
    return {event: [{"matcher": matcher, "hooks": [{**hook, "name": f"cao-{event}"}]}] for event in events}


class InputBoxScreen(ScreenProvider):
    """Status and answer of a screen with the live prompt in an input box at the bottom: inputs
    (`INPUT`), answers (`ANSWER_HEAD` and continuation lines), errors and a busy line above it."""

    INPUT: re.Pattern[str]
    ANSWER_HEAD: re.Pattern[str]
    ERROR: re.Pattern[str]
    BUSY: re.Pattern[str]
    CONTINUATION = "   "  # an answer's continuation lines are indented so
    CONFIRM_WINDOW = 20  # lines searched for a confirmation when no prompt is drawn
    BUSY_TEXT = "esc to cancel"
    ANSWER_GLYPHS = "✦"

    def _prompt(self, s: Screen) -> int:
        """Index of the live prompt line, or -1."""
        raise NotImplementedError

    def _box_top(self, s: Screen, prompt: int) -> int:
        """Index of the input box's top edge (what is above it is the conversation)."""
        raise NotImplementedError

    def _confirming(self, line: str) -> bool:
        """A line of a tool confirmation (which replaces or sits above the input box)."""
        raise NotImplementedError

    def _ends_answer(self, line: str) -> bool:
        """A line under an answer that is not part of it."""
        raise NotImplementedError

    def _classify(self, s: Screen) -> Classification:
        prompt = self._prompt(s)
        if prompt < 0:
            dialog = self._dialog(s)
            if dialog is not None:
                return dialog
            if any(self._confirming(line) for line in s.tail(self.CONFIRM_WINDOW)):
                return Classification(S.WAITING_USER_ANSWER, "dialog: a confirmation in place of the input box")
            if any(self.BUSY.search(line) for line in s.tail(4)):
                return Classification(S.PROCESSING, "busy line at the bottom")
            return Classification(S.STARTING, "no input prompt yet")
        end = self._box_top(s, prompt)
        if any(self._confirming(line) for line in s.tail(6, end)):
            return Classification(S.WAITING_USER_ANSWER, "confirmation right above the input box")
        if any(self.BUSY.search(line) for line in s.tail(3, end)):
            return Classification(S.PROCESSING, f"'{self.BUSY_TEXT}' right above the input box")
        last_input = s.last_index(lambda line: bool(self.INPUT.match(line)), 0, end)
        if last_input < 0:
            return Classification(S.IDLE, "input prompt, no input yet")
        answer = s.last_index(lambda line: bool(self.ANSWER_HEAD.match(line)), last_input + 1, end)
        error = s.last_index(lambda line: bool(self.ERROR.search(line)), last_input + 1, end)
        if error > answer:
            return Classification(S.ERROR, "an error (✕) follows the last input")
        if answer >= 0:
            return Classification(S.COMPLETED, f"an answer ({self.ANSWER_GLYPHS}) follows the last input")
        return Classification(S.IDLE, "input prompt; no answer after the last input")

    def _extract(self, s: Screen) -> Optional[str]:
        prompt = self._prompt(s)
        end = self._box_top(s, prompt) if prompt >= 0 else len(s.lines)
        last_input = s.last_index(lambda line: bool(self.INPUT.match(line)), 0, end)
        head = s.last_index(lambda line: bool(self.ANSWER_HEAD.match(line)), last_input + 1, end)
        if head < 0:
            return None
        out = [self.ANSWER_HEAD.sub("", s.lines[head], count=1)]
        indent = self.CONTINUATION
        for line in s.lines[head + 1 : end]:
            if self._ends_answer(line) or self.BUSY.search(line):
                break
            out.append(line[len(indent) :] if line.startswith(indent) else line.strip())
        return "\n".join(out)
