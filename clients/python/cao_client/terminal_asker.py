"""Agents' questions on the terminal, for the command-line verbs (`run`, `demo`).

A question arrives as the `prompt` ({id, text, choices, detail}) of a cao/agentStatus
notification. On a terminal it is printed (to stderr: stdout is the answer) and the typed line is
sent back with cao/answer (a choice's number or its text, or free text). Without a terminal no
one can answer: the verb fails at once with the question instead of waiting for its timeout.
Questions before the agent's first task are start-up dialogs the sidecar answers itself; a
question is put to the user only if it is still open ASK_AFTER seconds later (as the editor face
does).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Callable, Optional, TextIO

from cao_client.client import CaoClient, CaoError

ASK_AFTER = 0.3
BUSY = ("processing", "waiting_user_answer", "completed", "error")


class Unanswerable(Exception):
    """A question came and standard input is not a terminal: the message says which."""


def show_question(who: str, prompt: dict[str, Any], out: TextIO) -> None:
    """An agent's question, its detail and numbered choices, then the line to type after."""
    choices = [str(c) for c in prompt.get("choices") or []]
    print(f"\n{who} asks: {prompt.get('text')}", file=out)
    if prompt.get("detail"):
        print("  " + str(prompt["detail"]).replace("\n", "\n  "), file=out)
    for n, choice in enumerate(choices, 1):
        print(f"  {n}) {choice}", file=out)
    hint = "a number or the text of a choice" if choices else "your answer"
    print(f"answer ({hint}, then Enter): ", end="", file=out, flush=True)


def picked(line: str, choices: list[str]) -> str:
    """A typed line as an answer: a choice's number becomes that choice, anything else stays."""
    return choices[int(line) - 1] if line.isdigit() and 1 <= int(line) <= len(choices) else line


class LineReader:
    """Lines typed on standard input, read without a thread (a blocked read would outlive us)."""

    def __init__(self) -> None:
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self._reading = False

    async def read_line(self) -> str:
        """The next line, stripped; "" at end of input."""
        if not self._reading:
            self._reading = True
            fd = sys.stdin.fileno()
            buffer = bytearray()

            def readable() -> None:
                data = os.read(fd, 4096)
                if not data:
                    asyncio.get_running_loop().remove_reader(fd)
                    self._lines.put_nowait("")
                    return
                buffer.extend(data)
                while b"\n" in buffer:
                    line, _, rest = bytes(buffer).partition(b"\n")
                    buffer[:] = rest
                    self._lines.put_nowait(line.decode("utf-8", "replace").strip())

            asyncio.get_running_loop().add_reader(fd, readable)
        return await self._lines.get()

    def close(self) -> None:
        if self._reading:
            try:
                asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
            except (ValueError, OSError):
                pass


class TerminalAsker:
    def __init__(
        self,
        *,
        interactive: bool,
        is_ours: Callable[[dict[str, Any]], bool] = lambda params: True,
        out: TextIO = sys.stderr,
    ) -> None:
        self.interactive = interactive
        self.is_ours = is_ours
        self.out = out
        self.client: Optional[CaoClient] = None
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._latest: dict[str, dict[str, Any]] = {}  # terminal id → its last status notification
        self._working: set[str] = set()  # agents that have started a task (past their start-up)
        self._asked: set[str] = set()  # prompt ids put to the user
        self._lines = LineReader()
        self._tasks: set[asyncio.Task[None]] = set()

    def on_notification(self, method: str, params: Any) -> None:
        if method != "cao/agentStatus" or not isinstance(params, dict) or not self.is_ours(params):
            return
        terminal_id = str(params.get("terminalId"))
        self._latest[terminal_id] = params
        if params.get("status") == "processing":
            self._working.add(terminal_id)
        prompt = params.get("prompt")
        if (
            params.get("status") == "waiting_user_answer"
            and terminal_id in self._working
            and isinstance(prompt, dict)
            and prompt.get("id") not in self._asked
        ):
            self._asked.add(prompt["id"])
            task = asyncio.get_running_loop().create_task(self._ask(terminal_id, params))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _still_open(self, terminal_id: str, prompt_id: str) -> bool:
        latest = self._latest.get(terminal_id) or {}
        prompt = latest.get("prompt") or {}
        return latest.get("status") == "waiting_user_answer" and prompt.get("id") == prompt_id

    async def _ask(self, terminal_id: str, params: dict[str, Any]) -> None:
        prompt = params["prompt"]
        await asyncio.sleep(ASK_AFTER)
        if not self._still_open(terminal_id, prompt["id"]):
            return
        who = f"agent '{params.get('profile')}' ({terminal_id})"
        choices = [str(c) for c in prompt.get("choices") or []]
        if not self.interactive:
            listed = f" [choices: {' / '.join(choices)}]" if choices else ""
            if not self.failed.done():
                self.failed.set_result(
                    f"{who} asks: {prompt.get('text')}{listed}; standard input is not a terminal, so no one "
                    "can answer it (run this from a terminal to answer, or give the profile a permission "
                    "mode that does not ask)"
                )
            return
        show_question(who, prompt, self.out)
        line = await self._lines.read_line()
        if not self._still_open(terminal_id, prompt["id"]):
            print("(the question was already answered or is gone)", file=self.out)
            return
        answer = picked(line, choices)
        try:
            assert self.client is not None
            await self.client.answer(terminal_id, answer, prompt["id"])
        except CaoError as exc:
            print(f"(answer not taken: {exc.message})", file=self.out)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._lines.close()


async def until_done_or_unanswerable(asker: TerminalAsker, work: "asyncio.Future[Any]") -> Any:
    """`work`'s result; raises Unanswerable (after cancelling `work`) if a question cannot be asked."""
    await asyncio.wait({work, asker.failed}, return_when=asyncio.FIRST_COMPLETED)
    if work.done():
        return work.result()
    work.cancel()
    try:
        await work
    except (asyncio.CancelledError, CaoError, ConnectionError):
        pass
    raise Unanswerable(asker.failed.result())
