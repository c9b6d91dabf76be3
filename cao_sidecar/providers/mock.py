"""Provider `mock`: the built-in deterministic test agent (`python -m cao_sidecar.mock_agent`).

Its screen is line-oriented (no alternate screen) and its glyphs are defined in
cao_sidecar/mock_agent/screen.py; a session looks like this (bottom = newest):

    cao mock agent · profile developer · ready

    › echo hello [+1 lines]           a submitted input (first line, and how many more)
    ● hello                           an answer: "● " head, "  " continuation lines
      world

    › sleep 5 zz
    ⠸ working (esc to interrupt)      busy: one spinner line, redrawn in place
    ✗ Error: boom                     an error ends a turn
    ? Proceed?                        a question ...
      [y/n] › yes                     ... and its answer line
    ■ interrupted by user
    ›                                 the prompt (with typed text while the user types)

Every check is anchored to the bottom of the screen: what is higher up is history.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.mock_agent import screen as glyphs
from cao_sidecar.providers import own_python
from cao_sidecar.providers.base import LaunchContext, LaunchSpec, Provider
from cao_sidecar.providers.prompt import Choice, ScreenPrompt

TRANSCRIPT = "transcript.jsonl"

_OWN_HEADS = (
    glyphs.BANNER_PREFIX,
    glyphs.PROMPT,
    glyphs.ANSWER_HEAD,
    glyphs.ERROR_HEAD,
    glyphs.QUESTION_HEAD + " ",
    glyphs.INTERRUPTED_LINE,
    glyphs.CONTINUATION,
)


def _lines(screen: str) -> list[str]:
    """The screen's lines without trailing spaces (tmux keeps spaces an app wrote) and without the
    blank lines below the last written one."""
    lines = [line.rstrip() for line in screen.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _is_prompt(line: str) -> bool:
    return line == glyphs.PROMPT or line.startswith(glyphs.PROMPT + " ")


def _is_answer_head(line: str) -> bool:
    return line == glyphs.ANSWER_HEAD or line.startswith(glyphs.ANSWER_HEAD + " ")


def _is_continuation(line: str) -> bool:
    return not line or line.startswith(glyphs.CONTINUATION)


class MockProvider(Provider):
    name = "mock"
    exit_command = "exit"
    interrupt_key = "Escape"

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        # Standard library only: started without site-packages' set-up, it is ready sooner.
        argv, env = own_python.stdlib_module_launch(
            "cao_sidecar.mock_agent",
            ctx.env,
            "--transcript",
            str(ctx.agent_dir / TRANSCRIPT),
            "--profile=" + ctx.env.get("CAO_PROFILE", ""),
        )
        delay = ctx.env.get("CAO_MOCK_DELAY_MS")
        if delay:
            argv += ["--delay-ms=" + delay]
        return LaunchSpec(argv=argv, env=env)

    def classify(self, screen: str) -> AgentStatus:
        lines = _lines(screen)
        if not lines:
            return AgentStatus.STARTING
        last = lines[-1]
        if glyphs.is_spinner_line(last):
            return AgentStatus.PROCESSING
        if last.startswith(glyphs.ASK_PROMPT):
            return AgentStatus.WAITING_USER_ANSWER
        if _is_prompt(last):
            if last != glyphs.PROMPT:
                return AgentStatus.IDLE  # the user is typing (or a paste waits for Enter)
            return self._classify_above_prompt(lines[:-1])
        if not any(line.startswith(_OWN_HEADS) for line in lines):
            return AgentStatus.STARTING  # nothing of ours yet: the interpreter is still starting
        # Unrecognised bottom line under our own output: the agent is drawing (an answer being
        # written, a redraw caught half way). Its turn is not over until the prompt is back, and
        # PROCESSING is the status that makes the core wait and look again.
        return AgentStatus.PROCESSING

    def read_prompt(self, screen: str) -> ScreenPrompt:
        """The question block ("? " head, continuation lines) right above the answer line."""
        lines = _lines(screen)
        if not lines or not lines[-1].startswith(glyphs.ASK_PROMPT):
            return ScreenPrompt(text="needs your answer")
        i = len(lines) - 2
        while i >= 0 and lines[i].startswith(glyphs.CONTINUATION) and not lines[i].startswith(glyphs.ASK_PROMPT):
            i -= 1
        if i < 0 or not lines[i].startswith(glyphs.QUESTION_HEAD + " "):
            return ScreenPrompt(text="needs your answer")
        parts = [lines[i][len(glyphs.QUESTION_HEAD) + 1 :]] + [line[len(glyphs.CONTINUATION) :] for line in lines[i + 1 : -1]]
        text = "\n".join(parts).strip()
        # Anything typed on the answer line is answered with; "y"/"n" are what the mock expects.
        return ScreenPrompt(text=text[:300] or "yes or no?", choices=(Choice("Yes", text="y"), Choice("No", text="n")))

    @staticmethod
    def _classify_above_prompt(above: list[str]) -> AgentStatus:
        """An empty prompt: the block right above it says how the last turn ended."""
        i = len(above) - 1
        while i >= 0 and not above[i]:  # the blank separator line
            i -= 1
        if i < 0:
            return AgentStatus.IDLE
        while i >= 0 and _is_continuation(above[i]):
            i -= 1
        if i < 0:
            # Only continuation lines up to the top: an answer taller than the window.
            return AgentStatus.COMPLETED
        head = above[i]
        if _is_answer_head(head):
            return AgentStatus.COMPLETED
        if head.startswith(glyphs.ERROR_HEAD):
            return AgentStatus.ERROR
        if i == 0 and not head.startswith(_OWN_HEADS):
            # The top line is the cut-off tail of a line wrapped above the window (capture -J can
            # only join the rows it sees): the head scrolled away under a tall answer.
            return AgentStatus.COMPLETED
        return AgentStatus.IDLE  # banner, interrupted line

    def extract_answer(self, screen: str) -> Optional[str]:
        lines = _lines(screen)
        # The last submitted input; the bottom line is the live prompt, not a submitted one.
        start = 0
        for i in range(len(lines) - 2, -1, -1):
            if lines[i].startswith(glyphs.PROMPT + " "):
                start = i + 1
                break
        head = None
        for i in range(len(lines) - 1, start - 1, -1):
            if _is_answer_head(lines[i]):
                head = i
                break
        if head is None:
            return None
        answer = [lines[head][len(glyphs.ANSWER_HEAD) + 1 :]]
        for line in lines[head + 1 :]:
            if not _is_continuation(line):
                break
            answer.append(line[len(glyphs.CONTINUATION) :])
        while len(answer) > 1 and not answer[-1]:
            answer.pop()  # the blank line before the prompt
        return "\n".join(answer)

    def typed_input(self, screen: str) -> Optional[str]:
        """The text on the live prompt line (typed or pasted, not submitted: the mock moves to a
        new line at once when it takes an input). Its first line only, cut to the window's width."""
        lines = _lines(screen)
        if not lines or not _is_prompt(lines[-1]):
            return None
        typed = lines[-1][len(glyphs.PROMPT) + 1 :]
        return _MORE_LINES.sub("", typed.removesuffix("…"))  # input_summary's marks, not the text

    def inputs_since(self, agent_dir: Path, since: float) -> Optional[list[str]]:
        """The inputs the mock took at or after `since` (wall clock), from its transcript (the
        user record is written as it takes the input)."""
        try:
            with open(agent_dir / TRANSCRIPT, "rb") as f:
                end = f.seek(0, 2)
                f.seek(max(0, end - _INPUTS_TAIL))
                tail = f.read()
        except OSError:
            return []
        taken = []
        for raw in tail.split(b"\n"):
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # the cut first line, or one still being written
            if isinstance(record, dict) and record.get("type") == "user" and isinstance(record.get("text"), str):
                at = record.get("at")
                if isinstance(at, (int, float)) and at >= since:
                    taken.append(record["text"])
        return taken

    def read_answer(self, agent_dir: Path) -> Optional[str]:
        try:
            record = json.loads(_last_line(agent_dir / TRANSCRIPT))
        except (OSError, ValueError):
            return None
        if isinstance(record, dict) and record.get("type") == "assistant":
            text = record.get("text")
            return text if isinstance(text, str) else None
        return None


_MAX_RECORD = 64 * 1024 * 1024
_MORE_LINES = re.compile(r" \[\+\d+ lines\]$")
_INPUTS_TAIL = 4 * 1024 * 1024  # inputs_since reads this much of the transcript's end


def _last_line(path: Path) -> bytes:
    """The last complete line of `path`, read from the end (records can be megabytes long).

    Raises ValueError when the file is empty or its last line is still being written (no newline
    yet): an unfinished record is not an answer."""
    with open(path, "rb") as f:
        end = f.seek(0, 2)
        if end == 0:
            raise ValueError("empty transcript")
        f.seek(end - 1)
        if f.read(1) != b"\n":
            raise ValueError("last record incomplete")
        end -= 1
        tail = b""
        pos = end
        block = 64 * 1024
        while True:
            cut = tail.rfind(b"\n")
            if cut >= 0:
                return tail[cut + 1 :]
            if pos == 0:
                return tail
            if len(tail) > _MAX_RECORD:
                raise ValueError("transcript record too long")
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            block *= 2
