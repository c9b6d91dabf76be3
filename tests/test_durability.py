"""Nothing acknowledged is lost: assigns killed before their workers got the task, workers dead
after it, agents' handoffs cut off, a corrupt or locked state database, a full state dir."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cao_client import CaoError
from cao_sidecar.core.stores import team_db
from conftest import isolated_env, kill_tmux
from fixtures.full_disk import fill, mount_tmpfs
from test_recovery import kill9, start, transcript, wait_until


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


def completed(notes: list, terminal_id: str | None = None) -> list[dict]:
    return [p for m, p in notes if m == "cao/workerCompleted" and (terminal_id is None or p["terminalId"] == terminal_id)]


def state_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "cao-sidecar"


async def test_ten_assigns_killed_while_their_workers_start_all_run_after_restart_reported_once(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await start(env, workspace)
    workers = [(await first.assign("mock_developer", f"echo answer {i}"))["terminalId"] for i in range(10)]
    kill9(first)  # a moment after the last acknowledgement, the workers still starting
    await first._process.wait()
    delivered_before = [w for w in workers if any(r["type"] == "user" for r in transcript(env, w))]

    notes: list = []
    second = await start(env, workspace, notes)
    try:
        await wait_until(lambda: len({p["terminalId"] for p in completed(notes)}) >= 10, timeout=60)
        for i, worker in enumerate(workers):
            done = completed(notes, worker)
            assert len(done) == 1, done
            assert done[0]["status"] == "completed" and done[0]["output"] == f"answer {i}", done[0]
            users = [r["text"] for r in transcript(env, worker) if r["type"] == "user"]
            # Its own task only. (Typed in again only if the kill fell between typing it and
            # recording that: then the worker was launched afresh and ran it.)
            assert set(users) == {f"echo answer {i}"} and len(users) <= 2, users
        assert len(delivered_before) < 10  # some workers really had not got their task yet
        await asyncio.sleep(0.5)
        assert len(completed(notes)) == 10
    finally:
        await second.close()
    # A third sidecar has nothing left to report.
    notes3: list = []
    third = await start(env, workspace, notes3)
    try:
        await third.list_agents()
        await asyncio.sleep(1.0)
        assert completed(notes3) == []
    finally:
        await third.close()


async def test_worker_dead_after_its_task_is_reported_failed_to_editor_and_assigning_agent(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await start(env, workspace)
    supervisor = (await first.spawn("mock_supervisor"))["terminalId"]
    await first.handoff("assign mock_developer sleep 30 never finishes", terminal_id=supervisor)
    worker = next(a["terminalId"] for a in await first.list_agents() if a["profile"] == "mock_developer")
    await wait_until(lambda: any(r["type"] == "user" for r in transcript(env, worker)))
    kill9(first)
    await first._process.wait()
    subprocess.run(["tmux", "-L", env["CAO_TMUX_SOCKET"], "kill-window", "-t", f"mock_developer-{worker}"], check=True)

    notes: list = []
    second = await start(env, workspace, notes)
    try:
        done = await wait_until(lambda: completed(notes, worker), timeout=20)
        assert done[0]["status"] in ("exited", "error") and "exited" in done[0]["error"]
        told = await wait_until(
            lambda: [
                r for r in transcript(env, supervisor) if r["type"] == "user" and "the task you assigned failed" in r["text"]
            ]
        )
        assert worker in told[0]["text"] and len(told) == 1
        await asyncio.sleep(0.5)
        assert len(completed(notes, worker)) == 1
    finally:
        await second.close()


async def test_an_agents_handoff_cut_off_by_a_crash_is_reported_to_its_inbox(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await start(env, workspace)
    supervisor = (await first.spawn("mock_supervisor"))["terminalId"]
    await first.send_message(supervisor, "handoff mock_developer sleep 1 handed back")
    agents_dir = state_dir(env) / "agents"
    await wait_until(lambda: [p for p in agents_dir.glob("*") if p.name != supervisor and transcript(env, p.name)])
    kill9(first)
    await first._process.wait()
    second = await start(env, workspace)
    try:
        told = await wait_until(
            lambda: [
                r
                for r in transcript(env, supervisor)
                if r["type"] == "user" and "result of the task you assigned: handed back" in r["text"]
            ],
            timeout=20,
        )
        assert len(told) == 1
    finally:
        await second.close()


async def test_a_corrupt_state_database_is_set_aside_with_a_notice(env, tmp_base):
    state = state_dir(env)
    state.mkdir(parents=True, mode=0o700)
    garbage = b"this is not a database, it is the user's old state" * 100
    database = team_db(state, env["CAO_TMUX_SOCKET"])
    database.write_bytes(garbage)
    notes: list = []
    client = await start(env, tmp_base / "workspace", notes)
    try:
        result = await client.handoff("echo still works", profile="mock_developer")
        assert result["output"] == "still works"
        aside = list(state.glob(f"{database.name}.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_bytes() == garbage  # kept, never deleted
        shown = await wait_until(lambda: [p for m, p in notes if m == "window/showMessage"])
        assert shown[0]["type"] == 2 and str(aside[0]) in shown[0]["message"]
    finally:
        await client.close()


async def test_a_locked_state_database_is_set_aside_and_the_sidecar_starts(env, tmp_base):
    state = state_dir(env)
    state.mkdir(parents=True, mode=0o700)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], isolation_level=None);"
         "db.execute('PRAGMA locking_mode=EXCLUSIVE'); db.execute('CREATE TABLE IF NOT EXISTS mine (x)');"
         "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()",
         str(team_db(state, env["CAO_TMUX_SOCKET"]))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        notes: list = []
        client = await start(env, tmp_base / "workspace", notes)
        try:
            assert (await client.spawn("mock_developer"))["status"] in ("idle", "completed")
            aside = list(state.glob("team-*.db.locked-*"))
            assert len(aside) == 1
            shown = await wait_until(lambda: [p for m, p in notes if m == "window/showMessage"])
            assert "locked" in shown[0]["message"]
        finally:
            await client.close()
    finally:
        holder.kill()
        holder.wait()
    # The set-aside database is whole: its owner's table is there.
    assert sqlite3.connect(str(aside[0])).execute("SELECT count(*) FROM mine").fetchone() == (0,)


async def test_a_full_state_dir_refuses_new_work_clearly_and_keeps_serving_what_runs(env, tmp_base):
    state_home = Path(env["XDG_STATE_HOME"])
    mount_tmpfs(state_home, "16m")
    try:
        notes: list = []
        client = await start(env, tmp_base / "workspace", notes)
        try:
            running = (await client.assign("mock_developer", "sleep 2 finished on a full disk"))["terminalId"]
            idle = (await client.spawn("mock_reviewer"))["terminalId"]
            await wait_until(lambda: any(r["type"] == "user" for r in transcript(env, running)))
            filler = fill(state_home, 200 * 1024)  # what remains is below the sidecar's minimum
            for refused in (
                client.assign("mock_developer", "echo no room"),
                client.spawn("mock_developer"),
                client.handoff("echo no room", profile="mock_developer"),
                client.send_message(idle, "no room either"),
            ):
                with pytest.raises(CaoError) as full:
                    await refused
                assert full.value.code == -31011 and full.value.data["kind"] == "stateDirFull"
                assert "full" in full.value.message and str(state_home / "cao-sidecar") in full.value.message
            # What runs goes on and is reported.
            done = await wait_until(lambda: completed(notes, running), timeout=20)
            assert done[0]["output"] == "finished on a full disk"
            assert {a["terminalId"] for a in await client.list_agents()} >= {running, idle}
            # Completely full: still refused, still serving.
            fill_more = fill(state_home / "cao-sidecar", 0)
            with pytest.raises(CaoError) as full:
                await client.assign("mock_developer", "echo no room")
            assert full.value.code == -31011
            assert (await client.get_output(running)) == "finished on a full disk"
            # A sidecar started on the full disk starts, keeps its agents and refuses new work.
            kill9(client)
            await client._process.wait()
            client = await start(env, tmp_base / "workspace", notes)
            assert idle in {a["terminalId"] for a in await client.list_agents()}
            with pytest.raises(CaoError) as full:
                await client.spawn("mock_developer")
            assert full.value.code == -31011
            assert not list((state_home / "cao-sidecar").glob("*.db.*-*"))  # a full disk is no corruption
            # Room again: new work is taken.
            filler.unlink()
            fill_more.unlink()
            assert (await client.handoff("echo room again", profile="mock_developer"))["output"] == "room again"
        finally:
            await client.close()
    finally:
        kill_tmux(env["CAO_TMUX_SOCKET"])
        subprocess.run(["umount", "-l", str(state_home)], capture_output=True)


async def test_an_agents_message_that_fails_while_the_sidecar_is_down_is_reported_to_it_once(env, tmp_base):
    workspace = tmp_base / "workspace"
    first = await start(env, workspace)
    sender = (await first.spawn("mock_supervisor"))["terminalId"]
    receiver = (await first.spawn("mock_developer"))["terminalId"]
    await first.send_message(receiver, "sleep 30 busy")
    result = await first.handoff(f"send {receiver} are you there", terminal_id=sender)
    assert "queued" in result["output"]
    message_id = result["output"].split()[1]
    kill9(first)
    await first._process.wait()
    subprocess.run(["tmux", "-L", env["CAO_TMUX_SOCKET"], "kill-window", "-t", f"mock_developer-{receiver}"], check=True)

    def notices():
        return [r["text"] for r in transcript(env, sender) if r["type"] == "user" and "was not delivered" in r["text"]]

    second = await start(env, workspace)
    try:
        told = await wait_until(notices, timeout=20)
        assert message_id in told[0] and receiver in told[0] and "sidecar was down" in told[0]
    finally:
        await second.close()
    third = await start(env, workspace)  # told once: not again after another restart
    try:
        await third.list_agents()
        await asyncio.sleep(1.0)
        assert len(notices()) == 1
    finally:
        await third.close()
