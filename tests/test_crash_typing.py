"""A sidecar SIGKILLed while it types a task or message into an agent: the restart finishes it,
and the agent gets it exactly once (never typed twice, never left waiting for an Enter).

The kill falls at a chosen moment through the test-only crash points of
cao_sidecar/core/crash_hooks.py (CAO_TEST_KILL_AT), set for the first sidecar only."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from conftest import isolated_env, kill_tmux, process_env
from test_durability import completed
from test_recovery import start, transcript, wait_until


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


def users(env: dict[str, str], terminal_id: str) -> list[str]:
    return [r["text"] for r in transcript(env, terminal_id) if r["type"] == "user"]


def pane_of(env: dict[str, str], terminal_id: str) -> str:
    """The agent's pane id and process id (a relaunched worker has other ones)."""
    windows = subprocess.run(
        ["tmux", "-L", env["CAO_TMUX_SOCKET"], "list-windows", "-a", "-F", "#{window_name} #{pane_id} #{pane_pid}"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    return next(" ".join(line.split()[1:]) for line in windows if line.split() and line.split()[0].endswith(terminal_id))


def pane_text(env: dict[str, str], terminal_id: str) -> str:
    pane = pane_of(env, terminal_id).split()[0]
    return subprocess.run(
        ["tmux", "-L", env["CAO_TMUX_SOCKET"], "capture-pane", "-p", "-t", pane], capture_output=True, text=True, check=True
    ).stdout


async def crashed(client) -> None:
    """Wait for the first orchestrator to kill itself at its crash point: its front end (a
    forwarder) then exits, and the orchestrator is gone (SIGKILL leaves its info file behind)."""
    env = process_env(client._process.pid)
    await asyncio.wait_for(client._process.wait(), 30)
    info = Path(env["XDG_STATE_HOME"]) / "cao-sidecar" / f"orchestrator-{env['CAO_TMUX_SOCKET']}.json"
    pid = json.loads(info.read_text())["pid"]  # still there: no clean exit removed it
    status = Path(f"/proc/{pid}/stat")
    assert not status.exists() or status.read_text().split(") ")[-1].startswith("Z"), "the orchestrator still runs"


@pytest.mark.parametrize("point", ["after_paste", "before_paste", "after_enter"])
async def test_an_assign_cut_off_while_its_task_is_typed_in_completes_once(env, tmp_base, point):
    workspace = tmp_base / "workspace"
    task = "sleep 0.5 crashmark task done"
    first = await start({**env, "CAO_TEST_KILL_AT": f"{point}:crashmark"}, workspace)
    worker = (await first.assign("mock_developer", task))["terminalId"]
    await crashed(first)
    pane = pane_of(env, worker)
    if point == "after_paste":
        # The task waits in the worker's input line for an Enter that never came.
        assert users(env, worker) == []
        assert pane_text(env, worker).rstrip().splitlines()[-1].endswith(task)

    notes: list = []
    second = await start(env, workspace, notes)
    try:
        # Well before the assign's deadline (an hour): the worker was not left idle.
        done = await wait_until(lambda: completed(notes, worker), timeout=30)
        assert done[0]["status"] == "completed" and done[0]["output"] == "crashmark task done", done
        await asyncio.sleep(1.0)
        assert len(completed(notes, worker)) == 1
        assert users(env, worker) == [task]  # its task taken once
        assert pane_of(env, worker) == pane  # by the same worker: adopted, not launched again
        agents = {a["terminalId"]: a for a in await second.list_agents()}
        assert worker not in agents or agents[worker]["status"] != "exited"
    finally:
        await second.close()


@pytest.mark.parametrize("point", ["after_paste", "before_paste", "after_enter"])
async def test_a_message_cut_off_while_typed_in_is_taken_once_and_the_queue_goes_on(env, tmp_base, point):
    workspace = tmp_base / "workspace"
    first = await start({**env, "CAO_TEST_KILL_AT": f"{point}:crashmark"}, workspace)
    worker = (await first.spawn("mock_developer"))["terminalId"]
    try:  # an idle agent is typed into at once: the kill may beat the answer (stored first)
        await first.send_message(worker, "echo crashmark first")
    except ConnectionError:
        pass
    await crashed(first)

    second = await start(env, workspace)
    try:
        await second.send_message(worker, "echo second")
        await wait_until(lambda: users(env, worker) == ["echo crashmark first", "echo second"], timeout=30)
        await asyncio.sleep(1.0)
        assert users(env, worker) == ["echo crashmark first", "echo second"]  # once each, in order
        result = await second.handoff("echo after restart", terminal_id=worker)
        assert result["output"] == "after restart"
    finally:
        await second.close()
