"""Restart recovery: a SIGKILLed sidecar's successor adopts its agents, queued messages and assigns."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from cao_client import CaoClient, CaoError
from conftest import isolated_env, process_env, kill_orchestrator, kill_tmux, orchestrator_pid


async def start(env: dict[str, str], workspace: Path, notes: list | None = None) -> CaoClient:
    return await CaoClient.start(
        workspace=workspace,
        env=env,
        on_notification=(lambda m, p: notes.append((m, p))) if notes is not None else None,
    )


def transcript(env: dict[str, str], terminal_id: str) -> list[dict]:
    path = Path(env["XDG_STATE_HOME"]) / "cao-sidecar" / "agents" / terminal_id / "transcript.jsonl"
    if not path.exists():
        return []
    raw = path.read_bytes()
    return [json.loads(line) for line in raw[: raw.rfind(b"\n") + 1].decode().splitlines()]


async def wait_until(predicate, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    return value


def kill9(client: CaoClient) -> None:
    """Crash the team: SIGKILL the orchestrator `client` (a forwarder) is joined to; the
    forwarder sees its connection close and exits."""
    kill_orchestrator(process_env(client._process.pid))


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


async def test_sigkill_mid_handoff_with_100_queued_messages_then_restart(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await start(env, workspace)
    worker = (await first.spawn("mock_developer"))["terminalId"]
    bystander = (await first.spawn("mock_reviewer"))["terminalId"]
    running = asyncio.ensure_future(first.handoff("sleep 2 long task done", terminal_id=worker))
    await wait_until(lambda: any(r["type"] == "user" for r in transcript(env, worker)))
    states = [(await first.send_message(worker, f"note {i:03d}"))["state"] for i in range(100)]
    assert set(states) == {"queued"}
    kill9(first)
    with pytest.raises(Exception):  # noqa: B017 - the request dies with the process: any transport error
        await running
    await first._process.wait()

    # While no sidecar runs, one agent dies.
    subprocess.run(["tmux", "-L", env["CAO_TMUX_SOCKET"], "kill-window", "-t", f"mock_reviewer-{bystander}"], check=True)

    second = await start(env, workspace)
    try:
        agents = {a["terminalId"]: a for a in await second.list_agents()}
        assert worker in agents and agents[worker]["profile"] == "mock_developer"
        assert agents[bystander]["status"] == "exited"

        def all_notes():
            users = [r["text"] for r in transcript(env, worker) if r["type"] == "user"]
            notes = [u for u in users if u.startswith("note ")]
            return notes if len(notes) >= 100 else None

        notes = await wait_until(all_notes, timeout=60)
        assert notes == [f"note {i:03d}" for i in range(100)]  # in order
        await asyncio.sleep(0.3)
        assert len([r for r in transcript(env, worker) if r.get("text", "").startswith("note ")]) == 100  # once
        # The adopted agent works normally.
        result = await second.handoff("echo after restart", terminal_id=worker)
        assert result["output"] == "after restart"
    finally:
        await second.close()


async def test_assign_running_during_a_crash_is_still_reported(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await start(env, workspace)
    worker = (await first.assign("mock_developer", "sleep 1.5 assigned result"))["terminalId"]
    await wait_until(lambda: any(r["type"] == "user" for r in transcript(env, worker)))
    kill9(first)
    await first._process.wait()

    notes: list = []
    second = await start(env, workspace, notes)
    try:

        def completed():
            return [p for m, p in notes if m == "cao/workerCompleted" and p["terminalId"] == worker]

        done = await wait_until(completed, timeout=20)
        assert done[0]["status"] == "completed" and done[0]["output"] == "assigned result"
    finally:
        await second.close()


async def test_a_second_front_end_of_the_same_project_joins_the_same_team(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await start(env, workspace)
    second = await start(env, workspace)
    try:
        tid = (await first.spawn("mock_developer"))["terminalId"]
        assert tid in {a["terminalId"] for a in await second.list_agents()}
        assert first._process.pid != second._process.pid  # two forwarders, one orchestrator
        assert orchestrator_pid(env) not in (first._process.pid, second._process.pid)
    finally:
        await second.close()
        await first.close()


async def test_a_front_end_of_another_project_on_the_same_socket_is_refused_clearly(env, tmp_base):
    first = await start(env, tmp_base / "workspace")
    other = tmp_base / "other-project"
    other.mkdir()
    second = await start(env, other)
    try:
        await first.list_agents()
        with pytest.raises(CaoError) as refused:
            await second.list_agents()
        assert "serves another project" in refused.value.message
        assert str(orchestrator_pid(env)) in refused.value.message
        assert str(tmp_base / "workspace") in refused.value.message
        assert await first.list_agents() == []  # the team goes on
    finally:
        await second.close()
        await first.close()


async def test_two_projects_at_once_keep_their_own_work(env, tmp_base):
    """Two projects' orchestrators of one user (one state dir, a tmux server each): the second,
    starting and restarting, neither lists, adopts nor reports the first one's agents and assigns."""
    notes: list = []
    first = await start(env, tmp_base / "workspace", notes)
    other_env = {**env, "CAO_TMUX_SOCKET": env["CAO_TMUX_SOCKET"] + "-b"}
    (tmp_base / "other").mkdir()
    try:
        supervisor = (await first.spawn("mock_supervisor"))["terminalId"]
        await first.handoff("assign mock_developer sleep 3 first project's work", terminal_id=supervisor)
        mine = {a["terminalId"] for a in await first.list_agents()}
        other_notes: list = []
        second = await start(other_env, tmp_base / "other", other_notes)
        try:
            assert await second.list_agents() == []
            await second.spawn("mock_developer")
            kill9(second)  # and a restart, which adopts what it had
            await second._process.wait()
            second = await start(other_env, tmp_base / "other", other_notes)
            assert not {a["terminalId"] for a in await second.list_agents()} & mine
            reported = await wait_until(lambda: [p for m, p in notes if m == "cao/workerCompleted"], timeout=30)
            assert reported[0]["output"] == "first project's work", reported
            assert not [p for m, p in other_notes if m == "cao/workerCompleted"]
            assert {a["terminalId"]: a["status"] for a in await first.list_agents()}.keys() == mine
            assert all(a["status"] != "exited" for a in await first.list_agents())
        finally:
            await second.close()
    finally:
        await first.close()
        kill_tmux(other_env["CAO_TMUX_SOCKET"])


