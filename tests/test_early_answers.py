"""A cold orchestrator answers an editor's first cao/* requests before pygls has loaded
(cao_sidecar.daemon.early, issue 15's fast first spawn), with the pygls door's checks and codes;
other requests wait for pygls and are answered too; notifications are not held back.

Real processes: the `--stdio` forwarder starts the project's orchestrator (start-up milestones in
its log, CAO_STARTUP_TRACE=1); the client speaks LSP framing itself and sends everything at once,
as an editor that spawns right after `initialize` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from conftest import isolated_env, kill_tmux

pytestmark = [pytest.mark.timeout(90)]


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any]:
    length = None
    while (line := (await reader.readline()).strip()) or length is None:
        if not line and length is None:
            raise EOFError("the sidecar closed its stdout")
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return json.loads(await reader.readexactly(length))


@contextlib.asynccontextmanager
async def cold_forwarder(tmp_base: Path, **extra_env: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str]]]:
    """`cao-sidecar --stdio` on a cold project (its orchestrator starts with it), ended at the end."""
    env = isolated_env(tmp_base)
    env.update(CAO_STARTUP_TRACE="1", CAO_ORCHESTRATOR_GRACE="1", **extra_env)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cao_sidecar", "--stdio", "--log-level", "warning",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=tmp_base / "workspace",
    )  # fmt: skip
    try:
        yield process, env
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        kill_tmux(env["CAO_TMUX_SOCKET"])


def read_or_empty(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:  # not written yet
        return ""


def orchestrator_marks(tmp_base: Path, env: dict[str, str]) -> list[str]:
    """The orchestrator's start-up milestones, in order."""
    log = (tmp_base / "state" / "cao-sidecar" / f"orchestrator-{env['CAO_TMUX_SOCKET']}.log").read_text()
    return [name for _at, name in sorted((float(at), name) for name, at in re.findall(r"startup-trace (.+?) at ([0-9.]+)", log))]


async def test_the_first_requests_are_answered_before_pygls_loads_and_the_rest_after(tmp_base: Path):
    workspace = tmp_base / "workspace"
    async with cold_forwarder(tmp_base, CAO_MOCK_DELAY_MS="20000") as (process, env):
        await first_requests(process, workspace)
    names = orchestrator_marks(tmp_base, env)
    # The spawn was answered by the early door, and pygls loaded only after it.
    assert "answered before pygls" in names and "editor libraries loaded" in names, names
    assert names.index("answered before pygls") < names.index("editor libraries loaded"), names


async def first_requests(process: asyncio.subprocess.Process, workspace: Path) -> None:
    assert process.stdin is not None and process.stdout is not None
    seen: list[dict[str, Any]] = []

    async def until(check: Any) -> dict[str, Any]:
        for message in seen:
            if check(message):
                return message
        while True:
            message = await asyncio.wait_for(read_message(process.stdout), 60)
            seen.append(message)
            if check(message):
                return message

    initialize = {"processId": os.getpid(), "rootUri": workspace.as_uri(), "capabilities": {}}
    for message in (
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "cao/spawn", "params": {"profile": 5}},
        {"jsonrpc": "2.0", "id": 3, "method": "cao/spawn", "params": {"profile": "mock_developer"}},
        {"jsonrpc": "2.0", "id": 5, "method": "cao/handoff", "params": {"profile": "mock_developer", "message": "slow work"}},
        # Served by pygls (a command runs its cao/ method): waits for it, in order.
        {"jsonrpc": "2.0", "id": 4, "method": "workspace/executeCommand",
         "params": {"command": "cao-sidecar.listAgents", "arguments": [{}]}},
    ):  # fmt: skip
        process.stdin.write(frame(message))
    await process.stdin.drain()

    bad = await until(lambda m: m.get("id") == 2)
    assert bad["error"]["code"] == -32602 and bad["error"]["data"]["kind"] == "invalidParams"
    assert "profile" in bad["error"]["message"]
    spawned = (await until(lambda m: m.get("id") == 3))["result"]
    assert spawned["status"] == "idle" and spawned["provider"] == "mock"
    tid = spawned["terminalId"]
    # Its state reached the editor before the answer did (not held until pygls loaded).
    idle_at = next(
        i for i, m in enumerate(seen)
        if m.get("method") == "cao/agentStatus" and m["params"]["terminalId"] == tid and m["params"]["status"] == "idle"
    )  # fmt: skip
    assert idle_at < seen.index(next(m for m in seen if m.get("id") == 3))
    listed = (await until(lambda m: m.get("id") == 4))["result"]
    assert tid in [a["terminalId"] for a in listed["agents"]]

    # A long request taken early (its worker works for 20 s) can be cancelled like any other.
    await until(lambda m: m.get("method") == "cao/agentStatus" and m["params"]["status"] == "processing")
    process.stdin.write(frame({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 5}}))
    cancelled = await until(lambda m: m.get("id") == 5)
    assert cancelled["error"]["code"] == -32800

    process.stdin.write(frame({"jsonrpc": "2.0", "id": 6, "method": "cao/shutdown", "params": {"terminateAgents": True}}))
    await until(lambda m: m.get("id") == 6)
    process.stdin.close()
    await asyncio.wait_for(process.wait(), 30)


