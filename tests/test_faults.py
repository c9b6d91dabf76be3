"""Faults: the tmux server dies; the editor stops reading for a while."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cao_client import CaoClient, CaoError
from conftest import agent_panes, isolated_env, kill_tmux
from test_recovery import transcript, wait_until


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


async def test_killing_the_tmux_server_reports_every_agent_exited_and_spawns_still_work(env, tmp_base):
    notes: list = []
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env, on_notification=lambda m, p: notes.append(p))
    try:
        agents = [(await client.spawn(p))["terminalId"] for p in ("mock_developer", "mock_reviewer", "mock_supervisor")]
        subprocess.run(["tmux", "-L", env["CAO_TMUX_SOCKET"], "kill-server"], check=True)

        def all_exited():
            return all(any(n.get("terminalId") == t and n.get("status") == "exited" for n in notes) for t in agents)

        await wait_until(all_exited, timeout=5)
        listed = {a["terminalId"]: a["status"] for a in await client.list_agents()}
        assert all(listed[t] == "exited" for t in agents)
        with pytest.raises(CaoError) as gone:
            await client.handoff("echo x", terminal_id=agents[0])
        assert gone.value.code == -31006
        with pytest.raises(CaoError) as gone:
            await client.send_message(agents[1], "hello?")
        assert gone.value.code == -31006
        # A new tmux server comes up for new agents, and they work.
        result = await client.handoff("echo alive again", profile="mock_developer")
        assert result["output"] == "alive again"
        fresh = (await client.spawn("mock_developer"))["terminalId"]
        # The exited agents' old pane ids may now belong to new panes: terminating an exited agent
        # must not touch them.
        for tid in agents:
            await client.terminate(tid)
        assert (await client.handoff("echo still here", terminal_id=fresh))["output"] == "still here"
    finally:
        await client.close()


def _frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def _read_frame(stdout: asyncio.StreamReader) -> dict:
    length = None
    while True:
        line = await stdout.readline()
        if line in (b"\r\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    assert length is not None
    return json.loads(await stdout.readexactly(length))


async def test_an_editor_that_stops_reading_loses_nothing_and_wedges_nothing(env, tmp_base):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cao_sidecar", "--stdio",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, limit=1 << 24,
    )  # fmt: skip
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(
            _frame(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {"rootUri": (tmp_base / "workspace").as_uri(), "capabilities": {}},
                }
            )
        )
        assert (await _read_frame(proc.stdout))["id"] == 1
        proc.stdin.write(_frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
        big = "x" * 400_000  # far more than a pipe holds
        proc.stdin.write(
            _frame(
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "cao/handoff",
                    "params": {"profile": "mock_developer", "message": "echo " + big},
                }
            )
        )
        proc.stdin.write(
            _frame(
                {
                    "jsonrpc": "2.0",
                    "id": 3,
                    "method": "cao/assign",
                    "params": {"profile": "mock_reviewer", "message": "echo assigned while nobody read"},
                }
            )
        )
        await proc.stdin.drain()
        # Nobody reads stdout now. The agents must still finish their work.
        state = Path(env["XDG_STATE_HOME"]) / "cao-sidecar" / "agents"

        def assigned_answered():
            for agent_dir in state.glob("*"):
                if any(
                    r.get("text") == "assigned while nobody read"
                    for r in transcript(env, agent_dir.name)
                    if r["type"] == "assistant"
                ):
                    return True
            return False

        await wait_until(assigned_answered, timeout=20)
        await asyncio.sleep(1.0)
        # Now read: every answer and notification is there, in one piece.
        seen: dict = {}
        completed = []
        statuses = 0
        while not (2 in seen and 3 in seen and completed):
            message = await asyncio.wait_for(_read_frame(proc.stdout), 10)
            if "id" in message:
                seen[message["id"]] = message
            elif message["method"] == "cao/workerCompleted":
                completed.append(message["params"])
            elif message["method"] == "cao/agentStatus":
                statuses += 1
        assert seen[2]["result"]["output"] == big
        assert completed[0]["output"] == "assigned while nobody read"
        assert statuses >= 8  # both workers' status changes were kept, not dropped
        proc.stdin.write(_frame({"jsonrpc": "2.0", "id": 4, "method": "cao/listAgents", "params": {}}))
        while (message := await asyncio.wait_for(_read_frame(proc.stdout), 10)).get("id") != 4:
            pass
        assert "agents" in message["result"]
    finally:
        proc.stdin.write(_frame({"jsonrpc": "2.0", "id": 9, "method": "shutdown"}))
        proc.stdin.write(_frame({"jsonrpc": "2.0", "method": "exit"}))
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()


# A CLI that outlives its tmux server a while: it ignores SIGHUP and is busy for 20 s (a real
# CLI may be slow to die, e.g. while it saves its session).
LINGERING_CLI = """trap '' HUP
printf 'lingering> '
while read -r line; do
  printf 'working...'
  sleep 20
  printf '\\r= done %s\\n' "$line"
  printf 'lingering> '
