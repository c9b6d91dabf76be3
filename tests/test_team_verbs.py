"""The terminal verbs on the team (`agents`, `spawn`, `launch`, `handoff`, `assign`, `send`,
`answer`, `attach`, `terminate`, `status`, `shutdown`), each run as a real `cao-sidecar` process on
the mock provider and a real tmux server: what they print, their exit codes, and that `attach` and
`launch` really attach a terminal."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cao_client import CaoClient
from conftest import (
    initialize,
    isolated_env,
    kill_tmux,
    request,
    sidecar_config,
)
from test_terminal_verbs import Terminal, sidecar

ID = re.compile(r"^[0-9a-f]{8}$")


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    subprocess.run(
        sidecar("shutdown", "--terminate-agents"),
        env=env,
        cwd=tmp_base / "workspace",
        check=False,
        capture_output=True,
        timeout=60,
    )
    kill_tmux(env["CAO_TMUX_SOCKET"])


def verb(env: dict[str, str], cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sidecar(*args), env=env, cwd=cwd, stdin=subprocess.DEVNULL, check=False, capture_output=True, text=True, timeout=timeout
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], code: int, words: str) -> str:
    """The verb ended with `code` and said `words` on stderr: one line (argparse's usage errors:
    the usage, then the line)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert words in lines[-1], result.stderr
    assert len(lines) == 1 or lines[0].startswith("usage:"), result.stderr
    return result.stderr


def screen_shows(env: dict[str, str], text: str, timeout: float = 60.0) -> str:
    """Wait until some agent's tmux pane shows `text`; return that screen."""
    socket = env["CAO_TMUX_SOCKET"]
    deadline = time.monotonic() + timeout
    screens = ""
    while time.monotonic() < deadline:
        panes = subprocess.run(
            ["tmux", "-L", socket, "list-panes", "-a", "-F", "#{pane_id}"], check=False, capture_output=True, text=True
        ).stdout.split()
        screens = ""
        for pane in panes:
            screen = subprocess.run(
                ["tmux", "-L", socket, "capture-pane", "-p", "-t", pane], check=False, capture_output=True, text=True
            ).stdout
            if text in screen:
                return screen
            screens += screen
        time.sleep(0.3)
    raise AssertionError(f"no pane showed {text!r}; the panes show:\n{screens}")


def agents_json(env: dict[str, str], cwd: Path) -> list[dict]:
    return json.loads(ok(verb(env, cwd, "agents", "--json")))["agents"]


def tmux_clients(env: dict[str, str]) -> str:
    return subprocess.run(
        ["tmux", "-L", env["CAO_TMUX_SOCKET"], "list-clients", "-F", "#{client_tty} #{session_name}"],
        check=False,
        capture_output=True,
        text=True,
    ).stdout


def test_spawn_agents_send_and_terminate_by_name_and_prefix(env, tmp_base):
    ws = tmp_base / "workspace"
    spawned = verb(env, ws, "spawn", "mock_developer", "--name", "dev-one")
    terminal_id = ok(spawned).strip()
    assert ID.match(terminal_id), spawned.stdout
    assert f"cao-sidecar attach {terminal_id}" in spawned.stderr

    listed = agents_json(env, ws)
    assert [(a["terminalId"], a["name"], a["profile"], a["provider"]) for a in listed] == [
        (terminal_id, "dev-one", "mock_developer", "mock")
    ]
    assert listed[0]["workingDirectory"] == str(ws.resolve())
    table = ok(verb(env, ws, "agents")).splitlines()
    assert table[0].split() == ["ID", "NAME", "PROFILE", "PROVIDER", "STATUS", "AGE", "QUESTION"]
    assert table[1].split()[:4] == [terminal_id, "dev-one", "mock_developer", "mock"]
    assert "\x1b[" not in "".join(table)  # not a terminal: no colours

    sent = ok(verb(env, ws, "send", "dev-one", "echo hello from the terminal"))
    assert re.match(rf"(delivered to|queued for) {terminal_id} \(dev-one\)", sent), sent
    screen_shows(env, "● hello from the terminal")

    ended = ok(verb(env, ws, "terminate", terminal_id[:4]))
    assert ended.startswith(f"terminated {terminal_id} (dev-one)")
    assert all(a["status"] == "exited" for a in agents_json(env, ws) if a["terminalId"] == terminal_id)
    assert ok(verb(env, ws, "agents")).strip() == "no agents (start one: cao-sidecar spawn PROFILE)"


