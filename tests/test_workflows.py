"""Workflows on the real process: a script of journaled steps (mock agents), run from the command
line; the orchestrator and the script SIGKILLed at several points of one run, and every step
still reaches an agent exactly once (counted in the agents' own transcripts)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cao_sidecar.core.stores import team_db
from conftest import isolated_env, kill_orchestrator, kill_tmux
from test_recovery import start, wait_until

REVIEW = '''"""Plan, then review and test at once, then sum up."""
import asyncio
from cao_client.workflow import step

async def main(topic: str):
    plan = await step("mock_developer", f"sleep {PLAN} plan for {topic}")
    review, tests = await asyncio.gather(
        step("mock_reviewer", f"sleep {FAN} review of {plan}"),
        step("mock_developer", f"sleep {FAN} tests of {plan}"),
    )
    summary = await step("mock_developer", f"sleep {SUM} summary: {review} + {tests}")
    return {"plan": plan, "summary": summary}
'''


def write_review(workspace: Path, plan: float, fan: float, summary: float) -> Path:
    path = workspace / ".cao" / "workflows" / "review.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(REVIEW.replace("{PLAN}", str(plan)).replace("{FAN}", str(fan)).replace("{SUM}", str(summary)))
    return path


def tasks(topic: str, plan: float, fan: float, summary: float) -> list[str]:
    p = f"plan for {topic}"
    return [
        f"sleep {plan} {p}",
        f"sleep {fan} review of {p}",
        f"sleep {fan} tests of {p}",
        f"sleep {summary} summary: review of {p} + tests of {p}",
    ]


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    env["CAO_MOCK_RECEIVED_LOG"] = str(tmp_base / "received.jsonl")
    yield env
    for pid in script_pids(""):
        if process_env_socket(pid) == env["CAO_TMUX_SOCKET"]:
            os.kill(pid, signal.SIGKILL)
    kill_tmux(env["CAO_TMUX_SOCKET"])


def process_env_socket(pid: int) -> str:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return ""
    return next((e[len(b"CAO_TMUX_SOCKET=") :].decode() for e in environ if e.startswith(b"CAO_TMUX_SOCKET=")), "")


def state(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "cao-sidecar"


def received(env: dict[str, str]) -> Counter:
    """Every input the mock agents took, as they wrote it down themselves (CAO_MOCK_RECEIVED_LOG;
    their own transcripts go with their folders when a step's worker is torn down)."""
    seen: Counter = Counter()
    path = Path(env["CAO_MOCK_RECEIVED_LOG"])
    if path.exists():
        raw = path.read_bytes()
        for line in raw[: raw.rfind(b"\n") + 1].decode().splitlines():
            record = json.loads(line)
            if record["type"] == "user" and record["text"] != "exit":  # `exit`: a worker's teardown
                seen[record["text"]] += 1
    return seen


def journal(env: dict[str, str], run_id: str) -> tuple[str, dict[int, str]]:
    """(run status, {step key: status}), read from the state db as it is now."""
    db = sqlite3.connect(f"file:{team_db(state(env), env['CAO_TMUX_SOCKET'])}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT status FROM workflow_runs WHERE id=?", (run_id,)).fetchone()
        steps = dict(db.execute("SELECT key, status FROM workflow_steps WHERE run_id=?", (run_id,)).fetchall())
    finally:
        db.close()
    return (row[0] if row else "none"), steps


def script_pids(run_id: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            status = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if b"cao_sidecar.workflows.runner" in cmdline and run_id.encode() in cmdline and status != "Z":
            found.append(int(entry.name))
    return found


async def cli(env: dict[str, str], workspace: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cao_sidecar", "workflow", *args, cwd=workspace, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, out.decode(), err.decode()


async def test_three_steps_with_a_fan_out_run_end_to_end_from_the_command_line(env, tmp_base):
    workspace = tmp_base / "workspace"
    write_review(workspace, 0.3, 0.5, 0.2)
    notes: list = []
    watcher = await start(env, workspace, notes)  # an editor that watches the run live
    try:
        code, out, err = await cli(env, workspace, "run", "review", "--input", "topic=cats")
        assert code == 0, err
        assert json.loads(out) == {
            "plan": "plan for cats",
            "summary": "summary: review of plan for cats + tests of plan for cats",
        }
        assert "step 1 mock_reviewer: sent to" in err and "step 3 mock_developer: answered" in err
        assert received(env) == Counter(tasks("cats", 0.3, 0.5, 0.2))
        runs = [p for m, p in notes if m == "cao/workflowRun"]
        assert runs and runs[-1]["status"] == "completed" and len(runs[-1]["steps"]) == 4
        # The two fanned-out steps ran at the same time: both sent before either answered.
        statuses = [{s["key"]: s["status"] for s in r["steps"]} for r in runs]
        assert any(s.get(1) == "sent" and s.get(2) == "sent" for s in statuses)

        code, out, err = await cli(env, workspace, "runs", "--json")
        run = json.loads(out)[0]
        assert run["name"] == "review" and run["status"] == "completed" and run["inputs"] == {"topic": "cats"}
        code, out, err = await cli(env, workspace, "show", run["runId"])
        assert code == 0 and "review of plan for cats" in out and "completed" in out
        code, out, err = await cli(env, workspace, "follow", run["runId"])  # ended: shows it and returns
        assert code == 0 and "step 3 mock_developer: answered: summary" in err and "output: " in out
        # A missing input is the script's clear error, not a crash.
        code, out, err = await cli(env, workspace, "run", "review")
        assert code == 1 and "missing input(s) topic" in err
        # Cancel: the script and the working step's worker are stopped; the run failed, "cancelled".
        (workspace / ".cao" / "workflows" / "slow.py").write_text(
            "from cao_client.workflow import step\n\nasync def main():\n    return await step('mock_developer', 'sleep 60 never')\n"
        )
        code, out, err = await cli(env, workspace, "run", "slow", "--no-wait")
        slow = out.strip()
        await wait_until(lambda: received(env)["sleep 60 never"] == 1, timeout=30)
        code, out, err = await cli(env, workspace, "cancel", slow)
        assert code == 0, err
        assert journal(env, slow)[0] == "failed" and not script_pids(slow)
        await wait_until(lambda: journal(env, slow)[1] == {0: "failed"}, timeout=20)  # its worker reported exited
        worker = json.loads((await cli(env, workspace, "show", slow, "--json"))[1])["steps"][0]["terminalId"]
        assert all(a["terminalId"] != worker or a["status"] == "exited" for a in await watcher.list_agents())
    finally:
        await watcher.close()


async def test_sigkill_of_the_sidecar_and_of_the_script_at_several_points_every_step_runs_once(env, tmp_base):
    workspace = tmp_base / "workspace"
    plan, fan, summary = 2.0, 2.0, 2.0
    write_review(workspace, plan, fan, summary)
    expected = tasks("dogs", plan, fan, summary)

    code, out, err = await cli(env, workspace, "run", "review", "--input", "topic=dogs", "--no-wait")
    assert code == 0, err
    run_id = out.strip()

    # 1. The sidecar dies while the first step's agent works.
    await wait_until(lambda: received(env)[expected[0]] == 1, timeout=30)
    kill_orchestrator(env)
    assert journal(env, run_id) == ("running", {0: "sent"})

    # 2. A new sidecar resumes the run by itself (its first client starts it); the script dies
    #    while both fanned-out agents work.
    client = await start(env, workspace)
    try:
        await wait_until(lambda: received(env)[expected[1]] == 1 and received(env)[expected[2]] == 1, timeout=40)
        for pid in script_pids(run_id):
            os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: journal(env, run_id)[0] == "interrupted", timeout=20)
    finally:
        await client.close()

    # 3. Resumed from the command line: the fanned-out steps are re-attached to their agents (not
    #    sent again); the sidecar dies while the last step's agent works.
    code, out, err = await cli(env, workspace, "resume", run_id, "--no-wait")
    assert code == 0, err
    await wait_until(lambda: received(env)[expected[3]] == 1, timeout=40)
    kill_orchestrator(env)

    # 4. The script dies too, then the sidecar comes back with `resume`: the run completes.
    for pid in script_pids(run_id):
        os.kill(pid, signal.SIGKILL)
    code, out, err = await cli(env, workspace, "resume", run_id, timeout=60)
    assert code == 0, err
    assert json.loads(out)["summary"] == "summary: review of plan for dogs + tests of plan for dogs"

    counts = received(env)
    assert {task: counts[task] for task in expected} == dict.fromkeys(expected, 1)
    assert sum(counts.values()) == 4  # nothing else reached any agent
    status, steps = journal(env, run_id)
    assert status == "completed" and steps == {0: "completed", 1: "completed", 2: "completed", 3: "completed"}
    code, out, err = await cli(env, workspace, "show", run_id, "--json")
    assert [s["attempts"] for s in json.loads(out)["steps"]] == [1, 1, 1, 1]  # each sent once


async def test_killed_before_the_worker_got_its_task_and_right_after_it_answered_a_changed_script_is_refused(env, tmp_base):
    workspace = tmp_base / "workspace"
    write_review(workspace, 0.5, 1.0, 0.2)
    expected = tasks("owls", 0.5, 1.0, 0.2)
    code, out, err = await cli(env, workspace, "run", "review", "--input", "topic=owls", "--no-wait")
    run_id = out.strip()

    # 1. The sidecar dies the moment the first step is journaled as sent (its worker still starting).
    await wait_until(lambda: journal(env, run_id)[1].get(0) == "sent", timeout=30)
    kill_orchestrator(env)

    # 2. The script changes meanwhile: the next sidecar does not resume the run, it says why.
    path = workspace / ".cao" / "workflows" / "review.py"
    original = path.read_text()
    path.write_text(original.replace("plan for", "a plan for"))
    client = await start(env, workspace)
    try:
        await wait_until(lambda: journal(env, run_id)[0] == "interrupted", timeout=30)
        shown = json.loads((await cli(env, workspace, "show", run_id, "--json"))[1])
        assert "not resumed" in shown["error"] and "changed since run" in shown["error"]
        # Its worker was adopted all the same: it gets its task once and its answer is journaled.
        await wait_until(lambda: journal(env, run_id)[1].get(0) == "completed", timeout=30)

        # 3. resume is refused; forced, the journal refuses the step that differs instead of running it.
        code, out, err = await cli(env, workspace, "resume", run_id)
        assert code == 1 and "changed since run" in err and "--force" in err
        code, out, err = await cli(env, workspace, "resume", run_id, "--force")
        assert code == 1 and "step 0 is not the step the journal has" in err
        assert not any("a plan for" in t for t in received(env))

        # 4. The script as it was: resumed (step 0 answers from the journal); killed the moment the
        #    fanned-out steps have answered (the last step journaled or not yet).
        path.write_text(original)
        code, out, err = await cli(env, workspace, "resume", run_id, "--no-wait")
        assert code == 0, err
        await wait_until(lambda: {1: "completed", 2: "completed"}.items() <= journal(env, run_id)[1].items(), timeout=30)
        for pid in script_pids(run_id):
            os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: journal(env, run_id)[0] == "interrupted", timeout=20)
    finally:
        await client.close()

    # 5. The last resume completes the run.
    code, out, err = await cli(env, workspace, "resume", run_id)
    assert code == 0, err
    counts = received(env)
    assert {task: counts[task] for task in expected} == dict.fromkeys(expected, 1) and sum(counts.values()) == 4


async def test_a_yaml_workflow_runs_its_sequence_and_parallel_group(env, tmp_base):
    workspace = tmp_base / "workspace"
    directory = workspace / ".cao" / "workflows"
    directory.mkdir(parents=True)
    (directory / "brief.yaml").write_text(
        "description: A plan, two opinions\n"
        "inputs: {topic: owls}\n"
        "steps:\n"
        "  - profile: mock_developer\n"
        "    task: 'echo plan {topic}'\n"
        "  - parallel:\n"
        "      - {profile: mock_reviewer, task: 'echo A saw {previous}'}\n"
        "      - {profile: mock_reviewer, task: 'echo B saw {previous}'}\n"
    )
    (directory / "broken.yaml").write_text("steps:\n  - profile: mock_developer\n    task: 'echo {nope}'\n")
    code, out, err = await cli(env, workspace, "run", "brief", "--input", "topic=bats")
    assert code == 0, err
    assert out.strip() == "A saw plan bats\n\nB saw plan bats"
    code, out, err = await cli(env, workspace, "list")
    assert "brief" in out and "broken" in out and "has problems" in out
    code, out, err = await cli(env, workspace, "run", "broken")
    assert code == 1 and "`{nope}` is neither an input nor `previous`" in err
    code, out, err = await cli(env, workspace, "check")
    assert code == 1 and "broken.yaml" in out and "brief.yaml" not in out
    # The lead agent's MCP tool runs the same workflow.
    notes: list = []
    client = await start(env, workspace, notes)
    try:
        # Diagnostics as files are saved: from the start, and for a file saved now (parsed, not run).
        def diagnostics(name: str) -> list:
            return [p["diagnostics"] for m, p in notes if m == "textDocument/publishDiagnostics" and p["uri"].endswith(name)]

        await wait_until(lambda: diagnostics("broken.yaml"), timeout=20)
        assert "`{nope}` is neither an input nor `previous`" in diagnostics("broken.yaml")[-1][0]["message"]
        (directory / "oops.py").write_text("import os\nos.remove('must-not-run')\nasync def main(:\n")
        await wait_until(lambda: diagnostics("oops.py"), timeout=20)
        found = diagnostics("oops.py")[-1][0]
        assert "syntax error" in found["message"] and found["range"]["start"]["line"] == 2
        (directory / "oops.py").write_text("async def main():\n    return 1\n")
        await wait_until(lambda: diagnostics("oops.py")[-1] == [], timeout=20)
        lead = (await client.spawn("mock_supervisor"))["terminalId"]
        answer = (await client.handoff("workflow brief topic=owls", terminal_id=lead, timeout_seconds=60))["output"]
        assert "A saw plan owls" in answer and "B saw plan owls" in answer
        runs = json.loads((await cli(env, workspace, "runs", "--json"))[1])
        assert [r["trigger"] for r in runs[:2]] == ["agent", "client"]
        # A flow's run starts the workflow and ends with it.
        flows = workspace / ".cao" / "flows"
        flows.mkdir(parents=True)
        (flows / "weekly.md").write_text(
            '---\nname: weekly\nschedule: "0 6 * * 1"\nworkflow: brief\ninputs: {topic: moths}\n---\n'
        )

        async def last_flow_run():
            listed = (await client.request("cao/listFlows", {}))["flows"]
            return next((f.get("lastRun") for f in listed if f["name"] == "weekly"), None)

        deadline = asyncio.get_running_loop().time() + 20
        while True:  # the flow watcher picks the new file up
            try:
                await client.request("cao/runFlow", {"name": "weekly"})
                break
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        for _ in range(200):
            last = await last_flow_run()
            if last and last["status"] != "running":
                break
            await asyncio.sleep(0.1)
        assert last["status"] == "completed" and last["output"] == "A saw plan moths\n\nB saw plan moths", last
        runs = json.loads((await cli(env, workspace, "runs", "--json"))[1])
        assert runs[0]["trigger"] == "flow" and runs[0]["inputs"] == {"topic": "moths"}
    finally:
        await client.close()


def git(workspace: Path, env: dict[str, str], *args: str) -> str:
    return subprocess.run(["git", *args], cwd=workspace, env=env, check=True, capture_output=True, text=True).stdout


async def test_a_step_in_its_own_worktree_and_its_branch_merged_at_the_end(env, tmp_base):
    workspace = tmp_base / "workspace"
    env.update(
        GIT_AUTHOR_NAME="Ana", GIT_AUTHOR_EMAIL="ana@example.com", GIT_COMMITTER_NAME="Ana", GIT_COMMITTER_EMAIL="ana@example.com"
    )
    (workspace / "README.md").write_text("# shop\n")
    for args in (["init", "-q", "--initial-branch=main"], ["add", "."], ["commit", "-qm", "start"]):
        git(workspace, env, *args)
    directory = workspace / ".cao" / "workflows"
    directory.mkdir(parents=True)
    (directory / "change.py").write_text(
        "from cao_client.workflow import merge, step\n\n"
        "async def main():\n"
        "    done = await step('mock_developer', 'edit notes.txt written in a worktree', worktree=True)\n"
        "    merged = await merge(done)\n"
        "    return {'answer': done, 'merged': merged['merged'], 'worker': done.terminal_id}\n"
    )
    code, out, err = await cli(env, workspace, "run", "change")
    assert code == 0, err
    result = json.loads(out)
    assert result["answer"] == "wrote notes.txt" and result["merged"] is True
    assert (workspace / "notes.txt").read_text() == "written in a worktree\n"  # merged into main
    assert len(git(workspace, env, "log", "--oneline", "main").splitlines()) >= 2


async def test_a_step_whose_profile_names_a_host_is_refused_saying_why(env, tmp_base):
    """Workflow steps run on this machine: a step of a profile with `host: box1` is not started
    here in its place; the run fails saying why, and no agent starts."""
    workspace = tmp_base / "workspace"
    agents = workspace / ".cao" / "agents"
    agents.mkdir(parents=True)
    (agents / "boxed.md").write_text("---\nname: boxed\ndescription: on box1\nprovider: mock\nhost: box1\n---\nYou work there.\n")
    script = workspace / ".cao" / "workflows" / "far.py"
    script.parent.mkdir(parents=True)
    script.write_text('from cao_client.workflow import step\n\nasync def main():\n    return await step("boxed", "echo far")\n')
    code, _out, err = await cli(env, workspace, "run", "far")
    assert code != 0 and "profile 'boxed' runs on host 'box1'" in err, err
    assert received(env) == Counter()  # nothing was typed into any agent
