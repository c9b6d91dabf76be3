"""A team spread over hosts (issue 19), against a real sshd on this machine: the account
`caoremote` is the host `box1` (tests/remote_host.py; .ci/sshd-setup.sh sets it up).

One scenario on one orchestrator (the node is installed on first use, which takes a pip install
the first time): 30 agents on box1 over one ssh connection; an agent there hands off to a local
one, which hands off back to box1; the ssh client is killed mid-turn and nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from pytest_lsp import LanguageClient

from conftest import initialize, kill_tmux, orchestrator_pid, request
from fixtures.scripted_cli import provider_yaml
from remote_host import children, end_node, hosts_yaml, new_workspace, node_processes, ssh, sshd_unavailable
from test_editor_common import error_data, eventually, new_sidecar, rpc_error

SKIP = sshd_unavailable()
pytestmark = [
    pytest.mark.skipif(SKIP is not None, reason=f"no test sshd: {SKIP}"),
    pytest.mark.timeout(400),  # the first run installs the node on the host (pip)
]

WORKSPACE = new_workspace()
THIRD_WORKSPACE = new_workspace()  # box2: the same account, another node (a third machine)
# A profile only this orchestrator's workspace has: a host runs it from the definition sent along.
FAR_PROFILE = "---\nname: far_dev\ndescription: only in the orchestrator's workspace\nprovider: mock\n---\nYou work far away.\n"
# host: auto looks for a profile's CLI: `caoscripted` (tests/fixtures/scripted_cli.py as a
# user-defined provider of the config dir) is on this orchestrator's PATH only; `cao-no-such-cli`
# is nowhere.
PLACED_PROFILES = {
    "scripted_dev.md": "---\nname: scripted_dev\ndescription: a CLI only main has\nprovider: scripted\n---\nYou script.\n",
    "nowhere_dev.md": "---\nname: nowhere_dev\ndescription: a CLI no machine has\nprovider: nowhere\n---\nNo.\n",
    # A user-defined provider of the config dir only: it travels to the host with the profile.
    "custom_dev.md": "---\nname: custom_dev\ndescription: a provider of our own\nprovider: mock_far\n---\nYou mock.\n",
}
CONFIG, SIDECAR = new_sidecar("hosts", workspace_profiles={"far_dev.md": FAR_PROFILE, **PLACED_PROFILES})
(SIDECAR.base / "config" / "cao-sidecar").mkdir(parents=True, exist_ok=True)
(SIDECAR.base / "config" / "cao-sidecar" / "hosts.yaml").write_text(hosts_yaml(WORKSPACE))
_PROVIDERS = SIDECAR.base / "config" / "cao-sidecar" / "providers"
_PROVIDERS.mkdir(parents=True, exist_ok=True)
(_PROVIDERS / "scripted.yaml").write_text(provider_yaml(["caoscripted"]))
(_PROVIDERS / "nowhere.yaml").write_text("command: [cao-no-such-cli]\n")
(_PROVIDERS / "mock_far.yaml").write_text("extends: mock\nstatus:\n  - waiting_user_answer: 'NEEDS A HUMAN'\n")
_BIN = SIDECAR.base / "bin"
_BIN.mkdir()
_SCRIPT = Path(__file__).parent / "fixtures" / "scripted_cli.py"
(_BIN / "caoscripted").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(_SCRIPT))} "$@"\n')
(_BIN / "caoscripted").chmod(0o755)
SIDECAR.env["PATH"] = f"{_BIN}:{SIDECAR.env.get('PATH', os.environ['PATH'])}"
# One wheel build for every module and run (the node's install is keyed by the sources' hash).
SIDECAR.env["XDG_CACHE_HOME"] = str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cao-sidecar-tests")
AGENTS = 30
SESSION = "far-" + WORKSPACE[-6:]  # the host's state db outlives this run: its own session


def _node_sessions() -> tuple[list[int], set[int]]:
    """The node relays of this module's workspace on the "host", and the sshd sessions they run in."""
    relays, sessions = [], set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if b"node" in cmdline and WORKSPACE.encode()[2:] in b" ".join(cmdline) and b"cao_sidecar" in b" ".join(cmdline):
            relays.append(int(entry.name))
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            try:
                if (Path(f"/proc/{parent}/cmdline").read_bytes()).startswith(b"sshd"):
                    sessions.add(parent)
            except OSError:
                pass
    return relays, sessions