def test_an_ambiguous_or_unknown_agent_is_a_clear_error(env, tmp_base):
    ws = tmp_base / "workspace"
    first = ok(verb(env, ws, "spawn", "mock_developer", "--name", "w-a")).strip()
    second = ok(verb(env, ws, "spawn", "mock_reviewer", "--name", "w-b")).strip()
    text = failed(verb(env, ws, "terminate", "w-"), 1, "'w-' could be 2 agents")
    assert f"{first} (w-a) mock_developer" in text and f"{second} (w-b) mock_reviewer" in text
    failed(verb(env, ws, "send", "nobody", "hi"), 1, "no agent 'nobody' in this team; `cao-sidecar agents` lists the agents")
    failed(verb(env, ws, "answer", "w-a", "Yes"), 1, "is not waiting for an answer")
    assert {a["terminalId"] for a in agents_json(env, ws) if a["status"] != "exited"} == {first, second}  # nothing ended
    ok(verb(env, ws, "terminate", "w-b"))
    failed(verb(env, ws, "attach", "w-a"), 2, "attach needs a terminal")


def test_bad_inputs_exit_with_usage_or_failure_and_one_line(env, tmp_base):
    ws = tmp_base / "workspace"
    failed(verb(env, ws, "spawn", "no_such_profile"), 1, "unknown profile 'no_such_profile'")
    failed(verb(env, ws, "handoff", "mock_developer", "fail the disk is full"), 1, "reported an error")
    failed(verb(env, ws, "spawn", "mock_developer", "--cwd", str(tmp_base / "nowhere")), 2, "is not a directory")
    failed(verb(env, ws, "agents", "--project", str(tmp_base / "nowhere")), 2, "is not a directory")
    failed(verb(env, ws, "send", "someone"), 2, "the following arguments are required: message")
    failed(verb(env, ws, "agents", "--frobnicate"), 2, "unrecognized arguments")
    failed(verb(env, ws, "launch", "mock_developer"), 2, "launch needs a terminal")
    assert agents_json(env, ws) == []  # none of them left an agent behind


def test_handoff_and_assign_print_the_workers_answer(env, tmp_base):
    ws = tmp_base / "workspace"
    assert ok(verb(env, ws, "handoff", "mock_reviewer", "echo reviewed: fine")) == "reviewed: fine\n"
    (tmp_base / "sub").mkdir()
    assert ok(verb(env, ws, "handoff", "mock_reviewer", "echo in sub", "--cwd", str(tmp_base / "sub"))) == "in sub\n"
    assert ok(verb(env, ws, "logs")).count(f'workingDirectory="{tmp_base / "sub"}"') == 1
    assert ok(verb(env, ws, "assign", "mock_developer", "echo built in the background", "--wait")) == "built in the background\n"
    failed(verb(env, ws, "assign", "mock_developer", "fail no room", "--wait"), 1, "reported an error")
    worker = ok(verb(env, ws, "assign", "mock_developer", "echo later")).strip()
    assert ID.match(worker)
    assert worker in {a["terminalId"] for a in agents_json(env, ws)}


def test_agents_watch_prints_each_status_change_from_notifications(env, tmp_base):
    ws = tmp_base / "workspace"
    worker = ok(verb(env, ws, "assign", "mock_developer", "sleep 4 slow answer")).strip()
    watch = subprocess.Popen(
        sidecar("agents", "--watch"),
        env=env,
        cwd=ws,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = watch.stdout.readline()
            if not line:
                break
            seen.append(line)
            if re.search(rf"\d\d:\d\d:\d\d  {worker}  mock_developer  \w+ -> completed", line):
                break
        assert seen and seen[0].split()[0] == "ID", seen
        assert any(re.search(rf"{worker}  mock_developer  \w+ -> completed", line) for line in seen), seen
        assert not any("\x1b" in line for line in seen)  # a pipe: no redraws, no colours
    finally:
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=30) == 0, watch.stderr.read()


