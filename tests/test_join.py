"""One team per project (issue 17): editors, scripts and front ends join one orchestrator.

Real processes: pytest-lsp editors and `cao_client` scripts start `cao-sidecar --stdio`
(forwarders), which start or join the project's orchestrator (`cao-sidecar serve`); real tmux,
real mock agents.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_lsp import LanguageClient

from cao_client import CaoClient
from conftest import (
    Sidecar,
    initialize,
    isolated_env,
    kill_orchestrator,
    kill_tmux,
    orchestrator_pid,
    orchestrators_on,
    request,
    sidecar_config,
)
from test_editor_common import eventually, transcript

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture
def env(team_env):
    return team_env


class Editors:
    """pytest-lsp editors of one project (same env, same workspace), each recording its own
    notifications and questions."""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base = base
        self.env = env
        self.open: list[tuple[LanguageClient, Sidecar]] = []

    async def start(self) -> tuple[LanguageClient, Sidecar]:
        config, sidecar = sidecar_config(self.base, self.env)
        client = await config.start()
        await initialize(client, sidecar)
        self.open.append((client, sidecar))
        return client, sidecar

    async def close(self) -> None:
        for client, _sidecar in self.open:
            server = client._server
            if server is None or server.returncode is not None:
                continue
            try:
                await asyncio.wait_for(client.shutdown_session(), 10)
            except Exception:  # noqa: BLE001 - a killed front end
                server.kill()
                await server.wait()
            await client.stop()


@pytest.fixture
async def editors(tmp_base, env):
    group = Editors(tmp_base, env)
    yield group
    await group.close()


async def script(env: dict[str, str], workspace: Path, notes: list | None = None) -> CaoClient:
    return await CaoClient.start(
        workspace=workspace, env=env, on_notification=(lambda m, p: notes.append((m, p))) if notes is not None else None
    )


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except OSError:
        return True


async def test_two_editors_see_the_same_agents_and_each_others_actions_live(editors: Editors):
    a, a_seen = await editors.start()
    b, b_seen = await editors.start()
    tid = (await request(a, "cao/spawn", {"profile": "mock_developer"}))["terminalId"]
    await b_seen.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "idle")
    result = await request(b, "cao/handoff", {"terminalId": tid, "message": "echo from b"})
    assert result["output"] == "from b"
    await a_seen.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "completed")
    assert a_seen.statuses(tid)[-3:] == b_seen.statuses(tid)[-3:] == ["idle", "processing", "completed"]
    listed_a = (await request(a, "cao/listAgents", {}))["agents"]
    listed_b = (await request(b, "cao/listAgents", {}))["agents"]
    assert [x["terminalId"] for x in listed_a] == [x["terminalId"] for x in listed_b] == [tid]
    assert a._server.pid != b._server.pid and len(orchestrators_on(a_seen.socket)) == 1


async def test_a_script_joins_the_editors_team_and_they_see_its_work(editors: Editors, env, tmp_base):
    a, a_seen = await editors.start()
    tid = (await request(a, "cao/spawn", {"profile": "mock_developer"}))["terminalId"]
    cao = await script(env, tmp_base / "workspace")
    try:
        assert tid in {x["terminalId"] for x in await cao.list_agents()}
        worker = (await cao.assign("mock_reviewer", "echo reviewed by the script"))["terminalId"]
        done = await a_seen.wait_for("cao/workerCompleted", lambda p: p["terminalId"] == worker, 30)
        assert done["output"] == "reviewed by the script"
    finally:
        await cao.close()
    assert tid in {x["terminalId"] for x in (await request(a, "cao/listAgents", {}))["agents"]}


async def test_a_question_goes_to_both_editors_and_is_answered_once(editors: Editors):
    a, a_seen = await editors.start()
    b, b_seen = await editors.start()
    withdrawn = asyncio.Event()

    async def never_clicks(params: Any) -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            withdrawn.set()  # the sidecar sent $/cancelRequest: answered elsewhere
            raise

    b_seen.answer_message = never_clicks
    clicked = asyncio.Event()

    async def clicks_no(params: Any) -> Any:
        await b_seen.wait_for("window/showMessageRequest", lambda p: "Merge now?" in p["message"])  # both asked
        clicked.set()
        return "No"

    a_seen.answer_message = clicks_no
    tid = (await request(a, "cao/spawn", {"profile": "mock_developer"}))["terminalId"]
    await request(b, "cao/sendMessage", {"terminalId": tid, "message": "ask Merge now?"})
    await asyncio.wait_for(clicked.wait(), 20)
    await asyncio.wait_for(withdrawn.wait(), 10)
    await eventually(
        lambda: [r["text"] for r in transcript(a_seen, tid) if r["type"] == "user"] == ["ask Merge now?", "n"],
        what="the answer typed once",
    )
    for seen in (a_seen, b_seen):  # every editor learns the question is over
        await seen.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["previousStatus"] == "waiting_user_answer")
    await asyncio.sleep(0.5)
    assert [r["text"] for r in transcript(a_seen, tid) if r["type"] == "user"] == ["ask Merge now?", "n"]
    assert len(a_seen.notifications["window/showMessageRequest"]) == len(b_seen.notifications["window/showMessageRequest"]) == 1


async def test_killing_a_front_end_loses_nothing_and_the_others_carry_on(editors: Editors, env, tmp_base):
    a, a_seen = await editors.start()
    b, b_seen = await editors.start()
    orchestrator = orchestrator_pid(env)
    worker = (await request(a, "cao/assign", {"profile": "mock_developer", "message": "sleep 1.5 finished anyway"}))["terminalId"]
    os.kill(a._server.pid, signal.SIGKILL)  # the editor's sidecar process: a forwarder
    await asyncio.wait_for(a._server.wait(), 10)
    done = await b_seen.wait_for("cao/workerCompleted", lambda p: p["terminalId"] == worker, 30)
    assert done["output"] == "finished anyway"
    assert orchestrator_pid(env) == orchestrator
    assert worker in {x["terminalId"] for x in (await request(b, "cao/listAgents", {}))["agents"]}
    stats = await request(b, "cao/stats", {})
    assert stats["liveAgents"] >= 1


async def test_killing_the_orchestrator_ends_every_front_end_and_a_restart_adopts_the_agents(editors: Editors, env, tmp_base):
    a, a_seen = await editors.start()
    b, _b_seen = await editors.start()
    cao = await script(env, tmp_base / "workspace")
    tid = (await cao.spawn("mock_developer"))["terminalId"]
    first = kill_orchestrator(env)
    for process in (a._server, b._server, cao._process):
        await asyncio.wait_for(process.wait(), 10)  # each front end sees the end and exits
    again = await script(env, tmp_base / "workspace")
    try:
        assert tid in {x["terminalId"] for x in await again.list_agents()}  # adopted
        assert orchestrator_pid(env) != first
        assert (await again.handoff("echo after the crash", terminal_id=tid))["output"] == "after the crash"
    finally:
        await again.close()


async def test_the_orchestrator_outlives_its_front_ends_while_agents_run_then_ends(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await script(env, workspace)
    tid = (await first.spawn("mock_developer"))["terminalId"]
    pid = orchestrator_pid(env)
    await first.close()  # LSP shutdown + exit: this connection only
    await asyncio.sleep(2.0)  # longer than the grace (1 s here)
    assert not gone(pid), "the orchestrator ended while an agent ran"
    second = await script(env, workspace)
    await second.terminate(tid)
    assert orchestrator_pid(env) == pid
    await second.close()
    await eventually(lambda: gone(pid), timeout=10, what="the orchestrator ends: no connection, no agent")
    socket_dir = Path(env["XDG_STATE_HOME"]) / "cao-sidecar"
    assert not (socket_dir / f"orchestrator-{env['CAO_TMUX_SOCKET']}.sock").exists()


async def test_cao_shutdown_ends_the_orchestrator_for_every_client(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await script(env, workspace)
    second = await script(env, workspace)
    tid = (await first.spawn("mock_developer"))["terminalId"]
    pid = orchestrator_pid(env)
    assert await first.request("cao/shutdown", {"terminateAgents": True}) == {}
    for client in (first, second):
        await asyncio.wait_for(client._process.wait(), 10)
    await eventually(lambda: gone(pid), timeout=10, what="the orchestrator ends")
    windows = subprocess.run(
        ["tmux", "-L", env["CAO_TMUX_SOCKET"], "list-windows", "-a", "-F", "#{window_name}"], capture_output=True, text=True
    ).stdout
    assert tid not in windows


async def test_front_ends_starting_at_once_get_one_orchestrator(env, tmp_base):
    workspace = tmp_base / "workspace"
    clients = await asyncio.gather(*(script(env, workspace) for _ in range(4)))
    try:
        tids = [(await clients[0].spawn("mock_developer"))["terminalId"]]
        for client in clients:
            assert [a["terminalId"] for a in await client.list_agents()] == tids
        assert len(orchestrators_on(env["CAO_TMUX_SOCKET"])) == 1
    finally:
        for client in clients:
            await client.close()


async def test_socket_is_private_and_a_planted_symlink_is_not_followed(env, tmp_base):
    state = Path(env["XDG_STATE_HOME"]) / "cao-sidecar"
    state.mkdir(parents=True, mode=0o700)
    target = tmp_base / "victim"
    target.write_text("keep me")
    sock_path = state / f"orchestrator-{env['CAO_TMUX_SOCKET']}.sock"
    sock_path.symlink_to(target)
    cao = await script(env, tmp_base / "workspace")
    try:
        assert await cao.list_agents() == []
        info = os.lstat(sock_path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        assert target.read_text() == "keep me"
    finally:
        await cao.close()


async def test_connections_that_come_and_go_leave_nothing_behind(env, tmp_base):
    workspace = tmp_base / "workspace"
    watcher = await script(env, workspace)
    try:
        tid = (await watcher.spawn("mock_developer"))["terminalId"]
        await asyncio.sleep(0.5)
        before = await watcher.request("cao/stats", {})
        for _ in range(8):
            passing = await script(env, workspace)
            await passing.list_agents()
            await passing.close()
        # A status change after they left goes to the one still connected only (nothing raises).
        assert (await watcher.handoff("echo still here", terminal_id=tid))["output"] == "still here"
        await asyncio.sleep(0.5)
        after = await watcher.request("cao/stats", {})
        assert after["tasks"] <= before["tasks"] + 2, (before, after)
        assert after["openFiles"] <= before["openFiles"] + 2, (before, after)
    finally:
        await watcher.close()


async def test_a_joining_front_end_answers_initialize_fast(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await script(env, workspace)
    try:
        started = time.monotonic()
        second = await script(env, workspace)
        joined = time.monotonic() - started
        await second.close()
        assert joined < 5.0, joined  # generous: a loaded CI machine; bench/bench_join.py measures it
    finally:
        await first.close()


async def test_the_socket_speaks_lsp_without_a_preamble_and_refuses_an_unknown_door(env, tmp_base):
    import json

    holder = await script(env, tmp_base / "workspace")
    try:
        await holder.list_agents()
        path = str(Path(env["XDG_STATE_HOME"]) / "cao-sidecar" / f"orchestrator-{env['CAO_TMUX_SOCKET']}.sock")
        reader, writer = await asyncio.open_unix_connection(path)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}).encode()
        writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        header = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        answer = json.loads(await reader.readexactly(int(header.split(b":")[1].strip())))
        assert answer["id"] == 1 and answer["result"]["serverInfo"]["name"] == "cao-sidecar"
        writer.close()
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"cao-door: telnet\n")
        line = await asyncio.wait_for(reader.readline(), 10)
        assert b"unknown door 'telnet'" in line
        assert await asyncio.wait_for(reader.read(), 10) == b""  # and closed
        writer.close()
        assert await holder.list_agents() == []
    finally:
        await holder.close()


async def test_a_state_directory_too_deep_for_a_socket_address_still_works(tmp_base):
    """A Unix socket address holds about 104 bytes: a deep XDG_STATE_HOME (a long home, a build
    tree) gets short stand-ins in a private directory of ours, found by every process alike."""
    deep = tmp_base / ("d" * 60) / ("e" * 40)
    env = isolated_env(deep)
    env.pop("XDG_RUNTIME_DIR", None)
    assert len(env["XDG_STATE_HOME"]) > 110
    editors = Editors(deep, env)
    try:
        a, a_seen = await editors.start()
        # the lead's handoff goes through the agent face (MCP), the editor's through the orchestrator socket
        lead = (await request(a, "cao/spawn", {"profile": "mock_supervisor"}))["terminalId"]
        result = await request(a, "cao/handoff", {"terminalId": lead, "message": "handoff mock_reviewer echo deep"}, timeout=30)
        assert "deep" in result["output"], result
        cao = await script(env, deep / "workspace")
        try:
            assert lead in {x["terminalId"] for x in await cao.list_agents()}
        finally:
            await cao.close()
        stand_ins = Path(f"/tmp/cao-sidecar-{os.getuid()}")
        assert stat.S_IMODE(stand_ins.lstat().st_mode) == 0o700
        ours = [p for p in stand_ins.iterdir() if p.is_socket()]
        assert ours and all(stat.S_IMODE(p.lstat().st_mode) == 0o600 for p in ours)
        assert len(orchestrators_on(a_seen.socket)) == 1
    finally:
        await editors.close()
        kill_tmux(env["CAO_TMUX_SOCKET"])
