"""An agent's team tools across hosts (issue 19), against the real test sshd (the account
`caoremote` is the host `box1`; tests/remote_host.py): send_message both ways, list_sessions
showing the whole team, and merge_work by a lead on a host of a worker on the orchestrator's
machine. Every one held to the caller's session, as on one machine."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from pytest_lsp import LanguageClient

from conftest import initialize, kill_tmux, orchestrator_pid, request
from remote_host import children, end_node, host_screen, hosts_yaml, new_workspace, node_processes, sshd_unavailable
from test_editor_common import eventually, new_sidecar, rpc_error

SKIP = sshd_unavailable()
pytestmark = [
    pytest.mark.skipif(SKIP is not None, reason=f"no test sshd: {SKIP}"),
    pytest.mark.timeout(400),  # the first run installs the node on the host (pip)
]

WORKSPACE = new_workspace()
# A profile that names its host: the team's tools run it there when the call names no host.
BOXED = "---\nname: boxed_dev\ndescription: lives on box1\nprovider: mock\nhost: box1\n---\nYou work on box1.\n"
CONFIG, SIDECAR = new_sidecar("hostteam", workspace_profiles={"boxed_dev.md": BOXED})
(SIDECAR.base / "config" / "cao-sidecar").mkdir(parents=True, exist_ok=True)
(SIDECAR.base / "config" / "cao-sidecar" / "hosts.yaml").write_text(hosts_yaml(WORKSPACE))
# One wheel build for every module and run (the node's install is keyed by the sources' hash).
SIDECAR.env["XDG_CACHE_HOME"] = str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cao-sidecar-tests")
SESSION = "team-" + WORKSPACE[-6:]  # the host's state db outlives this run: its own session
OTHER = SESSION + "-other"


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: LanguageClient):
    await initialize(lsp_client, SIDECAR)
    yield
    try:
        await asyncio.wait_for(lsp_client.shutdown_session(), 30)
    finally:
        kill_tmux(SIDECAR.socket)  # the orchestrator first: a live link would start the node again
        end_node(WORKSPACE)
    left = await asyncio.to_thread(node_processes, WORKSPACE, 10)
    assert not left, "left on the host after end_node:\n" + "\n".join(left)


async def spawn(client: LanguageClient, session: str, host: str | None = None) -> str:
    params = {"profile": "mock_developer", "session": session, **({"host": host} if host else {})}
    return (await request(client, "cao/spawn", params, timeout=240))["terminalId"]


async def turn(client: LanguageClient, agent: str, task: str) -> str:
    """`task` typed into `agent`; its answer (a failed tool call: the error's text)."""
    try:
        return (await request(client, "cao/handoff", {"terminalId": agent, "message": task}, timeout=90))["output"]
    except Exception:  # noqa: BLE001 - the tool's error ends the turn: read it from the screen
        return await screen(client, agent)


async def screen(client: LanguageClient, agent: str) -> str:
    return (await request(client, "cao/getOutput", {"terminalId": agent, "mode": "full"}))["output"]


@pytest.mark.asyncio(loop_scope="module")
async def test_messages_and_the_team_list_cross_hosts(client: LanguageClient) -> None:
    here = await spawn(client, SESSION)
    far = await spawn(client, SESSION, "box1")  # box1:1a2b3c4d
    stranger = await spawn(client, OTHER, "box1")  # another session's, on the same host
    assert far.startswith("box1:") and stranger.startswith("box1:")
    far_local = far.split(":", 1)[1]

    # From this machine to a host's agent of the same session; signed so that it can answer.
    said = await turn(client, here, f"send {far} echo from main")
    assert re.search(rf"Message \S+ (delivered|queued) to {far}", said), said
    await eventually(
        lambda: _shows(client, far, f"[message from mock_developer main:{here}] echo from main"), timeout=60, what="on box1"
    )  # fmt: skip
    # And back, up the link, by the name it was signed with.
    said = await turn(client, far, f"send main:{here} echo from box1")
    assert re.search(rf"Message \S+ (delivered|queued) to main:{here}", said), said
    await eventually(
        lambda: _shows(client, here, f"[message from mock_developer {far}] echo from box1"), timeout=60, what="on main"
    )  # fmt: skip

    # Another session's agents are not reached, from either side.
    refused = await turn(client, here, f"send {stranger} echo not yours")
    assert f"no agent '{stranger}' in your session" in refused, refused
    refused = await turn(client, stranger, f"send main:{here} echo not yours")
    assert f"no agent '{here}' in your session" in refused, refused
    assert "echo not yours" not in await screen(client, far)

    # list_sessions: the whole team, wherever it runs; never another session's agents.
    team = await turn(client, here, "team")
    assert far in team and stranger not in team, team
    team = await turn(client, far, "team")
    assert f"main:{here}" in team and f'"{far_local}"' in team and stranger.split(":")[1] not in team, team

    # An unknown host, and a malformed id, are clear errors; the orchestrator goes on.
    refused = await turn(client, here, "send nohost:12345678 echo lost")
    assert "no host 'nohost'" in refused, refused
    exc = await rpc_error(request(client, "cao/sendMessage", {"terminalId": "box1:", "message": "x"}))
    assert exc.message
    for agent in (here, far, stranger):
        await request(client, "cao/terminate", {"terminalId": agent}, timeout=60)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_lead_on_a_host_merges_a_worker_of_main(client: LanguageClient) -> None:
    repo = SIDECAR.workspace / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for step in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "--allow-empty", "-m", "base"]):
        subprocess.run([*git, *step], cwd=repo, check=True, capture_output=True)
    (repo / "notes.txt").write_text("base\n")
    subprocess.run([*git, "add", "notes.txt"], cwd=repo, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-q", "-m", "notes"], cwd=repo, check=True, capture_output=True)

    async def worker(session: str) -> dict[str, Any]:
        params = {
            "profile": "mock_developer", "session": session, "workingDirectory": str(repo), "worktree": True,
            "message": f"edit notes.txt made for {session}",
        }  # fmt: skip
        return await request(client, "cao/handoff", params, timeout=60)

    lead = await spawn(client, SESSION, "box1")
    mine, theirs = await worker(SESSION), await worker(OTHER)
    # Another session's worker: no merge, as on one machine.
    refused = await turn(client, lead, f"merge_work main:{theirs['terminalId']}")
    assert "no open worktree" in refused or "not in your session" in refused, refused
    said = await turn(client, lead, f"merge_work main:{mine['terminalId']}")
    assert "conflict" not in said.lower() and "no open worktree" not in said, said
    assert (repo / "notes.txt").read_text() == f"made for {SESSION}\n"
    await request(client, "cao/discardWorktree", {"terminalId": theirs["terminalId"]}, timeout=60)
    await request(client, "cao/terminate", {"terminalId": lead}, timeout=60)


async def _shows(client: LanguageClient, agent: str, text: str) -> bool:
    return text in await screen(client, agent)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_report_sent_into_a_dead_link_arrives_once(client: LanguageClient) -> None:
    """A box1 worker ends while its link is frozen, so what its node sends then goes into the
    link and no further, and the link is then cut: once the link is back, the lead on main that
    assigned the worker gets its answer once, and the editor cao/workerCompleted once."""
    lead = await spawn(client, SESSION)
    said = await turn(client, lead, "assign mock_developer@box1 sleep 2 ended while the link was cut")
    found = re.search(r"terminal (box1:[0-9a-f]{8})\)", said)
    assert found is not None, said
    worker = found.group(1)
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == worker and p["status"] == "processing", timeout=30)
    (link,) = children(orchestrator_pid(SIDECAR.env), "ssh")
    os.kill(link, signal.SIGSTOP)
    try:
        window = f"mock_developer-{worker.split(':')[1]}"

        async def ended_on_box1() -> bool:
            return (await asyncio.to_thread(host_screen, WORKSPACE, window)).count("ended while the link was cut") >= 2

        await eventually(ended_on_box1, timeout=60, what="the worker's answer on box1")
        await asyncio.sleep(2)  # its node has sent the report by now: into the frozen link
    finally:
        os.kill(link, signal.SIGKILL)
    answer = f"[message from mock_developer worker {worker}] result of the task you assigned: ended while the link was cut"
    await eventually(lambda: _shows(client, lead, answer), timeout=90, what="the answer on main, after the link is back")
    await asyncio.sleep(3)  # a second copy would come by now
    assert (await screen(client, lead)).count(f"› {answer}") == 1  # typed in once
    reports = [p for p in SIDECAR.notifications["cao/workerCompleted"] if p["terminalId"] == worker]
    assert len(reports) == 1 and reports[0]["output"] == "ended while the link was cut", reports
    for agent in (lead, worker):
        await request(client, "cao/terminate", {"terminalId": agent}, timeout=60)