def test_agents_watch_json_prints_one_snapshot_per_change(env, tmp_base):
    ws = tmp_base / "workspace"
    spawned = json.loads(ok(verb(env, ws, "spawn", "mock_developer", "--name", "json-dev", "--json")))
    assert (spawned["profile"], spawned["name"], spawned["status"]) == ("mock_developer", "json-dev", "idle")
    watch = subprocess.Popen(
        sidecar("agents", "--watch", "--json"),
        env=env,
        cwd=ws,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(watch.stdout.readline())
        assert [(a["terminalId"], a["status"]) for a in first["agents"]] == [(spawned["terminalId"], "idle")]
        ok(verb(env, ws, "send", "json-dev", "sleep 1 done"))
        statuses = []
        while "completed" not in statuses:
            snapshot = json.loads(watch.stdout.readline())  # every line a whole {"agents": [...]}
            statuses.append(next(a["status"] for a in snapshot["agents"] if a["terminalId"] == spawned["terminalId"]))
        assert statuses[-2:] == ["processing", "completed"], statuses
    finally:
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=30) == 0, watch.stderr.read()


def test_agents_watch_on_a_terminal_redraws_the_table(env, tmp_base):
    ws = tmp_base / "workspace"
    worker = ok(verb(env, ws, "assign", "mock_developer", "sleep 4 slow answer")).strip()
    term = Terminal(sidecar("agents", "--watch"), env, str(ws), stdout_too=True)
    try:
        term.read_until("live (Ctrl-C ends)")
        term.read_until("completed", timeout=90)
        assert term.seen.count("\x1b[H\x1b[2J") >= 2, term.seen
        assert worker in term.seen
        term.proc.send_signal(signal.SIGINT)
        assert term.proc.wait(timeout=30) == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_answer_a_question_from_a_script_and_from_a_terminal(env, tmp_base):
    ws = tmp_base / "workspace"
    agent = ok(verb(env, ws, "spawn", "mock_developer", "--name", "asker")).strip()
    ok(verb(env, ws, "send", "asker", "ask Delete the build directory?"))
    screen_shows(env, "Delete the build directory?")
    text = failed(verb(env, ws, "answer", "asker"), 2, "give the answer as CHOICE")
    assert "asks: Delete the build directory? [choices: Yes / No]" in text
    answered = ok(verb(env, ws, "answer", "ask", "yes"))
    assert answered.startswith(f"answered {agent} (asker)"), answered
    screen_shows(env, "answered: y")

    ok(verb(env, ws, "send", agent, "ask Remove the cache too?"))
    screen_shows(env, "Remove the cache too?")
    term = Terminal(sidecar("answer", agent[:5]), env, str(ws))
    try:
        term.read_until("answer (a number or the text of a choice, then Enter)")
        assert "asks: Remove the cache too?" in term.seen and "2) No" in term.seen
        term.type("2")
        code, out = term.finish()
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    assert code == 0 and out.startswith(f"answered {agent}"), (code, out, term.seen)
    screen_shows(env, "answered: n")

    # Two terminals on one question: the first answer wins, the other learns it and types nothing.
    ok(verb(env, ws, "send", agent, "ask Empty the trash?"))
    screen_shows(env, "Empty the trash?")
    term = Terminal(sidecar("answer", "asker"), env, str(ws))
    try:
        term.read_until("answer (a number or the text of a choice, then Enter)")
        ok(verb(env, ws, "answer", "asker", "No"))
        term.read_until("was answered elsewhere or is gone; nothing was typed")
        code, _out = term.finish()
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    assert code == 1
    after = screen_shows(env, "Empty the trash?\n  [y/n] › n\n● answered: n").split("Empty the trash?")[-1]
    assert after.count("answered:") == 1 and "answered: n" in after, after  # typed once, the first answer


def test_attach_execs_tmux_attach_on_the_agents_window(env, tmp_base):
    ws = tmp_base / "workspace"
    agent = ok(verb(env, ws, "spawn", "mock_developer", "--name", "viewer")).strip()
    term = Terminal(sidecar("attach", "view"), {**env, "TERM": "xterm"}, str(ws), stdout_too=True)
    try:
        term.read_until("profile mock_developer")  # the agent's screen, drawn by tmux in our terminal
        assert term.proc.poll() is None
        assert Path(f"/proc/{term.proc.pid}/exe").resolve().name.startswith("tmux")  # exec'd: same pid
        assert tmux_clients(env).strip(), "no tmux client attached"
    finally:
        term.proc.kill()
        term.proc.wait(timeout=30)
    assert any(a["terminalId"] == agent and a["status"] != "exited" for a in agents_json(env, ws))


