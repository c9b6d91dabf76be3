"""The command line as a person meets it: `run` asks an agent's question on a terminal and fails
fast with it when no one can answer, a failed `run` leaves no window behind, a bare `cao-sidecar`
on a terminal says what it is, and the Python client's documented example works."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest


from cao_client import CaoClient
from conftest import agent_windows, isolated_env, kill_tmux


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


def sidecar(*args: str) -> list[str]:
    return [sys.executable, "-m", "cao_sidecar", *args]


windows = agent_windows


def without_terminal(env: dict[str, str], tmp_base, *args: str) -> subprocess.CompletedProcess[str]:
    """`cao-sidecar ARGS` in the workspace, no terminal, its output captured."""
    return subprocess.run(
        sidecar(*args), env=env, cwd=tmp_base / "workspace", stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )


class Terminal:
    """A pseudo-terminal for a child's stdin and stderr (stdout stays a pipe: the answer), and
    its stdout too with `stdout_too`."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, stdout_too: bool = False) -> None:
        self.master, slave = pty.openpty()
        stdout = slave if stdout_too else subprocess.PIPE
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=slave, stderr=slave, stdout=stdout, text=True, start_new_session=stdout_too
        )
        os.close(slave)
        self.seen = ""

    def read_until(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} did not appear; the terminal shows:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode("utf-8", "replace")
                except OSError:  # the child closed the terminal
                    break
        assert text in self.seen, self.seen
        return self.seen

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        os.close(self.master)
        return self.proc.returncode, out


def test_run_without_a_terminal_fails_fast_with_the_agents_question_and_leaves_no_window(env, tmp_base):
    started = time.monotonic()
    result = without_terminal(
        env, tmp_base, "run", "--profile", "mock_developer", "--timeout", "120", "ask Shall I delete the build directory?"
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 60  # not the 120 s timeout
    assert "asks: Shall I delete the build directory? [choices: Yes / No]" in result.stderr
    assert "standard input is not a terminal" in result.stderr
    assert result.stdout == ""
    assert windows(env) == ""


def test_run_on_a_terminal_asks_the_question_and_types_the_answer(env, tmp_base):
    term = Terminal(
        sidecar("run", "--profile", "mock_developer", "--timeout", "120", "ask Shall I delete the build directory?"),
        env,
        str(tmp_base / "workspace"),
    )
    try:
        term.read_until("answer (a number or the text of a choice, then Enter)")
        assert "asks: Shall I delete the build directory?" in term.seen and "1) Yes" in term.seen
        term.type("1")
        code, out = term.finish()
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    assert code == 0, term.seen
    assert out.strip().startswith("answered:"), out
    assert windows(env) == ""


def test_a_failed_run_leaves_no_dead_window(env, tmp_base):
    result = without_terminal(env, tmp_base, "run", "--profile", "mock_developer", "fail the disk is full")
    assert result.returncode == 1 and "reported an error" in result.stderr
    assert windows(env) == ""


def test_the_demo_leaves_no_tmux_server_or_socket_behind(tmp_base):
    env = isolated_env(tmp_base)
    del env["CAO_TMUX_SOCKET"]  # the demo's own private server, as a user gets it
    env["TMUX_TMPDIR"] = str(tmp_base / "t")  # where tmux puts its sockets: ours alone
    (tmp_base / "t").mkdir()
    result = without_terminal(env, tmp_base, "demo")
    assert result.returncode == 0 and "Combined answer:" in result.stdout, result.stdout + result.stderr
    sockets = tmp_base / "t" / f"tmux-{os.getuid()}"
    assert sockets.is_dir()  # the demo did run its own server here
    assert list(sockets.iterdir()) == []


def test_a_bare_cao_sidecar_on_a_terminal_says_what_it_is_instead_of_waiting(env, tmp_base):
    master, slave = pty.openpty()
    proc = subprocess.Popen(sidecar(), env=env, stdin=slave, stderr=slave, stdout=subprocess.PIPE)
    os.close(slave)
    text = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            text += chunk
        elif proc.poll() is not None:
            break
    assert proc.wait(timeout=30) == 2
    os.close(master)
    hint = text.decode()
    assert "serves editors on stdin/stdout" in hint and "cao-sidecar demo" in hint and "cao-sidecar doctor" in hint


def test_cao_sidecar_with_a_pipe_still_serves_the_editor_protocol(env, tmp_base):
    body = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":null,"capabilities":{}}}'
    message = b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    exit_body = b'{"jsonrpc":"2.0","method":"exit"}'
    message += b"Content-Length: %d\r\n\r\n%s" % (len(exit_body), exit_body)
    result = subprocess.run(sidecar(), env=env, input=message, capture_output=True, timeout=60)
    assert b'"serverInfo"' in result.stdout


async def test_the_client_docstring_example_works_both_ways(env, tmp_base):
    import cao_client

    assert "async with CaoClient.start() as cao:" in cao_client.__doc__
    async with CaoClient.start(workspace=tmp_base / "workspace", env=env) as cao:
        answer = await cao.handoff("echo hi", profile="mock_developer")
        assert answer["output"] == "hi"
    assert cao._process.returncode is not None  # closed at the end of the block

    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        assert (await client.handoff("echo again", profile="mock_developer"))["output"] == "again"
    finally:
        await client.close()