async def test_a_short_lived_client_shuts_down_without_waiting_for_pygls(tmp_base: Path):
    """A command-line verb or a script asks one thing and leaves: its `shutdown` is answered early too."""
    async with cold_forwarder(tmp_base) as (process, env):
        assert process.stdin is not None and process.stdout is not None
        initialize = {"processId": os.getpid(), "rootUri": (tmp_base / "workspace").as_uri(), "capabilities": {}}
        process.stdin.write(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize}))
        process.stdin.write(frame({"jsonrpc": "2.0", "id": 2, "method": "cao/listAgents", "params": {}}))
        process.stdin.write(frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}))
        process.stdin.write(frame({"jsonrpc": "2.0", "id": 4, "method": "cao/listAgents", "params": {}}))
        await process.stdin.drain()
        answers = {}
        while len(answers) < 4:
            message = await asyncio.wait_for(read_message(process.stdout), 60)
            if "id" in message:
                answers[message["id"]] = message
        assert answers[2]["result"] == {"agents": []} and answers[3]["result"] is None
        assert answers[4]["error"]["code"] == -32600  # after shutdown: only `exit`
        process.stdin.write(frame({"jsonrpc": "2.0", "method": "exit"}))
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 30)
    names = orchestrator_marks(tmp_base, env)
    assert names.count("answered before pygls") >= 3, names
    if "editor libraries loaded" in names:
        assert names.index("answered before pygls") < names.index("editor libraries loaded"), names


async def test_the_mcp_sdk_loads_after_a_first_spawn_not_beside_it(tmp_base: Path):
    """About a second of imports under one GIL slowed the first spawn: they start once it is answered."""
    async with cold_forwarder(tmp_base) as (process, env):
        assert process.stdin is not None and process.stdout is not None
        initialize = {"processId": os.getpid(), "rootUri": (tmp_base / "workspace").as_uri(), "capabilities": {}}
        process.stdin.write(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize}))
        process.stdin.write(frame({"jsonrpc": "2.0", "id": 2, "method": "cao/spawn", "params": {"profile": "mock_developer"}}))
        await process.stdin.drain()
        while (message := await asyncio.wait_for(read_message(process.stdout), 60)).get("id") != 2:
            pass
        assert message["result"]["status"] == "idle"
        log = tmp_base / "state" / "cao-sidecar" / f"orchestrator-{env['CAO_TMUX_SOCKET']}.log"
        while "agent face serving" not in read_or_empty(log):  # noqa: ASYNC110 - another process's log
            await asyncio.sleep(0.1)
        process.stdin.write(frame({"jsonrpc": "2.0", "id": 3, "method": "cao/shutdown", "params": {"terminateAgents": True}}))
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 30)
    names = orchestrator_marks(tmp_base, env)
    assert names.index("agent ready") < names.index("answered before pygls") < names.index("agent face libraries asked"), names


async def test_a_long_first_request_keeps_neither_the_mcp_server_nor_the_file_watch_waiting(tmp_base: Path):
    """The early hold is capped: a first handoff's worker may call tools, and files change, before it ends."""
    workspace = tmp_base / "workspace"
    async with cold_forwarder(tmp_base, CAO_MOCK_DELAY_MS="30000") as (process, env):
        assert process.stdin is not None and process.stdout is not None
        initialize = {"processId": os.getpid(), "rootUri": workspace.as_uri(), "capabilities": {}}
        handoff = {"profile": "mock_developer", "message": "slow work"}
        process.stdin.write(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize}))
        process.stdin.write(frame({"jsonrpc": "2.0", "id": 2, "method": "cao/handoff", "params": handoff}))
        await process.stdin.drain()
        log = tmp_base / "state" / "cao-sidecar" / f"orchestrator-{env['CAO_TMUX_SOCKET']}.log"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while "agent face serving" not in read_or_empty(log):
            assert loop.time() < deadline, "the MCP server waited for the first request to end"
            await asyncio.sleep(0.1)
        # A profile saved while the handoff still runs is seen (the watch started meanwhile).
        agents = workspace / ".cao" / "agents"
        agents.mkdir(parents=True, exist_ok=True)
        (agents / "late_helper.md").write_text("---\nname: late_helper\nprovider: mock\n---\nYou help.\n")
        seen: list[dict[str, Any]] = []
        next_id = 10
        while True:
            process.stdin.write(frame({"jsonrpc": "2.0", "id": next_id, "method": "cao/listProfiles", "params": {}}))
            await process.stdin.drain()
            while (message := await asyncio.wait_for(read_message(process.stdout), 60)).get("id") != next_id:
                seen.append(message)
            if "late_helper" in [p["name"] for p in message["result"]["profiles"]]:
                break
            assert loop.time() < deadline, "the profile saved during the first request was not seen"
            next_id += 1
            await asyncio.sleep(0.2)
        assert not any(m.get("id") == 2 for m in seen), "the handoff ended: the test proves nothing"
        process.stdin.write(frame({"jsonrpc": "2.0", "id": 3, "method": "cao/shutdown", "params": {"terminateAgents": True}}))
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 30)