done"""

LINGERING_PROVIDER = {
    "command": ["/bin/sh", "-c", LINGERING_CLI],
    "status": [
        {"processing": "^working\\.\\.\\.$", "scope": "last_line"},
        {"idle": "^lingering>$", "scope": "last_line"},
    ],
    "input": "^lingering> \\S",
    "prompt": "^lingering>$",
    "answer": {"start": "^= ", "strip": "^= "},
}


async def _tmux(socket: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec("tmux", "-L", socket, *args, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0, args
    return out.decode()


async def test_a_busy_agent_whose_pane_id_a_new_tmux_server_reuses_is_reported_exited(env, tmp_base):
    """tmux numbers panes from %0 again after its server died. A busy agent whose process
    outlived the server (its exit not seen yet) while a new worker got its pane id must be
    reported exited, its queued message failed, and the new worker must not be taken for it
    (the chaos run that lost a supervisor: no event for it ever again)."""
    config = tmp_base / "config" / "cao-sidecar"
    (config / "providers").mkdir(parents=True, exist_ok=True)
    (config / "providers" / "lingering.json").write_text(json.dumps(LINGERING_PROVIDER))
    (config / "agents").mkdir(parents=True, exist_ok=True)
    (config / "agents" / "lingering_dev.md").write_text(
        "---\nname: lingering_dev\ndescription: slow to die\nprovider: lingering\n---\nYou linger.\n"
    )
    notes: list = []
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env, on_notification=lambda m, p: notes.append(p))
    socket = env["CAO_TMUX_SOCKET"]
    lingering_pid = None
    try:
        busy = (await client.spawn("lingering_dev"))["terminalId"]
        await client.send_message(busy, "go")
        await wait_until(lambda: any(n.get("terminalId") == busy and n.get("status") == "processing" for n in notes), 10)
        queued = await client.send_message(busy, "then this")
        assert queued["state"] == "queued"
        ((old_pane, pid),) = [line.split() for line in agent_panes(socket, "#{pane_id} #{pane_pid}")]
        lingering_pid = int(pid)
        await _tmux(socket, "kill-server")
        await asyncio.sleep(0.3)  # the CLI still runs: no exit to see
        fresh = (await client.spawn("mock_developer"))["terminalId"]
        # The new server gave the new worker the busy agent's pane id.
        assert agent_panes(socket) == [old_pane]

        await wait_until(lambda: any(n.get("terminalId") == busy and n.get("status") == "exited" for n in notes), 10)
        listed = {a["terminalId"]: a["status"] for a in await client.list_agents()}
        assert listed[busy] == "exited"
        assert (await client.handoff("echo mine", terminal_id=fresh))["output"] == "mine"
        with pytest.raises(CaoError) as gone:
            await client.send_message(busy, "hello?")
        assert gone.value.code == -31006
        assert (await client.handoff("echo still mine", terminal_id=fresh))["output"] == "still mine"
    finally:
        if lingering_pid is not None:
            try:
                os.killpg(lingering_pid, signal.SIGKILL)  # the CLI and its sleep (it led its session)
            except ProcessLookupError:
                pass
        await client.close()
