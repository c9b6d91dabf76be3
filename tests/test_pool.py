"""Warm workers (a profile's `pool: N`, core.pool) on the real sidecar process, real tmux and the
mock agent: they are kept ready, hidden from the user's agents, fresh for each task, replaced
after use, limited by the caps, and gone (window and process) after profile removal, shutdown
and the orchestrator's idle end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cao_client import CaoClient
from cao_client.client import CaoError
from conftest import isolated_env, kill_orchestrator, kill_tmux, orchestrator_pid

pytestmark = pytest.mark.asyncio

WARM = "---\nname: warm\ndescription: a warm mock worker\nprovider: mock\npool: {n}\n---\nA warm mock worker.\n"
OTHER = "---\nname: warm_other\ndescription: another warm mock\nprovider: mock\npool: 2\n---\nAnother.\n"


@pytest.fixture
def env(tmp_base: Path):
    env = isolated_env(tmp_base)
    env["CAO_ORCHESTRATOR_GRACE"] = "0.5"
    (tmp_base / "workspace" / ".cao" / "agents").mkdir(parents=True)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


def write_profile(workspace: Path, name: str, text: str) -> Path:
    path = workspace / ".cao" / "agents" / f"{name}.md"
    path.write_text(text)
    return path


def panes(env: dict[str, str]) -> dict[str, int]:
    """Window name -> pane pid on the test's tmux server (empty once it is gone)."""
    result = subprocess.run(
        ["tmux", "-L", env["CAO_TMUX_SOCKET"], "list-panes", "-a", "-F", "#{window_name} #{pane_pid}"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    return {name: int(pid) for name, pid in (line.split() for line in result.stdout.splitlines())}


def alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except OSError:
        return False


async def warm(cao: CaoClient, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait until exactly `count` warm workers are idle (ready); return them."""
    deadline = time.monotonic() + timeout
    while True:
        agents = (await cao.request("cao/listAgents", {"includePooled": True}))["agents"]
        pooled = [a for a in agents if a["pooled"]]
        if len(pooled) == count and all(a["status"] == "idle" for a in pooled):
            return pooled
        assert time.monotonic() < deadline, agents
        await asyncio.sleep(0.1)


async def gone(pids: list[int], env: dict[str, str], names: list[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) or set(names) & set(panes(env)):
        assert time.monotonic() < deadline, (pids, [p for p in pids if alive(p)], panes(env))
        await asyncio.sleep(0.1)


async def test_warm_workers_are_hidden_fresh_replaced_and_capped(env, tmp_base):
    env["CAO_POOL_MAX_WORKERS"] = "3"
    workspace = tmp_base / "workspace"
    write_profile(workspace, "warm", WARM.format(n=2))
    write_profile(workspace, "warm_other", OTHER)
    notes: list[tuple[str, Any]] = []
    async with CaoClient.start(workspace=workspace, env=env, on_notification=lambda m, p: notes.append((m, p))) as cao:
        pooled = await warm(cao, 3)  # 2 + 2 asked for, 3 allowed in all
        await asyncio.sleep(1.0)
        assert len(await warm(cao, 3)) == 3, "the global cap was exceeded"
        by_id = {a["terminalId"]: a for a in pooled}
        # Not the user's: not listed, not counted, never announced, not addressable.
        assert await cao.list_agents() == []
        stats = await cao.request("cao/stats", {})
        assert (stats["agents"], stats["liveAgents"]) == (0, 0), stats
        assert not [p for m, p in notes if m == "cao/agentStatus" and p["terminalId"] in by_id]
        some = next(iter(by_id))
        with pytest.raises(CaoError):
            await cao.send_message(some, "a stray message")
        with pytest.raises(CaoError):
            await cao.terminate(some)
        warm_pids = panes(env)

        # A handoff takes a warm worker: it answers at once, and a fresh one replaces it.
        t0 = time.perf_counter()
        first = await cao.handoff("say: secret-one", profile="warm")
        took = time.perf_counter() - t0
        assert first["output"] == "done: say: secret-one"
        assert first["terminalId"] in by_id and by_id[first["terminalId"]]["profile"] == "warm"
        assert took < 5.0
        announced = [p for m, p in notes if m == "cao/agentStatus" and p["terminalId"] == first["terminalId"]]
        assert announced and announced[0]["previousStatus"] is None
        used_window = f"warm-{first['terminalId']}"
        await gone([warm_pids[used_window]], env, [used_window])
        after = await warm(cao, 3)
        assert first["terminalId"] not in {a["terminalId"] for a in after}
        assert len([a for a in after if a["profile"] == "warm"]) >= 1

        # An assign takes another; kept, it is the user's agent now, and it never saw the
        # previous task.
        result = await cao.assign("warm", "say: task-two")
        tid = result["terminalId"]
        assert tid in {a["terminalId"] for a in after}
        deadline = time.monotonic() + 20
        while not [p for m, p in notes if m == "cao/workerCompleted" and p["terminalId"] == tid]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        full = await cao.get_output(tid, "full")
        assert "task-two" in full and "secret-one" not in full
        mine = await cao.list_agents()
        assert [a["terminalId"] for a in mine] == [tid] and mine[0]["pooled"] is False
        stats = await cao.request("cao/stats", {})
        assert (stats["agents"], stats["liveAgents"]) == (1, 1), stats
        await cao.terminate(tid)
        await warm(cao, 3)


async def test_warm_workers_leave_nothing_behind(env, tmp_base):
    workspace = tmp_base / "workspace"
    profile = write_profile(workspace, "warm", WARM.format(n=2))
    async with CaoClient.start(workspace=workspace, env=env) as cao:
        pooled = await warm(cao, 2)
        windows = panes(env)
        names = [f"warm-{a['terminalId']}" for a in pooled]
        pids = [windows[n] for n in names]
        # A profile whose pool shrinks stops the surplus; one removed stops all of its.
        profile.write_text(WARM.format(n=1))
        await warm(cao, 1)
        profile.unlink()
        await warm(cao, 0)
        await gone(pids, env, names)
        # Back again: warm workers come back; a user's agent stays through what follows.
        write_profile(workspace, "warm", WARM.format(n=2))
        pooled = await warm(cao, 2)
        user_agent = (await cao.spawn("mock_developer"))["terminalId"]
        windows = panes(env)
        names = [f"warm-{a['terminalId']}" for a in pooled]
        pids = [windows[n] for n in names]
        orchestrator = orchestrator_pid(env)
    # The last client left; the user's agent keeps the orchestrator (and the pool) running.
    await asyncio.sleep(1.5)
    assert alive(orchestrator)
    async with CaoClient.start(workspace=workspace, env=env) as cao:
        assert len(await warm(cao, 2)) == 2
        await cao.terminate(user_agent)
    # No client and no agent of the user's: the warm workers do not keep it alive; it ends and
    # takes them along.
    deadline = time.monotonic() + 20
    while alive(orchestrator):
        assert time.monotonic() < deadline, "warm workers kept the orchestrator alive"
        await asyncio.sleep(0.1)
    await gone(pids, env, names)


async def test_shutdown_and_memory_cap(env, tmp_base):
    workspace = tmp_base / "workspace"
    write_profile(workspace, "warm", WARM.format(n=3))
    env["CAO_POOL_MAX_MEMORY_MB"] = "1"  # the first warm worker alone uses more
    async with CaoClient.start(workspace=workspace, env=env) as cao:
        pooled = await warm(cao, 1)
        await asyncio.sleep(1.5)
        assert len(await warm(cao, 1)) == 1, "the memory cap was exceeded"
        windows = panes(env)
        names = [f"warm-{a['terminalId']}" for a in pooled]
        pids = [windows[n] for n in names]
        user_agent = (await cao.spawn("mock_developer"))["terminalId"]
        await cao.shutdown_team()  # the user's agents stay in tmux; warm workers never do
    await gone(pids, env, names)
    assert f"mock_developer-{user_agent}" in panes(env)
    for pid in panes(env).values():
        os.kill(pid, 9)


async def test_a_successor_stops_the_warm_workers_a_crash_left(env, tmp_base):
    workspace = tmp_base / "workspace"
    write_profile(workspace, "warm", WARM.format(n=2))
    async with CaoClient.start(workspace=workspace, env=env) as cao:
        pooled = await warm(cao, 2)
        windows = panes(env)
        names = [f"warm-{a['terminalId']}" for a in pooled]
        pids = [windows[n] for n in names]
        kill_orchestrator(env)  # SIGKILL: no chance to stop them itself
    async with CaoClient.start(workspace=workspace, env=env) as cao:
        await gone(pids, env, names)
        fresh = await warm(cao, 2)
        assert not {a["terminalId"] for a in fresh} & {a["terminalId"] for a in pooled}
        assert await cao.list_agents() == []
        await cao.shutdown_team()