async def test_assign_that_finished_while_no_sidecar_ran_is_reported_on_restart(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await start(env, workspace)
    supervisor = (await first.spawn("mock_supervisor"))["terminalId"]
    # The supervisor assigns over MCP, so its inbox must get the result too.
    await first.handoff("assign mock_developer sleep 0.5 finished while down", terminal_id=supervisor)
    workers = [a["terminalId"] for a in await first.list_agents() if a["profile"] == "mock_developer"]
    assert len(workers) == 1
    worker = workers[0]
    await wait_until(lambda: any(r["type"] == "user" for r in transcript(env, worker)))
    kill9(first)
    await first._process.wait()
    await wait_until(lambda: any(r["type"] == "assistant" for r in transcript(env, worker)), timeout=10)

    notes: list = []
    second = await start(env, workspace, notes)
    try:
        done = await wait_until(
            lambda: [p for m, p in notes if m == "cao/workerCompleted" and p["terminalId"] == worker], timeout=20
        )
        assert done[0]["output"] == "finished while down"
        reported = await wait_until(
            lambda: [
                r
                for r in transcript(env, supervisor)
                if r["type"] == "user" and "result of the task you assigned: finished while down" in r["text"]
            ]
        )
        assert worker in reported[0]["text"]
    finally:
        await second.close()


async def test_handoff_cut_off_by_a_crash_still_reports_and_tears_its_worker_down(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await start(env, workspace)
    running = asyncio.ensure_future(first.handoff("sleep 1 handoff answer", profile="mock_developer"))
    notes: list = []
    agents_dir = Path(env["XDG_STATE_HOME"]) / "cao-sidecar" / "agents"
    workers = await wait_until(lambda: [p for p in agents_dir.glob("*") if transcript(env, p.name)])
    worker = workers[0].name
    kill9(first)
    with pytest.raises(Exception):  # noqa: B017 - the request dies with the process: any transport error
        await running
    await first._process.wait()
    second = await start(env, workspace, notes)
    try:
        done = await wait_until(lambda: [p for m, p in notes if m == "cao/workerCompleted" and p["terminalId"] == worker])
        assert done[0]["output"] == "handoff answer"
        await wait_until(
            lambda: [p for m, p in notes if m == "cao/agentStatus" and p["terminalId"] == worker and p["status"] == "exited"]
        )
        for _ in range(100):  # torn down, not kept (its `exited` goes out just before it leaves the list)
            if worker not in {a["terminalId"] for a in await second.list_agents()}:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"worker {worker} still listed 5 s after it exited")
    finally:
        await second.close()


async def test_a_question_waiting_across_a_restart_is_asked_again_and_answerable(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await start(env, workspace)
    tid = (await first.spawn("mock_developer"))["terminalId"]
    await first.send_message(tid, "ask Keep the branch?")
    await wait_until(lambda: any(r["type"] == "question" for r in transcript(env, tid)))
    kill9(first)
    await first._process.wait()

    asked: list = []

    def on_request(method, params):
        asked.append((method, params))
        return None  # dismissed: the answer comes through cao/answer below

    second = await CaoClient.start(workspace=workspace, env=env, ask_user=True, on_request=on_request)
    try:
        agent = None
        for _ in range(100):
            agent = next(a for a in await second.list_agents() if a["terminalId"] == tid)
            if agent["status"] == "waiting_user_answer":
                break
            await asyncio.sleep(0.05)
        assert agent["prompt"]["text"] == "Keep the branch?" and agent["prompt"]["choices"] == ["Yes", "No"]
        request = await wait_until(lambda: [p for m, p in asked if m == "window/showMessageRequest"], timeout=10)
        assert f"({tid}) asks: Keep the branch?" in request[0]["message"]
        await second.answer(tid, "No", agent["prompt"]["id"])
        await wait_until(lambda: any(r["type"] == "assistant" and r["text"] == "answered: n" for r in transcript(env, tid)))
    finally:
        await second.close()
