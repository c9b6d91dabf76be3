"""Flows end to end: flow files on disk, the real sidecar, real (mock) workers and real gates.

A flow scheduled with `* * * * *` runs within the test's time: the sidecar is started with
CAO_CLOCK_OFFSET_SECONDS set so that its scheduling clock reaches a minute boundary a few seconds
after start-up. Other flows use a schedule that is never due during the test (1 January) and are
run with cao/runFlow. One sidecar for the whole module.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from conftest import kill_tmux
from test_profiles_common import (
    atomic_write,
    by_name,
    cli,
    flow_text,
    live_sidecar,
    profile_text,
    request,
    rpc_error,
    start,
    stop,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

LEAD_SECONDS = 8.0  # the first scheduled run comes this long after the fixture starts the sidecar
CONFIG, SIDECAR = live_sidecar("flows")
WS = SIDECAR.workspace
FLOWS = WS / ".cao" / "flows"
USER_FLOWS = SIDECAR.config_dir / "flows"
PY = sys.executable


def py_gate(code: str, **extra: object) -> str:
    """A gate that runs Python code (argv list, no shell)."""
    gate = {"command": [PY, "-c", code], **extra}
    return "gate: " + json.dumps(gate) + "\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    FLOWS.mkdir(parents=True)
    USER_FLOWS.mkdir(parents=True)
    (FLOWS / "every-minute.md").write_text(
        flow_text("every-minute", schedule="* * * * *", task="echo scheduled run", extra="description: Runs each minute.\n")
    )
    now = time.time()
    SIDECAR.env["CAO_CLOCK_OFFSET_SECONDS"] = str((-(now + LEAD_SECONDS)) % 60)
    lsp = await start(CONFIG, SIDECAR)
    yield lsp
    await stop(lsp, SIDECAR)


async def flows(client) -> dict[str, dict]:
    return by_name((await request(client, "cao/listFlows", {}))["flows"])


async def saved(path: Path, text: str, predicate) -> dict:
    mark = SIDECAR.mark("cao/flowsChanged")
    atomic_write(path, text)
    note, _ = await SIDECAR.next("cao/flowsChanged", lambda n: predicate(by_name(n["flows"])), since=mark)
    return by_name(note["flows"])


async def finished(name: str, since: int = 0, timeout: float = 30.0) -> dict:
    """The last run of flow `name` once it is no longer running (from cao/flowsChanged)."""
    note, _ = await SIDECAR.next(
        "cao/flowsChanged",
        lambda n: (
            (by_name(n["flows"]).get(name) or {}).get("lastRun") is not None
            and by_name(n["flows"])[name]["lastRun"]["status"] != "running"
        ),
        since=since,
        timeout=timeout,
    )
    return by_name(note["flows"])[name]["lastRun"]


def db_runs(flow: str) -> list[dict]:
    db = sqlite3.connect(str(SIDECAR.state_db))
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM flow_runs WHERE flow=? ORDER BY id", (flow,))]
    finally:
        db.close()


# ---- on schedule -----------------------------------------------------------------------------


async def test_a_flow_scheduled_within_the_test_runs_on_time(client):
    listed = await flows(client)
    flow = listed["every-minute"]
    assert flow["enabled"] is True and flow["schedule"] == "* * * * *" and flow["running"] is False
    next_run = datetime.fromisoformat(flow["nextRunAt"])
    assert next_run.second == 0 and next_run.utcoffset() is not None
    # Normally LEAD_SECONDS after start-up; a very slow start-up may miss that slot and get the next.
    done = await SIDECAR.wait_for("cao/workerCompleted", lambda p: p["output"] == "scheduled run", timeout=LEAD_SECONDS + 75)
    last = await finished("every-minute")
    assert last["trigger"] == "schedule" and last["status"] == "completed" and last["output"] == "scheduled run"
    assert last["terminalId"] == done["terminalId"]
    assert datetime.fromisoformat(last["scheduledAt"]) == next_run
    # On time: it started within a few seconds after its slot (real start + the test's clock offset).
    offset = float(SIDECAR.env["CAO_CLOCK_OFFSET_SECONDS"])
    late = datetime.fromisoformat(last["startedAt"]).timestamp() + offset - next_run.timestamp()
    assert 0 <= late < 3, late
    listed = await flows(client)
    assert datetime.fromisoformat(listed["every-minute"]["nextRunAt"]) == next_run + timedelta(minutes=1)
    # The run is recorded in the state store, start to end.
    rows = db_runs("every-minute")
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "completed" and row["output"] == "scheduled run" and row["task"] == "echo scheduled run"
    assert row["started_at"] and row["ended_at"] and row["ended_at"] >= row["started_at"]
    # The worker was torn down after it answered (keep is false by default).
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == done["terminalId"] and p["status"] == "exited")

    # Disable it: no next run; the choice is stored.
    result = await request(client, "cao/setFlowEnabled", {"name": "every-minute", "enabled": False})
    assert result["flow"]["enabled"] is False and result["flow"]["nextRunAt"] is None
    assert (await flows(client))["every-minute"]["enabled"] is False


# ---- listing and files -----------------------------------------------------------------------


async def test_workspace_flow_shadows_a_user_flow_of_the_same_name(client):
    (USER_FLOWS / "report.md").write_text(flow_text("report", task="echo from user"))
    await saved(
        FLOWS / "report.md",
        flow_text("report", task="echo from workspace", extra=py_gate("print('{}')")),
        lambda f: "report" in f and f["report"]["shadows"],
    )
    flow = (await flows(client))["report"]
    assert flow["scope"] == "workspace" and flow["path"] == str(FLOWS / "report.md")
    assert flow["shadows"] == [str(USER_FLOWS / "report.md")] and flow["hasGate"] is True
    assert flow["workingDirectory"] == str(WS) and flow["profile"] == "mock_developer"
    run = (await request(client, "cao/runFlow", {"name": "report"}))["run"]
    assert run["status"] == "running" and run["trigger"] == "manual" and run["scheduledAt"] is None
    done = await SIDECAR.wait_for("cao/workerCompleted", lambda p: p["terminalId"] == run["terminalId"], timeout=30)
    assert done["output"] == "from workspace"


async def test_editing_a_schedule_recomputes_the_next_run(client):
    path = FLOWS / "hourly.md"
    listed = await saved(path, flow_text("hourly", schedule="0 * * * *"), lambda f: "hourly" in f)
    first = datetime.fromisoformat(listed["hourly"]["nextRunAt"])
    assert first.minute == 0
    listed = await saved(
        path, flow_text("hourly", schedule="30 * * * *"), lambda f: f.get("hourly", {}).get("schedule") == "30 * * * *"
    )
    assert datetime.fromisoformat(listed["hourly"]["nextRunAt"]).minute == 30
    listed = await saved(path, flow_text("hourly", schedule="@daily"), lambda f: f.get("hourly", {}).get("schedule") == "@daily")
    daily = datetime.fromisoformat(listed["hourly"]["nextRunAt"])
    assert (daily.hour, daily.minute) == (0, 0)
    mark = SIDECAR.mark("cao/flowsChanged")
    path.unlink()
    await SIDECAR.next("cao/flowsChanged", lambda n: "hourly" not in by_name(n["flows"]), since=mark)


async def test_set_flow_enabled_is_kept_until_the_file_changes_enabled(client):
    path = FLOWS / "toggle.md"
    await saved(path, flow_text("toggle"), lambda f: "toggle" in f)
    result = await request(client, "cao/setFlowEnabled", {"name": "toggle", "enabled": False})
    assert result["flow"]["enabled"] is False
    # An unrelated edit keeps the override.
    listed = await saved(path, flow_text("toggle", task="echo edited"), lambda f: f.get("toggle") is not None)
    assert (await flows(client))["toggle"]["enabled"] is False
    # Changing the file's own 'enabled' wins.
    await saved(path, flow_text("toggle", extra="enabled: false\n"), lambda f: True)
    await saved(path, flow_text("toggle", extra="enabled: true\n"), lambda f: True)
    assert (await flows(client))["toggle"]["enabled"] is True
    del listed
    path.unlink()


# ---- runs ------------------------------------------------------------------------------------


async def test_a_run_is_skipped_while_the_previous_one_still_works(client):
    await saved(FLOWS / "slow.md", flow_text("slow", task="sleep 2 slow done"), lambda f: "slow" in f)
    first = (await request(client, "cao/runFlow", {"name": "slow"}))["run"]
    assert first["status"] == "running"
    assert (await flows(client))["slow"]["running"] is True
    second = (await request(client, "cao/runFlow", {"name": "slow"}))["run"]
    assert second["status"] == "skipped" and f"#{first['runId']}" in second["reason"] and second["terminalId"] is None
    done = await SIDECAR.wait_for("cao/workerCompleted", lambda p: p["terminalId"] == first["terminalId"], timeout=30)
    assert done["output"] == "slow done"
    last = await finished("slow")
    assert last["runId"] == first["runId"] and last["status"] == "completed"
    assert [r["status"] for r in db_runs("slow")] == ["completed", "skipped"]


async def test_a_gate_that_says_no(client):
    code = "import sys; print('nothing new since yesterday', file=sys.stderr); sys.exit(1)"
    await saved(FLOWS / "no-exit.md", flow_text("no-exit", extra=py_gate(code)), lambda f: "no-exit" in f)
    run = (await request(client, "cao/runFlow", {"name": "no-exit"}))["run"]
    assert run["status"] == "skipped" and run["terminalId"] is None
    assert run["reason"] == "the gate exited with status 1: nothing new since yesterday"

    code = "import json; print(json.dumps({'run': False, 'reason': 'no commits'}))"
    await saved(FLOWS / "no-json.md", flow_text("no-json", extra=py_gate(code)), lambda f: "no-json" in f)
    run = (await request(client, "cao/runFlow", {"name": "no-json"}))["run"]
    assert run["status"] == "skipped" and run["reason"] == "the gate said no: no commits"
    last = (await flows(client))["no-json"]["lastRun"]
    assert last["status"] == "skipped" and last["endedAt"]
    assert db_runs("no-json")[-1]["reason"] == "the gate said no: no commits"


async def test_a_gate_that_fails(client):
    pid_file = SIDECAR.base / "gate.pid"
    cases = {
        "bad-json": (py_gate("print('{not json')"), "invalid JSON"),
        "not-object": (py_gate("print('[1, 2]')"), "JSON object"),
        "bad-run": (py_gate('print(\'{"run": "yes"}\')'), "true or false"),
        "missing": ("gate: [/nonexistent/gate-program]\n", "could not start"),
        "slow": (
            py_gate(f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)", timeoutSeconds=1),
            "did not finish within 1 s",
        ),
        "no-value": (py_gate("print('{}')"), "no value for {{what}}"),
    }
    for name, (gate, word) in cases.items():
        task = "echo {{what}}" if name == "no-value" else "echo never"
        await saved(
            FLOWS / f"fail-{name}.md", flow_text(f"fail-{name}", extra=gate, task=task), lambda f, n=name: f"fail-{n}" in f
        )
        started = time.monotonic()
        run = (await request(client, "cao/runFlow", {"name": f"fail-{name}"}))["run"]
        assert run["status"] == "gate_failed" and word in run["reason"], (name, run)
        assert time.monotonic() - started < 10
    # The timed-out gate was killed.
    pid = int(pid_file.read_text())
    await asyncio.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not [p for p in SIDECAR.notifications["cao/workerCompleted"] if p["output"] == "never"]


async def test_gate_output_fills_placeholders_in_the_task_only(client):
    marker = SIDECAR.base / "pwned"
    values = {"who": f"$(touch {marker}); `touch {marker}`", "count": 3, "nested": "{{count}}"}
    code = f"import json; print(json.dumps({values!r}))"
    await saved(
        FLOWS / "fill.md",
        flow_text("fill", extra=py_gate(code), task="echo hello {{who}} {{ count }} {{nested}}"),
        lambda f: "fill" in f,
    )
    run = (await request(client, "cao/runFlow", {"name": "fill"}))["run"]
    assert run["status"] == "running", run
    done = await SIDECAR.wait_for("cao/workerCompleted", lambda p: p["terminalId"] == run["terminalId"], timeout=30)
    assert done["output"] == f"hello $(touch {marker}); `touch {marker}` 3 {{{{count}}}}"
    assert not marker.exists()
    assert db_runs("fill")[-1]["task"] == done["output"].replace("hello", "echo hello", 1)


async def test_a_declared_shell_gate_runs_in_the_working_directory(client):
    (WS / "sub").mkdir(exist_ok=True)
    (WS / "sub" / "count.txt").write_text("7\n")
    extra = 'workingDirectory: sub\ngate:\n  shell: "printf \'{\\"n\\": %s}\' $(cat count.txt)"\n'
    await saved(FLOWS / "shell.md", flow_text("shell", extra=extra, task="echo n={{n}}"), lambda f: "shell" in f)
    flow = (await flows(client))["shell"]
    assert flow["workingDirectory"] == str(WS / "sub")
    run = (await request(client, "cao/runFlow", {"name": "shell"}))["run"]
    done = await SIDECAR.wait_for("cao/workerCompleted", lambda p: p["terminalId"] == run["terminalId"], timeout=30)
    assert done["output"] == "n=7"


async def test_a_run_whose_worker_cannot_start_is_recorded_as_failed(client):
    await saved(FLOWS / "ghost.md", flow_text("ghost", profile="no_such_profile"), lambda f: "ghost" in f)
    run = (await request(client, "cao/runFlow", {"name": "ghost"}))["run"]
    assert run["status"] == "failed" and "unknown profile 'no_such_profile'" in run["reason"]
    # ... and the file says so as a warning on the 'profile' line, which clears once the profile exists.
    diagnostics = SIDECAR.diagnostics_for(FLOWS / "ghost.md")
    assert diagnostics and diagnostics[0]["severity"] == 2 and diagnostics[0]["line"] == 4
    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    (WS / ".cao" / "agents").mkdir(parents=True, exist_ok=True)
    atomic_write(WS / ".cao" / "agents" / "ghost.md", profile_text("no_such_profile"))
    assert await SIDECAR.diagnostics_after(FLOWS / "ghost.md", mark) == []


# ---- bad files and hostile input -------------------------------------------------------------

BAD_FLOWS = {
    "bad-cron": (flow_text("bad-cron", schedule="61 * * * *"), 3, "not a valid cron"),
    "six-fields": (flow_text("six-fields", schedule="0 0 * * * *"), 3, "5 fields"),
    "unquoted-cron": ("---\nname: unquoted\nschedule: */5 * * * *\nprofile: mock_developer\n---\necho\n", 3, "quote the cron"),
    "newline-schedule": ('---\nname: nl\nschedule: "0 0 * * *\\nrm -rf /"\nprofile: mock_developer\n---\necho\n', 3, "control"),
    "newline-name": ('---\nname: "a\\nb"\nschedule: "@daily"\nprofile: mock_developer\n---\necho\n', 2, "letters"),
    "traversal-profile": (flow_text("trav", profile="../../x"), 4, "letters"),
    "shell-newline": (flow_text("shn", extra='gate:\n  shell: "true\\nrm -rf ~"\n'), 5, "one line"),
    "both-gates": (flow_text("both", extra="gate:\n  shell: true\n  command: [true]\n"), 5, "exactly one"),
    "gate-type": (flow_text("gtype", extra="gate: 5\n"), 5, "command"),
    "enabled-string": (flow_text("en", extra='enabled: "maybe"\n'), 5, "true or false"),
    "empty-task": (flow_text("empty", task=""), 5, "empty"),
    "python-tag": ("---\nname: tag\nschedule: !!python/object/apply:os.system [true]\nprofile: x\n---\necho\n", 3, "not allowed"),
    "unknown-field": (flow_text("unknown-field", extra="cron: '* * * * *'\n"), 5, "did you mean 'schedule'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLOWS))
async def test_bad_flow_files_get_a_diagnostic_on_their_line(client, case):
    text, line, word = BAD_FLOWS[case]
    path = FLOWS / f"bad-{case}.md"
    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    atomic_write(path, text)
    diagnostics = await SIDECAR.diagnostics_after(path, mark, lambda d: bool(d))
    assert word in diagnostics[0]["message"] and diagnostics[0]["line"] == line, diagnostics
    listed = await flows(client)
    if case == "unknown-field":
        assert diagnostics[0]["severity"] == 2 and "unknown-field" in listed
    else:
        assert diagnostics[0]["severity"] == 1
        assert not any(f["path"] == str(path) for f in listed.values())
    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    atomic_write(path, flow_text(f"fixed-{case}"))
    assert await SIDECAR.diagnostics_after(path, mark) == []
    assert f"fixed-{case}" in await flows(client)
    path.unlink()


async def test_unknown_and_hostile_flow_names_are_refused(client):
    for params, word in (
        ({"name": "nope"}, "no flow named 'nope'"),
        ({"name": "../every-minute"}, "'name' must be"),
        ({"name": "every-minute\n"}, "'name' must be"),
        ({"name": ""}, "'name' must be"),
        ({"name": 7}, "'name'"),
        ({}, "'name'"),
    ):
        error = await rpc_error(client, "cao/runFlow", params)
        assert error.code == -32602 and word in error.message, (params, error.message)
    error = await rpc_error(client, "cao/setFlowEnabled", {"name": "every-minute", "enabled": "no"})
    assert error.code == -32602 and "'enabled'" in error.message
    error = await rpc_error(client, "cao/setFlowEnabled", {"name": "x\x1b[2J", "enabled": True})
    assert error.code == -32602


async def test_a_broken_flow_keeps_its_last_good_version(client):
    path = FLOWS / "sturdy.md"
    await saved(path, flow_text("sturdy", task="echo sturdy"), lambda f: "sturdy" in f)
    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    atomic_write(path, flow_text("sturdy", schedule="every day"))
    await SIDECAR.diagnostics_after(path, mark, lambda d: bool(d))
    flow = (await flows(client))["sturdy"]
    assert flow["stale"] is True and flow["schedule"] == "0 0 1 1 *"
    run = (await request(client, "cao/runFlow", {"name": "sturdy"}))["run"]
    done = await SIDECAR.wait_for("cao/workerCompleted", lambda p: p["terminalId"] == run["terminalId"], timeout=30)
    assert done["output"] == "sturdy"
    path.unlink()


# ---- command line ----------------------------------------------------------------------------


async def test_command_line_flows_verbs(client):
    out = cli(SIDECAR, "flows", "list", "--json")
    assert out.returncode == 0, out.stderr
    listed = by_name(json.loads(out.stdout))
    assert listed["every-minute"]["lastRun"]["status"] == "completed"
    assert listed["report"]["shadows"] == [str(USER_FLOWS / "report.md")]

    out = cli(SIDECAR, "flows", "disable", "report")
    assert out.returncode == 0 and "disabled" in out.stdout
    assert (await flows(client))["report"]["enabled"] is False  # the running sidecar reads the store
    out = cli(SIDECAR, "flows", "enable", "report")
    assert out.returncode == 0 and (await flows(client))["report"]["enabled"] is True

    for hostile in ("../x", "a\nb", "", "report\n"):
        out = cli(SIDECAR, "flows", "run", hostile)
        assert out.returncode == 2 and "not valid" in out.stderr

    socket = f"cao-test-{uuid.uuid4().hex[:10]}"
    try:
        out = cli(SIDECAR, "flows", "run", "no-exit", "--tmux-socket", socket)
        assert out.returncode == 2 and "the gate exited with status 1" in out.stderr, out.stderr
        out = cli(SIDECAR, "flows", "run", "report", "--tmux-socket", socket)
        assert out.returncode == 0 and out.stdout.strip() == "from workspace", (out.stdout, out.stderr)
        out = cli(SIDECAR, "flows", "run", "nope", "--tmux-socket", socket)
        assert out.returncode == 1 and "no flow named 'nope'" in out.stderr
    finally:
        kill_tmux(socket)
    assert os.path.exists(SIDECAR.state_db)


async def test_a_flow_whose_profile_names_a_host_fails_saying_why(client):
    """Flows run on this machine: a flow of a profile with `host: box1` does not start its agent
    here in its place; its run fails saying why."""
    agents = WS / ".cao" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    atomic_write(agents / "boxed.md", "---\nname: boxed\ndescription: on box1\nprovider: mock\nhost: box1\n---\nThere.\n")
    for _ in range(100):  # the profile is live once listed
        if any(p["name"] == "boxed" for p in (await request(client, "cao/listProfiles", {}))["profiles"]):
            break
        await asyncio.sleep(0.1)
    await saved(FLOWS / "far.md", flow_text("far", profile="boxed"), lambda f: "far" in f)
    run = (await request(client, "cao/runFlow", {"name": "far"}))["run"]
    assert run["status"] == "failed" and run["terminalId"] is None, run
    assert "profile 'boxed' runs on host 'box1'" in run["reason"], run