@pytest.mark.asyncio(loop_scope="module")
async def test_an_agents_tools_run_a_profile_on_the_host_it_names(client: LanguageClient) -> None:
    """A lead's handoff and assign of a profile with `host: box1`, naming no host, run it on box1
    (as an editor's do); the answers come back as for any worker."""
    lead = await spawn(client, SESSION)
    said = await turn(client, lead, "assign boxed_dev echo placed by its profile")
    assert re.search(r"Assigned to boxed_dev on box1 \(terminal box1:[0-9a-f]{8}\)", said), said
    worker = re.search(r"terminal (box1:[0-9a-f]{8})", said).group(1)  # type: ignore[union-attr]
    answer = f"[message from boxed_dev worker {worker}] result of the task you assigned: placed by its profile"
    await eventually(lambda: _shows(client, lead, answer), timeout=60, what="the assign's answer")
    assert await turn(client, lead, "handoff boxed_dev echo handed off by its profile") == "handed off by its profile"
    ran = [p["terminalId"] for p in SIDECAR.notifications["cao/agentStatus"] if p.get("profile") == "boxed_dev"]
    assert ran and all(t.startswith("box1:") for t in ran), ran
    assert len(set(ran)) == 2, ran  # the assign's worker and the handoff's
    for agent in (lead, worker):
        await request(client, "cao/terminate", {"terminalId": agent}, timeout=60)
