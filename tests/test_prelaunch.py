"""A front end launches its project's orchestrator before it loads the rest (daemon.prelaunch).

Real processes: `cao-sidecar --stdio` on pipes, its orchestrator, tmux. The first message is read
blocking, before asyncio: any input that is not a well-formed `initialize` must still get the
answers it got before, never a hang, and the project must be the one `initialize` names.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cao_sidecar.daemon import prelaunch
from conftest import isolated_env, orchestrators_on

pytestmark = [pytest.mark.timeout(90)]


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def initialize_message(workspace: Path, msg_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "initialize", "params": {"rootUri": workspace.as_uri(), "capabilities": {}}}


class Forwarder:
    """`cao-sidecar --stdio` with pipes, read message by message."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, env: dict[str, str], cwd: Path) -> "Forwarder":
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cao_sidecar", "--stdio", env=env, cwd=cwd,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(process)

    def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)

    async def read(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        length = None
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            assert line, "the forwarder closed its stdout"
            if not line.strip():
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        assert length is not None
        return json.loads(await asyncio.wait_for(self.process.stdout.readexactly(length), timeout))

    async def answer(self, msg_id: int, timeout: float = 30.0) -> dict[str, Any]:
        while True:
            message = await self.read(timeout)
            if message.get("id") == msg_id and "method" not in message:
                return message

    async def close(self) -> str:
        """Ends the connection (LSP exit); the forwarder's stderr."""
        if self.process.returncode is None:
            self.send(frame({"jsonrpc": "2.0", "method": "exit"}))
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode(errors="replace")


@pytest.fixture
def env(team_env):
    return team_env


def served_project(env: dict[str, str]) -> str:
    info = Path(env["XDG_STATE_HOME"]) / "cao-sidecar" / f"orchestrator-{env['CAO_TMUX_SOCKET']}.json"
    return json.loads(info.read_text())["project"]


async def test_the_orchestrator_is_launched_before_initialize_is_answered(env, tmp_base):
    workspace = tmp_base / "workspace"
    workspace.mkdir(exist_ok=True)
    env["CAO_STARTUP_TRACE"] = "1"
    forwarder = await Forwarder.start(env, tmp_base)
    forwarder.send(frame(initialize_message(workspace)))
    assert "capabilities" in (await forwarder.answer(1))["result"]
    forwarder.send(frame({"jsonrpc": "2.0", "id": 2, "method": "cao/listAgents", "params": {}}))
    assert (await forwarder.answer(2))["result"]["agents"] == []
    assert served_project(env) == str(workspace.resolve())
    err = await forwarder.close()
    marks = [line.split()[1:3] for line in err.splitlines() if line.startswith("startup-trace ")]
    names = [" ".join(m) for m in marks]
    # Before: the forwarder loaded asyncio and answered `initialize`, then launched it.
    assert names.index("orchestrator launched") < names.index("initialize answered"), err[-3000:]


async def test_a_request_before_initialize_is_refused_and_the_project_is_initializes(env, tmp_base):
    workspace = tmp_base / "workspace"
    workspace.mkdir(exist_ok=True)
    elsewhere = tmp_base / "elsewhere"  # the forwarder's own folder: not the project
    elsewhere.mkdir()
    forwarder = await Forwarder.start(env, elsewhere)
    forwarder.send(frame({"jsonrpc": "2.0", "id": 1, "method": "cao/listAgents", "params": {}}))
    assert (await forwarder.answer(1))["error"]["code"] == -32002  # ServerNotInitialized, as before
    forwarder.send(frame(initialize_message(workspace, 2)))
    assert "capabilities" in (await forwarder.answer(2))["result"]
    forwarder.send(frame({"jsonrpc": "2.0", "id": 3, "method": "cao/listAgents", "params": {}}))
    assert "agents" in (await forwarder.answer(3))["result"]
    assert served_project(env) == str(workspace.resolve())
    await forwarder.close()


@pytest.mark.parametrize(
    "bad",
    [
        b"garbage without a colon\r\n\r\n",
        b"Content-Type: text/plain\r\n\r\n",  # no Content-Length
        b"Content-Length: 7\r\n\r\nnotjson",
        b"Content-Length: 2\r\n\r\n[]",
    ],
    ids=["garbage", "no-length", "bad-json", "not-an-object"],
)
async def test_bad_first_input_gets_its_error_and_initialize_still_works(env, tmp_base, bad):
    workspace = tmp_base / "workspace"
    workspace.mkdir(exist_ok=True)
    forwarder = await Forwarder.start(env, tmp_base)
    forwarder.send(bad)  # and nothing more until it answers: a read waiting for more would hang here
    error = await forwarder.read(timeout=20)
    assert error["id"] is None and error["error"]["code"] in (-32700, -32600), error
    forwarder.send(frame(initialize_message(workspace, 5)))
    assert "capabilities" in (await forwarder.answer(5))["result"]
    forwarder.send(frame({"jsonrpc": "2.0", "id": 6, "method": "cao/listAgents", "params": {}}))
    assert "agents" in (await forwarder.answer(6))["result"]
    await forwarder.close()


async def test_an_editor_that_leaves_after_initialize_leaves_no_orchestrator_behind(env, tmp_base):
    workspace = tmp_base / "workspace"
    workspace.mkdir(exist_ok=True)
    forwarder = await Forwarder.start(env, tmp_base)
    forwarder.send(frame(initialize_message(workspace)))
    await forwarder.answer(1)
    await forwarder.close()
    deadline = time.monotonic() + 15
    while orchestrators_on(env["CAO_TMUX_SOCKET"]) and time.monotonic() < deadline:  # noqa: ASYNC110 - another process
        await asyncio.sleep(0.1)
    assert orchestrators_on(env["CAO_TMUX_SOCKET"]) == []


# ---- reading the first message: never waiting for what a client sends only after an answer ----


def read_with_timeout(fd: int, timeout: float = 5.0) -> tuple[bytes, Any]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(prelaunch.read_first_message(fd)), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "read_first_message waited for more input"
    return result[0]


@pytest.mark.parametrize(
    "data",
    [
        b"hello\n",
        b"Content-Length: 10\r\n\r\n{}",  # short body, then the writer waits: ends at the pipe's close only
        b"\r\n",
        b"Content-Length: x\r\n\r\n",
        b"Content-Length: 99999999999\r\n\r\n",
    ],
    ids=["garbage-line", "short", "blank", "bad-length", "huge"],
)
def test_read_first_message_returns_what_it_read_at_bad_input(data):
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
        if data.startswith(b"Content-Length: 10"):
            os.close(write_end)  # the one case that waits for more: a body still to come
            write_end = -1
        got, message = read_with_timeout(read_end)
        assert message is None and got == data
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_read_first_message_reads_one_message_split_over_writes_and_keeps_what_follows():
    read_end, write_end = os.pipe()
    first = frame(initialize_message(Path("/tmp"), 7))
    after = frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    try:
        os.write(write_end, first[:10])
        threading.Timer(0.2, lambda: os.write(write_end, first[10:] + after)).start()
        got, message = read_with_timeout(read_end)
        assert message is not None and message["id"] == 7 and prelaunch.is_initialize(message)
        assert got in (first, first + after)  # what it read past the message is handed on, not lost
    finally:
        os.close(read_end)
        os.close(write_end)


def test_read_first_message_of_a_non_blocking_stdin_does_not_fail():
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        got, message = read_with_timeout(read_end)
        assert (got, message) == (b"", None)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_root_is_only_given_for_initialize():
    assert not prelaunch.is_initialize({"jsonrpc": "2.0", "id": 1, "method": "shutdown"})
    assert not prelaunch.is_initialize({"jsonrpc": "2.0", "method": "initialize"})  # a notification
    assert prelaunch.workspace_root(initialize_message(Path("/srv/x y"))) == "/srv/x y"


async def test_an_mcp_host_front_end_launches_the_orchestrator_of_its_project(env, tmp_base):
    workspace = tmp_base / "workspace"
    workspace.mkdir(exist_ok=True)
    env["CAO_STARTUP_TRACE"] = "1"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cao_sidecar", "mcp", "--project", str(workspace), env=env, cwd=tmp_base,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
    process.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}).encode() + b"\n")
    answer = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))
    assert answer["id"] == 1 and "serverInfo" in answer["result"], answer
    assert served_project(env) == str(workspace.resolve())
    process.stdin.close()
    await asyncio.wait_for(process.wait(), 30)
    err = (await process.stderr.read()).decode(errors="replace")
    assert "startup-trace orchestrator launched" in err, err[-2000:]  # by the front end's first act


def test_an_mcp_host_front_end_with_a_missing_project_says_so(tmp_base):
    env = isolated_env(tmp_base)
    done = subprocess.run(
        [sys.executable, "-m", "cao_sidecar", "mcp", "--project", str(tmp_base / "nowhere")],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "is not a directory" in done.stderr, done.stderr
    assert orchestrators_on(env["CAO_TMUX_SOCKET"]) == []
