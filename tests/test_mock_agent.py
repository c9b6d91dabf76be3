"""The mock agent driven for real: a tmux server on its own socket, text sent the injection-safe
way (load-buffer from stdin, bracketed paste-buffer, a separate Enter), results read from the
transcript and the screen."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TypeVar

import pytest

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.mock import MockProvider

REPO = Path(__file__).resolve().parents[1]
TMUX = "tmux"
T = TypeVar("T")

pytestmark = pytest.mark.skipif(subprocess.run(["which", TMUX], capture_output=True).returncode != 0, reason="tmux not installed")


def wait_for(condition: Callable[[], Optional[T]], timeout: float = 5.0, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class TmuxAgent:
    """One mock agent in a 220x50 window of a private tmux server (`tmux -L cao-test-<random>`)."""

    def __init__(self, workdir: Path, command: Optional[list[str]] = None, delay_ms: int = 50) -> None:
        self.socket = f"cao-test-{secrets.token_hex(6)}"
        self.workdir = workdir
        self.transcript = workdir / "agent" / "transcript.jsonl"
        self.provider = MockProvider()
        if command is None:
            command = self.agent_argv(delay_ms)
        env = f"PYTHONPATH={REPO}" + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
        # The capture in the same command queue sees the window before the agent has printed.
        out = self.tmux(
            "new-session", "-d", "-s", "agent", "-x", "220", "-y", "50", "-c", str(workdir),
            "-e", env, "-P", "-F", "#{pane_id}", *command,
            ";", "set-option", "-t", "agent", "remain-on-exit", "on",
            ";", "capture-pane", "-p", "-J", "-t", "agent",
        )  # fmt: skip
        self.pane, _, self.first_screen = out.partition("\n")
        self.socket_path = self.tmux("display-message", "-p", "-t", self.pane, "#{socket_path}").strip()

    def agent_argv(self, delay_ms: int = 50) -> list[str]:
        return self.agent_argv_for(self.workdir, delay_ms)

    @staticmethod
    def agent_argv_for(workdir: Path, delay_ms: int = 50) -> list[str]:
        return [
            sys.executable, "-m", "cao_sidecar.mock_agent",
            "--transcript", str(workdir / "agent" / "transcript.jsonl"),
            "--profile", "tester", "--delay-ms", str(delay_ms),
        ]  # fmt: skip

    def tmux(self, *args: str, stdin: Optional[bytes] = None) -> str:
        done = subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args], input=stdin, capture_output=True, timeout=10)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode("utf-8", "replace")

    def kill(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        if self.socket_path:
            Path(self.socket_path).unlink(missing_ok=True)  # tmux 3.3a leaves it behind

    # ---- input ----

    def paste(self, text: str) -> None:
        name = f"cao-{secrets.token_hex(4)}"
        self.tmux("load-buffer", "-b", name, "-", stdin=text.encode("utf-8"))
        self.tmux("paste-buffer", "-p", "-d", "-r", "-b", name, "-t", self.pane)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.pane, *keys)

    def send(self, text: str) -> None:
        self.paste(text)
        self.keys("Enter")

    # ---- output ----

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", self.pane)

    def status(self) -> AgentStatus:
        return self.provider.classify(self.screen())

    def wait_status(self, *wanted: AgentStatus, timeout: float = 5.0) -> str:
        """Wait until the screen shows one of `wanted`; return that screen."""

        def check() -> Optional[str]:
            screen = self.screen()
            return screen if self.provider.classify(screen) in wanted else None

        try:
            return wait_for(check, timeout, f"status {[w.value for w in wanted]}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; screen:\n{self.screen().rstrip()}") from None

    def wait_process_end(self, timeout: float = 5.0) -> None:
        """Wait for the pane's process to end. Judged from the process itself: tmux 3.3a built with
        libutempter sometimes never reaps an exited pane process (it stays a zombie and the pane is
        never marked dead; tmux issues #311 and #4559)."""
        pid = self.pane_pid()

        def ended() -> bool:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return True
            return stat.rpartition(")")[2].split()[0] in ("Z", "X")

        wait_for(ended, timeout, "the agent to exit")

    def records(self) -> list[dict]:
        try:
            raw = self.transcript.read_bytes()
        except FileNotFoundError:
            return []
        # Only complete lines: the agent may be in the middle of writing a long record (even in
        # the middle of a multi-byte character), so the cut is made on bytes. Fields
        # other than type and text (a timestamp) are not compared here.
        records = [json.loads(line) for line in raw[: raw.rfind(b"\n") + 1].decode("utf-8").splitlines()]
        return [{k: v for k, v in r.items() if k in ("type", "text")} for r in records]

    def wait_records(self, count: int, timeout: float = 5.0) -> list[dict]:
        def check() -> Optional[list[dict]]:
            records = self.records()
            return records if len(records) >= count else None

        return wait_for(check, timeout, f"{count} records")

    def pane_dead(self) -> Optional[str]:
        """The exit status once the pane's process has ended, else None."""
        dead, _, status = self.tmux("display-message", "-p", "-t", self.pane, "#{pane_dead} #{pane_dead_status}").partition(" ")
        return status.strip() if dead == "1" else None

    def pane_pid(self) -> int:
        return int(self.tmux("display-message", "-p", "-t", self.pane, "#{pane_pid}"))


@pytest.fixture
def agent(tmp_path: Path):
    agent = TmuxAgent(tmp_path)
    try:
        agent.wait_status(AgentStatus.IDLE)
        yield agent
    finally:
        agent.kill()


PAYLOAD_PARTS = [
    "-leading dash line; ",
    "'single' \"double\" `backtick $(echo injected)` ${HOME} $PATH \\back\\slash ",
    "Enter C-c C-d Escape ^C ; ",
    "\x1b]0;pwned-title\x07 \x1b[2J\x1b[31mred\x1b[0m \x1b[?1049h \x07 \x1b]2;t2\x1b\\ ",
    "ünïcödé 漢字 emoji 🎉 مرحبا \u200b ",
    "tab\there CR\rhere ",
    "\n",
]


def payload(size: int) -> str:
    text = "-" + "".join(PAYLOAD_PARTS)
    while len(text.encode("utf-8")) < size:
        text += "".join(PAYLOAD_PARTS)
    return text + "last line ends with a semicolon;"


def screen_text(text: str) -> str:
    """How the agent shows `text`: control characters made visible, tabs as four spaces."""
    return "\n".join(
        line.replace("\x1b", "␛").replace("\x07", "^G").replace("\r", "^M").replace("\t", "    ").rstrip()
        for line in text.split("\n")
    )


def test_banner_then_idle(agent: TmuxAgent) -> None:
    assert agent.first_screen.strip() == ""  # captured before the agent printed anything
    lines = agent.screen().rstrip().split("\n")
    assert lines[0] == "cao mock agent · profile tester · ready"
    assert lines[-1].rstrip() == "›"


def test_multiline_task_arrives_byte_exact(agent: TmuxAgent) -> None:
    text = "first line\n  second, indented\n\nfourth after a blank line\n"
    agent.send("echo " + text)
    records = agent.wait_records(2)
    assert records == [{"type": "user", "text": "echo " + text}, {"type": "assistant", "text": text}]
    screen = agent.wait_status(AgentStatus.COMPLETED)
    assert "› echo first line [+4 lines]" in screen
    assert agent.provider.extract_answer(screen) == text.rstrip("\n")
    assert agent.provider.read_answer(agent.transcript.parent) == text


def test_20k_metacharacter_payload_arrives_byte_exact(agent: TmuxAgent) -> None:
    text = payload(20 * 1024)
    assert len(text.encode()) > 20 * 1024 and text.endswith(";") and "\r" in text
    agent.send("echo " + text)
    records = agent.wait_records(2)
    assert records[0] == {"type": "user", "text": "echo " + text}
    assert records[1] == {"type": "assistant", "text": text}
    screen = agent.wait_status(AgentStatus.COMPLETED)
    # Nothing pasted reached the terminal as a control sequence: it is all shown as text ...
    assert "␛]0;pwned-title^G" in screen and "␛[2J" in screen
    # ... the screen was not cleared (the whole session is in the scrollback, every line of the
    # answer included), no alternate screen, and the title is untouched.
    history = agent.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", agent.pane)
    assert history.startswith("cao mock agent · profile tester · ready\n\n› echo --leading dash")
    assert history.count("-leading dash line;") == text.count("-leading dash line;") + 1  # + input line
    assert agent.provider.extract_answer(history) == screen_text(text)
    assert agent.tmux("display-message", "-p", "-t", agent.pane, "#{alternate_on}").strip() == "0"
    assert "pwned" not in agent.tmux("display-message", "-p", "-t", agent.pane, "#{pane_title}")
    assert agent.provider.read_answer(agent.transcript.parent) == text


def test_sleep_shows_processing_then_completed(agent: TmuxAgent) -> None:
    agent.send("sleep 0.4 woke up")
    screen = agent.wait_status(AgentStatus.PROCESSING, timeout=2)
    assert "working (esc to interrupt)" in screen
    assert agent.records() == [{"type": "user", "text": "sleep 0.4 woke up"}]
    screen = agent.wait_status(AgentStatus.COMPLETED, timeout=3)
    assert agent.provider.extract_answer(screen) == "woke up"
    assert agent.records()[-1] == {"type": "assistant", "text": "woke up"}
    assert "working" not in screen  # the spinner is erased when the turn ends


def test_every_task_is_busy_for_the_delay(tmp_path: Path) -> None:
    agent = TmuxAgent(tmp_path, delay_ms=300)
    try:
        agent.wait_status(AgentStatus.IDLE)
        started = time.monotonic()
        agent.send("echo quick")
        agent.wait_status(AgentStatus.PROCESSING)  # even an echo shows the busy state first
        agent.wait_status(AgentStatus.COMPLETED)
        assert time.monotonic() - started >= 0.3
        assert agent.records()[-1] == {"type": "assistant", "text": "quick"}
    finally:
        agent.kill()


def test_ask_waits_for_the_answer(agent: TmuxAgent) -> None:
    agent.send("ask Shall I proceed?")
    screen = agent.wait_status(AgentStatus.WAITING_USER_ANSWER)
    assert "? Shall I proceed?" in screen
    assert agent.records()[-1] == {"type": "question", "text": "Shall I proceed?"}
    agent.send("yes")
    screen = agent.wait_status(AgentStatus.COMPLETED)
    assert agent.provider.extract_answer(screen) == "answered: yes"
    assert agent.records()[-1] == {"type": "assistant", "text": "answered: yes"}


def test_fail_shows_error(agent: TmuxAgent) -> None:
    agent.send("fail the disk is on fire")
    screen = agent.wait_status(AgentStatus.ERROR)
    assert "✗ Error: the disk is on fire" in screen
    assert agent.records()[-1] == {"type": "error", "text": "the disk is on fire"}
    assert agent.provider.read_answer(agent.transcript.parent) is None
    agent.send("echo still alive")  # the agent takes new work after an error
    assert agent.provider.extract_answer(agent.wait_status(AgentStatus.COMPLETED)) == "still alive"


def test_sidecar_tool_without_endpoint_is_an_error(agent: TmuxAgent) -> None:
    agent.send("handoff developer write the tests")
    screen = agent.wait_status(AgentStatus.ERROR)
    assert "no sidecar MCP endpoint (CAO_MCP_URL is not set)" in screen
    assert agent.records()[-1] == {"type": "error", "text": "no sidecar MCP endpoint (CAO_MCP_URL is not set)"}


def test_escape_interrupts_a_sleep(agent: TmuxAgent) -> None:
    agent.send("sleep 30 never")
    agent.wait_status(AgentStatus.PROCESSING)
    agent.keys(MockProvider.interrupt_key)
    screen = agent.wait_status(AgentStatus.IDLE, timeout=2)
    assert "■ interrupted by user" in screen
    assert agent.records()[-1] == {"type": "interrupted"}
    agent.send("echo after")
    assert agent.provider.extract_answer(agent.wait_status(AgentStatus.COMPLETED)) == "after"


def test_ctrl_c_interrupts_and_is_ignored_at_idle(agent: TmuxAgent) -> None:
    agent.keys("C-c")  # at an empty prompt: nothing happens
    agent.send("sleep 30 never")
    agent.wait_status(AgentStatus.PROCESSING)
    agent.keys("C-c")
    agent.wait_status(AgentStatus.IDLE, timeout=2)
    assert [r["type"] for r in agent.records()] == ["user", "interrupted"]
    assert agent.pane_dead() is None


def test_typing_and_backspace(agent: TmuxAgent) -> None:
    agent.keys("-l", "echo typx")
    agent.keys("BSpace")
    agent.keys("-l", "ed ü")
    wait_for(lambda: agent.screen().rstrip().endswith("› echo typed ü"), what="typed text")
    assert agent.status() is AgentStatus.IDLE
    agent.keys("Enter")
    assert agent.provider.extract_answer(agent.wait_status(AgentStatus.COMPLETED)) == "typed ü"


def test_input_while_busy_is_queued(agent: TmuxAgent) -> None:
    agent.send("sleep 0.3 first")
    agent.wait_status(AgentStatus.PROCESSING)
    agent.send("echo second")
    agent.wait_records(4)
    screen = agent.wait_status(AgentStatus.COMPLETED)
    assert [r.get("text") for r in agent.records()] == ["sleep 0.3 first", "first", "echo second", "second"]
    assert agent.provider.extract_answer(screen) == "second"


@pytest.fixture
def agent_in_shell(tmp_path: Path):
    """The agent started by a shell that, once the agent has exited, records its exit status and
    the tty modes, then copies what is pasted next into a file: the terminal after the agent."""
    after = tmp_path / "after"
    after.mkdir()
    argv = shlex.join(TmuxAgent.agent_argv_for(tmp_path))
    script = f"{argv}; echo $? > {after}/status; stty -a > {after}/stty; exec cat > {after}/pasted"
    agent = TmuxAgent(tmp_path, command=["sh", "-c", script])
    try:
        agent.wait_status(AgentStatus.IDLE)
        yield agent
    finally:
        agent.kill()


def assert_terminal_restored(agent: TmuxAgent, exit_status: int) -> None:
    after = agent.workdir / "after"
    status = wait_for(lambda: (after / "status").exists() and (after / "status").read_text(), what="agent exit")
    assert status.strip() == str(exit_status)
    # The tty is back in cooked mode ...
    modes = set(wait_for(lambda: (after / "stty").exists() and (after / "stty").read_text(), what="stty").split())
    assert {"icanon", "echo", "isig", "icrnl", "opost"} <= modes
    # ... and bracketed paste is off: a paste reaches the next program without ESC[200~ markers.
    wait_for(lambda: (after / "pasted").exists(), what="cat to start")
    agent.paste("probe\n")
    assert wait_for(lambda: (after / "pasted").read_bytes(), what="the paste") == b"probe\n"


def test_exit_ends_the_process(agent_in_shell: TmuxAgent) -> None:
    agent_in_shell.send(MockProvider.exit_command)
    assert_terminal_restored(agent_in_shell, 0)
    assert "cao mock agent · profile tester · bye" in agent_in_shell.screen()


def test_ctrl_d_at_empty_prompt_exits(agent_in_shell: TmuxAgent) -> None:
    agent_in_shell.keys("C-d")
    assert_terminal_restored(agent_in_shell, 0)


def test_sigterm_restores_the_terminal(agent_in_shell: TmuxAgent) -> None:
    agent_in_shell.send("sleep 30 never")
    agent_in_shell.wait_status(AgentStatus.PROCESSING)
    shell = agent_in_shell.pane_pid()
    children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
    assert len(children) == 1
    os.kill(int(children[0]), signal.SIGTERM)
    assert_terminal_restored(agent_in_shell, 128 + signal.SIGTERM)


def test_exit_ends_the_pane_process(agent: TmuxAgent) -> None:
    agent.send("exit")
    agent.wait_process_end()


def test_one_megabyte_paste(agent: TmuxAgent) -> None:
    text = payload(1024 * 1024)
    agent.send("echo " + text)
    records = agent.wait_records(2, timeout=10)
    assert records[1]["text"] == text
    assert agent.provider.read_answer(agent.transcript.parent) == text


def test_input_split_across_reads(tmp_path: Path) -> None:
    """Paste markers and a UTF-8 character cut across reads (stdin a pipe, so every write is one
    read): the task still arrives whole."""
    transcript = tmp_path / "transcript.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cao_sidecar.mock_agent", "--transcript", str(transcript), "--delay-ms", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdin is not None
    try:
        chunks = [b"\x1b[20", b"0~echo \xe2", b"\x82", b"\xac split\r\x1b", b"[2", b"01", b"~\r"]
        for chunk in chunks:
            proc.stdin.write(chunk)
            proc.stdin.flush()
            time.sleep(0.01)
        wait_for(lambda: transcript.exists() and transcript.read_text().count("\n") >= 2, what="the answer")
        lines = transcript.read_text(encoding="utf-8").splitlines()
        assert [{k: v for k, v in json.loads(line).items() if k != "at"} for line in lines] == [
            {"type": "user", "text": "echo € split\r"},
            {"type": "assistant", "text": "€ split\r"},
        ]
        proc.stdin.write(b"exit\r")
        proc.stdin.flush()
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()


# ---- the pure parts: task grammar, key parser, sanitising ----------------------------------------

from cao_sidecar.mock_agent import screen as glyphs  # noqa: E402
from cao_sidecar.mock_agent.keys import PASTE_END, PASTE_START, InputParser  # noqa: E402
from cao_sidecar.mock_agent.tasks import Task, parse_task  # noqa: E402


@pytest.mark.parametrize(
    "text, task",
    [
        ("echo hi there", Task("answer", "hi there")),
        ("echo  two spaces kept", Task("answer", " two spaces kept")),
        ("echo\nnext line\n", Task("answer", "next line\n")),
        ("echo", Task("answer", "")),
        ("sleep 0.5 done now", Task("sleep", "done now", seconds=0.5)),
        ("sleep 2", Task("sleep", "", seconds=2.0)),
        ("sleep soon x", Task("fail", "sleep: SECONDS must be a number of seconds, got 'soon'")),
        ("sleep nan x", Task("fail", "sleep: SECONDS must be a number of seconds, got 'nan'")),
        ("ask Proceed with it?", Task("ask", "Proceed with it?")),
        ("fail bad thing", Task("fail", "bad thing")),
        ("exit", Task("exit")),
        ("handoff developer", Task("fail", "usage: handoff PROFILE TASK")),
        ("write the docs", Task("answer", "done: write the docs")),
        (" echo leading space", Task("answer", "done:  echo leading space")),
        ("echoes", Task("answer", "done: echoes")),
    ],
)  # fmt: skip
def test_task_grammar(text: str, task: Task) -> None:
    assert parse_task(text) == task


@pytest.mark.parametrize(
    "text, tool, values",
    [
        ("handoff developer write\nthe code", "handoff", ["developer", "write\nthe code"]),
        ("assign reviewer look", "assign", ["reviewer", "look"]),
        ("send t-1 hello there", "send_message", ["t-1", "hello there"]),
    ],
)
def test_tool_tasks(text: str, tool: str, values: list[str]) -> None:
    # The argument names follow the sidecar's MCP tool schemas; the values are what was typed.
    task = parse_task(text)
    assert (task.kind, task.tool) == ("tool", tool)
    assert list((task.arguments or {}).values()) == values


def feed_all(parser: InputParser, *chunks: str) -> list:
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def text_of(events: list) -> str:
    return "".join(e[1] for e in events if e[0] == "text")


def test_paste_split_at_every_point() -> None:
    body = "a\r\nb \x1b[31m\x03\x04\x7f ü \x1b[201 not the end"
    data = PASTE_START + body + PASTE_END + "\r"
    for cut in range(len(data) + 1):
        events = feed_all(InputParser(), data[:cut], data[cut:])
        assert text_of(events) == body, cut
        assert [e[0] for e in events if e[0] != "text"] == ["paste_start", "paste_end", "enter"], cut


def test_keys_outside_a_paste() -> None:
    parser = InputParser()
    events = parser.feed("ab\x7f\x1b[A\x1bOB\x1bxc\n\t\x01\x03\x04\r")
    assert events == [
        ("text", "ab"), ("backspace",), ("text", "c"), ("text", "\n"), ("text", "\t"),
        ("ctrl_c",), ("ctrl_d",), ("enter",),
    ]  # fmt: skip
    assert parser.feed("\x1b") == [] and parser.waiting_for_more
    assert parser.timeout() == [("esc",)]  # a lone ESC is the Esc key once input is quiet
    assert parser.feed("\x1b\x1b[200~x") == [("esc",), ("paste_start",), ("text", "x")]
    assert not parser.waiting_for_more  # inside a paste nothing times out
    assert parser.feed("\x1b[20") == [] and parser.timeout() == []


def test_sanitize_makes_controls_visible() -> None:
    assert glyphs.sanitize("\x1b]0;t\x07\x1b[2J\x9b\x7f\r\x00ok") == "␛]0;t^G␛[2J\\x9b^?^M^@ok"
    assert glyphs.input_summary("x" * 300 + "\n" + "y") == "x" * 200 + " [+1 lines]"
    assert glyphs.clip_cells("漢字漢字", 5) == "漢字…"