def test_launch_spawns_an_agent_and_attaches_to_it(env, tmp_base):
    ws = tmp_base / "workspace"
    term = Terminal(sidecar("launch", "mock_reviewer", "--name", "launched"), {**env, "TERM": "xterm"}, str(ws), stdout_too=True)
    try:
        term.read_until("profile mock_reviewer", timeout=90)
        assert Path(f"/proc/{term.proc.pid}/exe").resolve().name.startswith("tmux")
        assert tmux_clients(env).strip()
    finally:
        term.proc.kill()
        term.proc.wait(timeout=30)
    assert [a["name"] for a in agents_json(env, ws) if a["profile"] == "mock_reviewer"] == ["launched"]


def test_status_shows_the_project_orchestrator_and_agents(env, tmp_base):
    ws = tmp_base / "workspace"
    ok(verb(env, ws, "spawn", "mock_developer"))
    report = json.loads(ok(verb(env, ws, "status", "--json")))
    assert report["project"] == str(ws.resolve())
    assert report["tmuxSocket"] == env["CAO_TMUX_SOCKET"]
    assert report["orchestrator"]["pid"] > 0 and report["orchestrator"]["uptimeSeconds"] >= 0
    assert report["agents"]["total"] == 1 and sum(report["agents"]["byStatus"].values()) == 1
    text = ok(verb(env, ws, "status"))
    assert f"project       {ws.resolve()}" in text and "orchestrator  pid " in text and "agents        1 (" in text


async def test_shutdown_ends_the_orchestrator_or_says_it_cannot(env, tmp_base):
    ws = tmp_base / "workspace"
    async with CaoClient.start(workspace=ws, env=env) as probe:
        methods = probe.capabilities["experimental"]["cao"]["methods"]
    result = verb(env, ws, "shutdown")
    if "cao/shutdown" in methods:
        assert result.returncode == 0 and "is shut down" in result.stderr, result.stderr
    else:
        failed(result, 1, "has no cao/shutdown")


async def averb(env: dict[str, str], cwd: Path, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    """A verb run without blocking the event loop (the editor's notifications arrive meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        *sidecar(*args), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def test_the_verbs_see_and_drive_the_agents_an_editor_started(tmp_base):
    config, editor = sidecar_config(tmp_base)
    env, ws = editor.env, editor.workspace
    client = await config.start()
    try:
        await initialize(client, editor)
        spawned = await request(client, "cao/spawn", {"profile": "mock_developer", "name": "editors-dev"}, timeout=90)
        agent = spawned["terminalId"]

        code, out, err = await averb(env, ws, "agents", "--json")
        assert code == 0, err
        assert [(a["terminalId"], a["name"], a["status"]) for a in json.loads(out)["agents"]] == [(agent, "editors-dev", "idle")]

        # The terminal acts, the editor sees it live.
        watch = await asyncio.create_subprocess_exec(
            *sidecar("agents", "--watch"),
            env=env,
            cwd=ws,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert (await asyncio.wait_for(watch.stdout.readline(), 60)).decode().split()[0] == "ID"
        code, out, err = await averb(env, ws, "send", "editors", "echo typed in a terminal")
        assert code == 0 and out.startswith(f"delivered to {agent} (editors-dev)"), (out, err)
        await editor.wait_for("cao/agentStatus", lambda p: p["terminalId"] == agent and p["status"] == "completed", timeout=60)
        assert await request(client, "cao/getOutput", {"terminalId": agent}) == {"output": "typed in a terminal"}

        # The editor acts, the terminal's watch sees it.
        await request(client, "cao/sendMessage", {"terminalId": agent, "message": "sleep 1 from the editor"})
        lines = []
        while not any(re.search(rf"{agent}  mock_developer  processing -> completed", line) for line in lines):
            lines.append((await asyncio.wait_for(watch.stdout.readline(), 60)).decode())
        watch.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(watch.wait(), 30) == 0

        # `run` joins the editor's team (it used to be refused while an editor ran one).
        code, out, err = await averb(env, ws, "run", "--profile", "mock_reviewer", "echo reviewed for the editor")
        assert (code, out) == (0, "reviewed for the editor\n"), err
        assert any(p["profile"] == "mock_reviewer" for p in editor.notifications["cao/agentStatus"])

        code, out, err = await averb(env, ws, "terminate", "editors-dev")
        assert code == 0, err
        await editor.wait_for("cao/agentStatus", lambda p: p["terminalId"] == agent and p["status"] == "exited", timeout=60)
    finally:
        await asyncio.wait_for(client.shutdown_session(), 30)
        await client.stop()
        await averb(env, ws, "shutdown", "--terminate-agents")
        kill_tmux(env["CAO_TMUX_SOCKET"])