def _screen_of(argv: list[str], needle: str, timeout: float = 20) -> str:
    """What `argv` shows in a 120x40 terminal, read until `needle` appears (or `timeout`)."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    viewer = subprocess.Popen(
        argv, stdin=side, stdout=side, stderr=side, start_new_session=True, env={**os.environ, "TERM": "xterm-256color"}
    )  # fmt: skip
    os.close(side)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while needle.encode() not in seen and time.monotonic() < deadline:
            if select.select([main], [], [], 0.2)[0]:
                try:
                    seen += os.read(main, 65536)
                except OSError:
                    break
    finally:
        viewer.kill()
        viewer.wait()
        os.close(main)
    return seen.decode(errors="replace")


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: LanguageClient):
    await initialize(lsp_client, SIDECAR)
    yield
    try:
        await asyncio.wait_for(lsp_client.shutdown_session(), 30)
    finally:
        kill_tmux(SIDECAR.socket)  # the orchestrators first: a live link would start the node again
        # The tests terminated every agent: once no link is left, the node ends by itself, and
        # leaves nothing on the host: no relay, orchestrator, tmux server or agent.
        by_itself = await asyncio.to_thread(node_processes, WORKSPACE, 20)
        end_node(WORKSPACE)
        end_node(THIRD_WORKSPACE)
    left = await asyncio.to_thread(node_processes, WORKSPACE, 10) + await asyncio.to_thread(node_processes, THIRD_WORKSPACE, 10)
    assert not left, "left on the host after end_node:\n" + "\n".join(left)
    assert not by_itself, "left on the host by the idle node:\n" + "\n".join(by_itself)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_team_over_one_ssh_connection(client: LanguageClient) -> None:
    started = time.monotonic()
    # A host that is not in hosts.yaml: a clear error, nothing started.
    exc = await rpc_error(request(client, "cao/spawn", {"profile": "mock_developer", "host": "nope"}))
    assert "unknown host 'nope'" in exc.message and "box1" in exc.message
    # A host without tmux: what it lacks, at once.
    exc = await rpc_error(request(client, "cao/spawn", {"profile": "mock_developer", "host": "notmux"}))
    assert "lacks: tmux" in exc.message, exc.message

    # 30 agents on box1 (the first contact installs the node there).
    first = await request(client, "cao/spawn", {"profile": "mock_developer", "host": "box1", "session": SESSION}, timeout=240)
    assert first["terminalId"].startswith("box1:") and first["status"] == "idle"
    rest = await asyncio.gather(
        *(
            request(client, "cao/spawn", {"profile": "mock_developer", "host": "box1", "session": SESSION}, timeout=120)
            for _ in range(AGENTS - 1)
        )
    )
    ids = {first["terminalId"], *(r["terminalId"] for r in rest)}
    assert len(ids) == AGENTS
    print(f"\n{AGENTS} remote agents up {time.monotonic() - started:.1f} s after the start (install included)")

    # One ssh process for the host, one sshd session, one node relay.
    orchestrator = orchestrator_pid(SIDECAR.env)
    links = children(orchestrator, "ssh")
    relays, sessions = _node_sessions()
    assert len(links) == 1, links
    assert len(relays) == 1 and len(sessions) == 1, (relays, sessions)

    listed = await request(client, "cao/listAgents", {"session": SESSION})
    remote = {a["terminalId"]: a for a in listed["agents"] if a["terminalId"].startswith("box1:")}
    assert set(remote) == ids and all(a["status"] == "idle" for a in remote.values())
    attach = remote[first["terminalId"]]["attachCommand"]
    assert attach[:2] == ["ssh", "-t"] and "tmux" in attach[-1]  # a terminal on the remote window
    # cao/stats: this machine's counts, and each host's link and agents.
    hosts = {h["name"]: h for h in (await request(client, "cao/stats", {}))["hosts"]}
    assert hosts["box1"]["state"] == "connected" and hosts["box1"]["liveAgents"] == AGENTS
    assert hosts["notmux"]["state"] == "failed" and "tmux" in hosts["notmux"]["reason"]

    # host: auto places a new agent where the fewest live agents per CPU run: here, for now.
    placed = await request(client, "cao/spawn", {"profile": "mock_developer", "host": "auto", "session": SESSION}, timeout=60)
    assert ":" not in placed["terminalId"], placed

    # Status and output of a remote agent, as of a local one.
    some = sorted(ids)[0]
    sent = await request(client, "cao/sendMessage", {"terminalId": some, "message": "echo over the link"})
    assert sent["state"] in ("delivered", "queued")
    await eventually(
        lambda: request(client, "cao/getOutput", {"terminalId": some, "mode": "full"}),
        timeout=30, what="the remote agent's answer",
    )  # fmt: skip
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == some and p["status"] == "completed", timeout=30)

    # A remote agent's question, answered by its qualified id; its log, by the same id.
    mark = len(SIDECAR.notifications["cao/agentStatus"])
    await request(client, "cao/sendMessage", {"terminalId": some, "message": "ask proceed?"})

    def asking() -> list[Any]:
        return [
            p for p in SIDECAR.notifications["cao/agentStatus"][mark:]
            if p["terminalId"] == some and p["status"] == "waiting_user_answer" and p.get("prompt")
        ]  # fmt: skip

    question = (await eventually(asking, timeout=30, what="the remote agent's question"))[0]["prompt"]
    answered = await request(client, "cao/answer", {"terminalId": some, "answer": "yes", "promptId": question["id"]})
    assert answered["terminalId"] == some and answered["typed"]

    async def answer_seen() -> bool:
        return "answered: " in (await request(client, "cao/getOutput", {"terminalId": some, "mode": "full"}))["output"]

    await eventually(answer_seen, timeout=30, what="the answer in the remote agent's output")
    log = await request(client, "cao/getLog", {"terminalId": some})
    assert log["events"] and all(e.get("terminalId", "") in ("", some.split(":")[1], some) for e in log["events"])

    # An agent on box1 hands off to a local one, which hands off back to box1.
    chain = await request(
        client, "cao/handoff",
        {"profile": "mock_developer", "host": "box1", "session": SESSION,
         "message": "handoff mock_developer@main handoff mock_developer@box1 echo round trip"},
        timeout=120,
    )  # fmt: skip
    assert chain["output"] == "round trip" and chain["terminalId"].startswith("box1:")
    local_workers = [
        p for p in SIDECAR.notifications["cao/agentStatus"] if ":" not in p["terminalId"] and p["status"] == "processing"
    ]
    assert local_workers, "no local agent took part"

    # The link is killed mid-turn: the turn goes on on the host, the answer still arrives, once.
    before = {
        a["terminalId"]
        for a in (await request(client, "cao/listAgents", {"session": SESSION}))["agents"]
        if a["terminalId"].startswith("box1:")
    }
    mark = len(SIDECAR.notifications["cao/agentStatus"])
    turn = asyncio.ensure_future(
        request(
            client,
            "cao/handoff",
            {"profile": "mock_developer", "host": "box1", "message": "sleep 3 survived", "session": SESSION},
            timeout=120,
        )
    )

    def working() -> list[Any]:
        return [
            p for p in SIDECAR.notifications["cao/agentStatus"][mark:]
            if p["terminalId"].startswith("box1:") and p["status"] == "processing"
        ]  # fmt: skip

    busy = (await eventually(working, timeout=60, what="the remote worker's turn"))[0]
    os.kill(links[0], signal.SIGKILL)
    # Asked while the link is down: answered once it is back.
    during = asyncio.ensure_future(
        request(client, "cao/sendMessage", {"terminalId": some, "message": "echo after the drop"}, timeout=90)
    )
    result = await turn
    assert result["output"] == "survived" and result["terminalId"] == busy["terminalId"]
    assert (await during)["state"] in ("delivered", "queued")
    new_links = await eventually(lambda: children(orchestrator, "ssh"), timeout=30, what="the link back")
    assert len(new_links) == 1 and new_links != links
    assert {h["name"]: h for h in (await request(client, "cao/stats", {}))["hosts"]}["box1"]["connects"] >= 2
    started_since = {p["terminalId"] for p in working() if p["terminalId"] not in before}
    assert started_since == {busy["terminalId"]}, "the handoff ran more than once"

    async def answered_after_drop() -> bool:
        output = (await request(client, "cao/getOutput", {"terminalId": some, "mode": "full"}))["output"]
        return "after the drop" in output

    await eventually(answered_after_drop, timeout=30, what="the message sent while the link was down")

    await asyncio.gather(*(request(client, "cao/terminate", {"terminalId": t}, timeout=60) for t in ids))
    # box1 idle now, one agent here: auto picks box1.
    placed_far = await request(client, "cao/spawn", {"profile": "mock_developer", "host": "auto", "session": SESSION}, timeout=60)
    assert placed_far["terminalId"].startswith("box1:"), placed_far
    for t in (placed["terminalId"], placed_far["terminalId"]):
        await request(client, "cao/terminate", {"terminalId": t}, timeout=60)
    print(f"scenario done in {time.monotonic() - started:.1f} s")


@pytest.mark.asyncio(loop_scope="module")
async def test_profiles_reports_and_worktrees_on_a_host(client: LanguageClient) -> None:
    started = time.monotonic()
    # A profile the host does not have: the orchestrator's definition goes with the request.
    far = await request(
        client, "cao/handoff",
        {"profile": "far_dev", "host": "box1", "session": SESSION, "message": "echo far profile works", "keep": True},
        timeout=60,
    )  # fmt: skip
    assert far["output"] == "far profile works" and far["terminalId"].startswith("box1:")
    listed = await request(client, "cao/listAgents", {"session": SESSION})
    (info,) = [a for a in listed["agents"] if a["terminalId"] == far["terminalId"]]
    assert info["profile"] == "far_dev"
    # Its attachCommand (ssh -t to the host's tmux) shows its live window in a terminal.
    screen = await asyncio.to_thread(_screen_of, info["attachCommand"], "far profile works")
    assert "far profile works" in screen, screen[-2000:]
    await request(client, "cao/terminate", {"terminalId": far["terminalId"]}, timeout=60)

    # An editor's assign on a host: its report comes as cao/workerCompleted, with the qualified id.
    assigned = await request(
        client,
        "cao/assign",
        {"profile": "far_dev", "host": "box1", "session": SESSION, "message": "echo assigned far"},
        timeout=60,
    )
    assert assigned["terminalId"].startswith("box1:")
    report = await SIDECAR.wait_for("cao/workerCompleted", lambda p: p["terminalId"] == assigned["terminalId"], timeout=60)
    assert report["status"] == "completed" and report["output"] == "assigned far" and report["profile"] == "far_dev"
    await request(client, "cao/terminate", {"terminalId": assigned["terminalId"]}, timeout=60)  # an assign keeps its worker

    # Worktrees on a host: in a repository of the remote account (paths are the host's).
    repo = f"{WORKSPACE}/repo"
    made = ssh(
        "caoremote",
        f"mkdir -p {repo} && cd {repo} && git init -q -b main && echo base > notes.txt && git add notes.txt"
        " && git -c user.name=t -c user.email=t@t commit -q -m base && echo ok",
    )  # fmt: skip
    assert made.stdout.strip() == "ok", made.stderr

    async def in_worktree(message: str) -> dict[str, Any]:
        return await request(
            client, "cao/handoff",
            {"profile": "mock_developer", "host": "box1", "session": SESSION, "workingDirectory": repo, "worktree": True,
             "message": message},
            timeout=60,
        )  # fmt: skip

    worked = await in_worktree("edit notes.txt remote work")
    tree = worked["worktree"]
    assert tree["terminalId"] == worked["terminalId"] and worked["terminalId"].startswith("box1:")
    assert tree["branch"].startswith("cao/") and tree["files"] and tree["path"].startswith("/home/")
    open_trees = (await request(client, "cao/listWorktrees", {"session": SESSION}))["worktrees"]
    assert [w["terminalId"] for w in open_trees] == [worked["terminalId"]]
    # A lead agent here merges it with its merge_work tool (a worker of its session).
    lead = await request(client, "cao/spawn", {"profile": "mock_developer", "session": SESSION}, timeout=60)
    said = await request(
        client, "cao/handoff", {"terminalId": lead["terminalId"], "message": f"merge_work {worked['terminalId']}"}, timeout=60
    )
    assert "conflict" not in said["output"].lower() and "no open worktree" not in said["output"], said["output"]
    assert ssh("caoremote", f"cat {repo}/notes.txt").stdout.strip() == "remote work"
    # The editor merges another one, and discards a third.
    second = await in_worktree("edit notes.txt editor merge")
    merged = await request(client, "cao/mergeWorktree", {"terminalId": second["terminalId"]}, timeout=60)
    assert merged["merged"] and merged["worktree"]["terminalId"] == second["terminalId"], merged
    assert ssh("caoremote", f"cat {repo}/notes.txt").stdout.strip() == "editor merge"
    dropped = await in_worktree("edit notes.txt thrown away")
    discarded = await request(client, "cao/discardWorktree", {"terminalId": dropped["terminalId"]}, timeout=60)
    assert discarded["worktree"]["state"] == "discarded"
    assert ssh("caoremote", f"cat {repo}/notes.txt").stdout.strip() == "editor merge"
    # Another session's lead cannot merge it (as on this machine).
    other = await in_worktree("edit notes.txt not yours")
    stranger = await request(client, "cao/spawn", {"profile": "mock_developer", "session": SESSION + "x"}, timeout=60)
    await rpc_error(
        request(
            client,
            "cao/handoff",
            {"terminalId": stranger["terminalId"], "message": f"merge_work {other['terminalId']}"},
            timeout=60,
        )
    )
    refused = (await request(client, "cao/getOutput", {"terminalId": stranger["terminalId"], "mode": "full"}))["output"]
    assert f"no open worktree for worker '{other['terminalId']}'" in refused, refused
    await request(client, "cao/discardWorktree", {"terminalId": other["terminalId"]}, timeout=60)
    for agent in (lead, stranger):
        await request(client, "cao/terminate", {"terminalId": agent["terminalId"]}, timeout=60)
    assert not (await request(client, "cao/listWorktrees", {"session": SESSION}))["worktrees"]
    exc = await rpc_error(request(client, "cao/mergeWorktree", {"terminalId": "box1:00000000"}))
    assert "00000000" in exc.message
    print(f"profiles, reports and worktrees on the host: {time.monotonic() - started:.1f} s")


@pytest.mark.asyncio(loop_scope="module")
async def test_auto_places_where_the_profile_fits(client: LanguageClient) -> None:
    """host: auto skips a machine without the profile's CLI, even the emptier one; a profile no
    machine can run is a clear error saying what each lacks, and the orchestrator goes on."""
    started = time.monotonic()
    busy = await request(client, "cao/spawn", {"profile": "mock_developer", "session": SESSION}, timeout=60)
    # main has a live agent, box1 none: a mock agent (no CLI needed) goes to box1 ...
    far = await request(client, "cao/spawn", {"profile": "mock_developer", "host": "auto", "session": SESSION}, timeout=60)
    assert far["terminalId"].startswith("box1:"), far
    await request(client, "cao/terminate", {"terminalId": far["terminalId"]}, timeout=60)
    # ... and one whose CLI only main has goes to main.
    scripted = await request(client, "cao/spawn", {"profile": "scripted_dev", "host": "auto", "session": SESSION}, timeout=60)
    assert ":" not in scripted["terminalId"], scripted
    exc = await rpc_error(
        request(client, "cao/spawn", {"profile": "nowhere_dev", "host": "auto", "session": SESSION}, timeout=90)
    )
    assert "no machine can run profile 'nowhere_dev'" in exc.message, exc.message
    assert "main lacks the command `cao-no-such-cli`" in exc.message and "box1 lacks the command" in exc.message, exc.message
    assert "notmux lacks a connection" in exc.message and "tmux" in exc.message, exc.message
    assert set(error_data(exc)["lacking"]) == {"main", "box1", "notmux"}
    listed = await request(client, "cao/listAgents", {"session": SESSION})  # the orchestrator goes on
    assert {busy["terminalId"], scripted["terminalId"]} <= {a["terminalId"] for a in listed["agents"]}
    for agent in (busy, scripted):
        await request(client, "cao/terminate", {"terminalId": agent["terminalId"]}, timeout=60)
    print(f"placement: {time.monotonic() - started:.1f} s")


@pytest.mark.asyncio(loop_scope="module")
async def test_a_host_agents_assign_reports_to_it(client: LanguageClient) -> None:
    """An agent on box1 assigns work to a worker on main: the worker's report is typed into that
    agent on box1 (the editors see the worker's cao/workerCompleted once, as for a local agent's
    assign); a report made while the link is down waits and arrives once it is back."""
    started = time.monotonic()
    lead = await request(client, "cao/spawn", {"profile": "mock_developer", "host": "box1", "session": SESSION}, timeout=60)
    lead_id = lead["terminalId"]

    async def assign_from_box1(task: str) -> str:
        said = await request(
            client, "cao/handoff", {"terminalId": lead_id, "message": f"assign mock_developer@main {task}"}, timeout=60
        )
        found = re.search(r"terminal main:([0-9a-f]{8})\)", said["output"])  # as box1 names it
        assert found is not None and "on main" in said["output"], said["output"]
        return found.group(1)

    async def lead_shows(text: str) -> bool:
        return text in (await request(client, "cao/getOutput", {"terminalId": lead_id, "mode": "full"}))["output"]

    def reports_of(worker: str) -> list[Any]:
        return [p for p in SIDECAR.notifications["cao/workerCompleted"] if p["terminalId"] == worker]

    worker = await assign_from_box1("echo made on main")
    await eventually(lambda: lead_shows("result of the task you assigned: made on main"), timeout=60, what="the report on box1")
    assert len(reports_of(worker)) == 1 and reports_of(worker)[0]["output"] == "made on main"

    # The link goes down before the worker ends, and stays down until its report is stored.
    orchestrator = orchestrator_pid(SIDECAR.env)
    late = await assign_from_box1("sleep 2 made while the link was down")
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == late and p["status"] == "processing", timeout=30)
    while not reports_of(late):
        for pid in children(orchestrator, "ssh"):
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.05)
    await eventually(
        lambda: lead_shows("result of the task you assigned: made while the link was down"), timeout=60, what="the late report"
    )  # fmt: skip
    output = (await request(client, "cao/getOutput", {"terminalId": lead_id, "mode": "full"}))["output"]
    assert output.count(f"› [message from mock_developer worker main:{late}]") == 1, output  # typed in once
    for agent in (lead_id, worker, late):
        await request(client, "cao/terminate", {"terminalId": agent}, timeout=60)
    print(f"a host agent's assign reported to it: {time.monotonic() - started:.1f} s")


def _with_box2() -> str:
    """hosts.yaml with box2 too: the same account as box1, another node (a third machine)."""
    box2 = hosts_yaml(THIRD_WORKSPACE).split("  - name: notmux")[0].replace("name: box1", "name: box2").split("hosts:\n")[1]
    return hosts_yaml(WORKSPACE) + box2


@pytest.mark.asyncio(loop_scope="module")
async def test_a_third_hosts_worker_reports_to_the_host_agent(client: LanguageClient) -> None:
    """An agent on box1 assigns work to a worker on box2 (a third machine): its report comes to
    that agent on box1, through the orchestrator."""
    hosts_file = SIDECAR.base / "config" / "cao-sidecar" / "hosts.yaml"
    hosts_file.write_text(_with_box2())
    try:
        lead = await request(client, "cao/spawn", {"profile": "mock_developer", "host": "box1", "session": SESSION}, timeout=60)
        said = await request(
            client, "cao/handoff", {"terminalId": lead["terminalId"], "message": "assign mock_developer@box2 echo made on box2"},
            timeout=120,
        )  # fmt: skip
        found = re.search(r"terminal (box2:[0-9a-f]{8})\)", said["output"])
        assert found is not None, said["output"]

        async def reported() -> bool:
            output = (await request(client, "cao/getOutput", {"terminalId": lead["terminalId"], "mode": "full"}))["output"]
            return (
                f"[message from mock_developer worker {found.group(1)}] result of the task you assigned: made on box2" in output
            )

        await eventually(reported, timeout=60, what="box2's report on box1")
        for agent in (lead["terminalId"], found.group(1)):
            await request(client, "cao/terminate", {"terminalId": agent}, timeout=60)
    finally:
        hosts_file.write_text(hosts_yaml(WORKSPACE))


@pytest.mark.asyncio(loop_scope="module")
async def test_a_user_provider_travels_with_its_profile(client: LanguageClient) -> None:
    """A profile on a user-defined provider the host does not have: the provider's file goes
    with the request (kept in the node's memory), and the agent runs on it there."""
    spawned = await request(client, "cao/spawn", {"profile": "custom_dev", "host": "box1", "session": SESSION}, timeout=60)
    assert spawned["terminalId"].startswith("box1:") and spawned["provider"] == "mock_far", spawned
    # Its own status rule reads the screen on the host: these words mean a question.
    await request(client, "cao/sendMessage", {"terminalId": spawned["terminalId"], "message": "echo NEEDS A HUMAN"})
    await SIDECAR.wait_for(
        "cao/agentStatus",
        lambda p: p["terminalId"] == spawned["terminalId"] and p["status"] == "waiting_user_answer",
        timeout=30,
    )  # fmt: skip
    await request(client, "cao/terminate", {"terminalId": spawned["terminalId"]}, timeout=60)
    assert "mock_far" not in ssh("caoremote", "ls ~/.config/cao-sidecar/providers 2>/dev/null").stdout  # memory only


def test_placement_weighs_memory() -> None:
    from cao_sidecar.hosts.install import Probe
    from cao_sidecar.hosts.placement import Needs, capacity_here, capacity_probe, host_lacks, lacks, no_fit_error

    needs = Needs("dev", "claude", 400)
    assert lacks(needs, True, 399) == ["memory (399 MiB free, 400 MiB wanted)"]
    assert lacks(needs, True, 0) == [] and lacks(needs, True, 4000) == []  # 0: unknown, not held against it
    assert host_lacks(needs, Probe(reachable=True, clis=("codex",), memory_mb=8000)) == ["the command `claude`"]
    assert host_lacks(Needs("m", None, 400), Probe(reachable=True, memory_mb=8000)) == []
    # A node says what it has (its own PATH and memory); what it says is read with care.
    here = capacity_here({"commands": ["sh", "cao-no-such-cli"]})
    assert here["commands"] == ["sh"] and here["cpus"] >= 1 and here["memoryMb"] > 0
    assert capacity_here({"commands": "sh"})["commands"] == [] and capacity_here(None)["commands"] == []
    assert capacity_probe({"cpus": 4, "memoryMb": 900, "commands": ["claude", 3]}).clis == ("claude",)
    assert capacity_probe("nonsense") == Probe(reachable=True)
    error = no_fit_error(needs, {"main": ["the command `claude`"], "box1": ["memory (10 MiB free, 400 MiB wanted)"]})
    assert "main lacks the command `claude`; box1 lacks memory" in error.message


def test_hosts_check_says_what_a_host_lacks() -> None:
    env = {**SIDECAR.env}

    def check(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cao_sidecar", "hosts", "check", name], env=env, capture_output=True, text=True, timeout=60
        )

    notmux = check("notmux")
    assert notmux.returncode == 1, notmux.stdout + notmux.stderr
    assert "tmux: missing" in notmux.stdout and "missing: tmux" in notmux.stdout
    assert "python3: 3." in notmux.stdout
    ready = check("box1")
    assert ready.returncode == 0 and "ready" in ready.stdout and "tmux: tmux " in ready.stdout, ready.stdout + ready.stderr
    # Your user-defined providers travel to a host: whether their commands are there.
    assert "your provider nowhere: `cao-no-such-cli` NOT found" in ready.stdout, ready.stdout
    unknown = check("nope")
    assert unknown.returncode == 2 and "unknown host 'nope'" in unknown.stderr


@pytest.mark.asyncio(loop_scope="module")
async def test_a_restarted_orchestrator_links_to_its_hosts_again(tmp_base: Path) -> None:
    """The orchestrator crashes: its successor links to the hosts the team used, by itself, and
    lists their agents (which kept running) before anyone asks a host for anything."""
    from cao_client.client import CaoClient

    from conftest import isolated_env, kill_orchestrator

    env = isolated_env(tmp_base)
    env["XDG_CACHE_HOME"] = SIDECAR.env["XDG_CACHE_HOME"]
    (tmp_base / "config" / "cao-sidecar").mkdir(parents=True, exist_ok=True)
    (tmp_base / "config" / "cao-sidecar" / "hosts.yaml").write_text(_with_box2())
    session = "restart-" + WORKSPACE[-6:]
    reported: list[Any] = []

    def on_notification(method: str, params: Any) -> None:
        if method == "cao/workerCompleted":
            reported.append(params["terminalId"])

    try:
        async with CaoClient.start(
            workspace=tmp_base / "workspace", env=env, stderr=subprocess.DEVNULL, on_notification=on_notification
        ) as cao:  # fmt: skip
            far = await cao.request("cao/spawn", {"profile": "mock_developer", "host": "box1", "session": session})
            # A worker on box2 for the agent on box1: it ends after the crash; the route survives it.
            said = await cao.handoff("assign mock_developer@box2 sleep 6 via box2 across a crash", terminal_id=far["terminalId"])
            third = re.search(r"terminal (box2:[0-9a-f]{8})\)", said["output"])
            assert third is not None, said["output"]
            # The agent on box1 assigns work to main; the link is down when the worker's report is
            # stored, and the orchestrator crashes before it is back: its successor delivers it.
            said = await cao.handoff("assign mock_developer@main sleep 1 kept across a crash", terminal_id=far["terminalId"])
            found = re.search(r"terminal main:([0-9a-f]{8})\)", said["output"])  # as box1 names it
            assert found is not None, said["output"]
            orchestrator, deadline = orchestrator_pid(env), time.monotonic() + 60
            while found.group(1) not in reported and time.monotonic() < deadline:
                for pid in children(orchestrator, "ssh"):  # box1's link only
                    with contextlib.suppress(OSError):
                        if WORKSPACE[2:].encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                            os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.05)
            assert found.group(1) in reported, "the main worker did not report"
            kill_orchestrator(env)
        async with CaoClient.start(workspace=tmp_base / "workspace", env=env, stderr=subprocess.DEVNULL) as cao:

            async def listed() -> bool:
                return any(a["terminalId"] == far["terminalId"] for a in await cao.list_agents(session))

            await eventually(listed, timeout=60, what="the remote agent listed after the restart")

            async def reported_to_far() -> bool:
                output = await cao.get_output(far["terminalId"], "full")
                return "result of the task you assigned: kept across a crash" in output

            await eventually(reported_to_far, timeout=60, what="the report, after the restart")

            async def box2_reported_to_far() -> bool:
                output = await cao.get_output(far["terminalId"], "full")
                return (
                    f"[message from mock_developer worker {third.group(1)}] result of the task you assigned: via box2 across a crash"
                    in output
                )

            await eventually(box2_reported_to_far, timeout=60, what="box2's report, after the restart")
            for agent in (far["terminalId"], found.group(1), third.group(1)):
                await cao.terminate(agent)
            await cao.request("cao/shutdown", {})
    finally:
        kill_tmux(env["CAO_TMUX_SOCKET"])
