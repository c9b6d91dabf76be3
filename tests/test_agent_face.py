"""The agent face end to end: mock agents call the sidecar's MCP tools; real MCP clients too."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from pathlib import Path

import httpx2
import pytest
import pytest_lsp
from pytest_lsp import LanguageClient
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from cao_sidecar.providers import mcp_config
from conftest import initialize, kill_tmux, request, sidecar_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE = Path(tempfile.mkdtemp(prefix="cao-agent-face-"))
CONFIG, SIDECAR = sidecar_config(BASE)


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: LanguageClient):
    await initialize(lsp_client, SIDECAR)
    yield
    await lsp_client.shutdown_session()
    kill_tmux(SIDECAR.socket)


def agent_dir(terminal_id: str) -> Path:
    return Path(SIDECAR.env["XDG_STATE_HOME"]) / "cao-sidecar" / "agents" / terminal_id


def transcript(terminal_id: str) -> list[dict]:
    path = agent_dir(terminal_id) / "transcript.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def agent_environ(terminal_id: str, name: str | None = None) -> dict[str, str]:
    """The environment the sidecar gave an agent, read from its process."""
    out = SIDECAR.tmux("list-panes", "-a", "-F", "#{window_name}\t#{pane_pid}")
    for line in out.splitlines():
        window, _, pid = line.partition("\t")
        if window == name or window.endswith(terminal_id):
            raw = Path(f"/proc/{pid}/environ").read_bytes()
            return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    raise AssertionError(f"no pane for {terminal_id}")


async def spawn(client, profile: str = "mock_supervisor", **extra) -> str:
    result = await request(client, "cao/spawn", {"profile": profile, **extra})
    return result["terminalId"]


async def wait_until(predicate, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def mcp_client(url: str, token: str | None, **headers: str) -> Client:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=30)))


async def test_supervisor_hands_off_to_a_worker_over_mcp(client):
    supervisor = await spawn(client)
    result = await request(
        client, "cao/handoff", {"terminalId": supervisor, "message": "handoff mock_developer echo hello world"}
    )
    assert "hello world" in result["output"]
    # The worker appeared, worked and was torn down; the editor saw all of it.
    workers = {
        n["terminalId"]
        for n in SIDECAR.notifications["cao/agentStatus"]
        if n["profile"] == "mock_developer" and n["status"] == "starting"
    }
    assert len(workers) >= 1
    worker = workers.pop()
    assert SIDECAR.statuses(worker)[:1] == ["starting"]
    assert "completed" in SIDECAR.statuses(worker)
    assert SIDECAR.statuses(worker)[-1] == "exited"
    agents = (await request(client, "cao/listAgents", {}))["agents"]
    assert worker not in {a["terminalId"] for a in agents}
    # The worker ran in the supervisor's session.
    assert any(n["terminalId"] == worker and n["session"] == "cao" for n in SIDECAR.notifications["cao/agentStatus"])
    await request(client, "cao/terminate", {"terminalId": supervisor})


async def test_assign_to_two_workers_reports_to_the_supervisor_inbox_and_the_editor(client):
    supervisor = await spawn(client)
    first = await request(client, "cao/handoff", {"terminalId": supervisor, "message": "assign mock_developer echo part one"})
    second = await request(client, "cao/handoff", {"terminalId": supervisor, "message": "assign mock_reviewer echo part two"})
    assert "Assigned to mock_developer" in first["output"]
    assert "Assigned to mock_reviewer" in second["output"]
    done = [
        await SIDECAR.wait_for("cao/workerCompleted", lambda p, prof=prof: p["profile"] == prof and p["output"] == text)
        for prof, text in (("mock_developer", "part one"), ("mock_reviewer", "part two"))
    ]
    assert all(d["status"] == "completed" for d in done)

    def inbox_messages():
        users = [r["text"] for r in transcript(supervisor) if r["type"] == "user"]
        results = [t for t in users if "result of the task you assigned" in t]
        return results if len(results) == 2 else None

    messages = await wait_until(inbox_messages)
    for worker in done:
        assert any(worker["terminalId"] in m and worker["profile"] in m and worker["output"] in m for m in messages)
    for worker in done:
        await request(client, "cao/terminate", {"terminalId": worker["terminalId"]})
    await request(client, "cao/terminate", {"terminalId": supervisor})


async def test_send_message_between_agents_waits_for_a_busy_receiver_and_keeps_order(client):
    sender = await spawn(client)
    receiver = await spawn(client, "mock_developer")
    busy = asyncio.ensure_future(request(client, "cao/handoff", {"terminalId": receiver, "message": "sleep 1 finished sleeping"}))
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == receiver and p["status"] == "processing")
    for text in ("first note", "second note"):
        result = await request(client, "cao/handoff", {"terminalId": sender, "message": f"send {receiver} {text}"})
        assert "queued" in result["output"]
    assert (await busy)["output"] == "finished sleeping"

    def delivered():
        users = [r["text"] for r in transcript(receiver) if r["type"] == "user"]
        return users if len(users) >= 3 else None

    users = await wait_until(delivered)
    assert users[0] == "sleep 1 finished sleeping"
    assert [u.split("] ", 1)[1] for u in users[1:]] == ["first note", "second note"]
    assert all(sender in u and "mock_supervisor" in u for u in users[1:])  # the receiver sees who sent it
    await asyncio.sleep(0.3)
    assert len([r for r in transcript(receiver) if r["type"] == "user"]) == 3  # exactly once
    for tid in (sender, receiver):
        await request(client, "cao/terminate", {"terminalId": tid})


async def test_sdk_client_calls_every_tool_with_its_credential(client):
    me = await spawn(client, name="lead")
    other = await spawn(client, "mock_developer", name="dev")
    env = agent_environ(me, "lead")
    url, token = env["CAO_MCP_URL"], env["CAO_MCP_TOKEN"]
    assert url.startswith("http://127.0.0.1:")
    assert (agent_dir(me) / "credential").stat().st_mode & 0o777 == 0o600
    async with mcp_client(url, token) as mcp:
        tools = {t.name: t for t in (await mcp.list_tools()).tools}
        assert set(tools) >= {"handoff", "assign", "send_message", "list_sessions"}
        assert all(t.description for t in tools.values())
        # Typed results: each tool publishes the shape of its structured content.
        assert set(tools["handoff"].output_schema["properties"]) == {
            "terminalId",
            "profile",
            "status",
            "output",
            "worktree",
            "ticket",
        }
        assert set(tools["list_sessions"].output_schema["required"]) == {"session", "agents"}
        assert all(t.output_schema for t in tools.values())

        listing = await mcp.call_tool("list_sessions", {})
        agents = listing.structured_content["agents"]
        mine = [a for a in agents if a["you"]]
        assert [a["terminalId"] for a in mine] == [me]  # attributed by the credential
        assert other in {a["terminalId"] for a in agents}

        handed = await mcp.call_tool("handoff", {"target": "mock_reviewer", "task": "echo via sdk"})
        assert not handed.is_error
        assert handed.content[0].text == "via sdk"
        assert handed.structured_content["status"] == "completed"

        sent = await mcp.call_tool("send_message", {"target": "dev", "message": "hello by name"})
        assert not sent.is_error, sent.content
        assert sent.structured_content["terminalId"] == other
        await wait_until(lambda: any("hello by name" in r.get("text", "") for r in transcript(other)))

        to_self = await mcp.call_tool("send_message", {"target": me, "message": "hi me"})
        assert to_self.is_error and "yourself" in to_self.content[0].text

        unknown = await mcp.call_tool("handoff", {"target": "no_such_profile", "task": "x"})
        assert unknown.is_error and "unknown profile" in unknown.content[0].text

        assigned = await mcp.call_tool("assign", {"target": "mock_developer", "task": "echo assigned by sdk"})
        assert not assigned.is_error
        worker = assigned.structured_content["terminalId"]
        completed = await SIDECAR.wait_for("cao/workerCompleted", lambda p: p["terminalId"] == worker)
        assert completed["output"] == "assigned by sdk"
        await request(client, "cao/terminate", {"terminalId": worker})

    await request(client, "cao/terminate", {"terminalId": other})
    await request(client, "cao/terminate", {"terminalId": me})
    # The credential died with its agent.
    response = httpx2.post(url, json=_list_call(), headers=_headers(token))
    assert response.status_code == 401


def _list_call() -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_sessions", "arguments": {}}}


def _headers(token: str | None, **extra: str) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json", **extra}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def test_requests_without_a_valid_credential_are_refused(client):
    me = await spawn(client)
    env = agent_environ(me)
    url, token = env["CAO_MCP_URL"], env["CAO_MCP_TOKEN"]
    async with httpx2.AsyncClient() as http:
        ok = await http.post(url, json=_list_call(), headers=_headers(token))
        assert ok.status_code == 200
        assert (await http.post(url, json=_list_call(), headers=_headers(None))).status_code == 401
        assert (await http.post(url, json=_list_call(), headers=_headers(token[:-2] + "xx"))).status_code == 401
        assert (await http.post(url, json=_list_call(), headers=_headers("not-a-token"))).status_code == 401
        browser = await http.post(url, json=_list_call(), headers=_headers(token, Origin="http://evil.example"))
        assert browser.status_code == 403
        rebinding = await http.post(url, json=_list_call(), headers=_headers(token, Host="evil.example"))
        assert rebinding.status_code in (421, 403)
    with pytest.raises(Exception):  # noqa: B017 - refused: the MCP client raises an HTTP error or an ExceptionGroup
        async with mcp_client(url, None) as mcp:
            await mcp.list_tools()
    await request(client, "cao/terminate", {"terminalId": me})


async def test_stdio_bridge_forwards_with_the_callers_identity(client):
    me = await spawn(client)
    env = agent_environ(me)
    # Started the way a stdio-only CLI's MCP config starts it (providers.mcp_config).
    entry = mcp_config.stdio_bridge_entry(env["CAO_MCP_SOCKET"], agent_dir(me) / "credential")
    bridge_env = {"PATH": os.environ["PATH"], "PYTHONPATH": SIDECAR.env["PYTHONPATH"]}
    assert Path(env["CAO_MCP_SOCKET"]).stat().st_mode & 0o777 == 0o600
    lines = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_sessions", "arguments": {}}},
    ]
    proc = await asyncio.create_subprocess_exec(
        entry["command"], *entry["args"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=bridge_env
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(json.dumps(lines[0]).encode() + b"\n")
    first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
    assert first["id"] == 1 and "serverInfo" in first["result"]
    for line in lines[1:]:
        proc.stdin.write(json.dumps(line).encode() + b"\n")
    answer = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
    assert answer["id"] == 2
    agents = answer["result"]["structuredContent"]["agents"]
    assert [a["terminalId"] for a in agents if a["you"]] == [me]
    proc.stdin.close()
    await asyncio.wait_for(proc.wait(), 10)
    await request(client, "cao/terminate", {"terminalId": me})


async def test_sender_learns_when_its_message_can_never_be_delivered(client):
    sender = await spawn(client)
    receiver = await spawn(client, "mock_developer")
    busy = asyncio.ensure_future(request(client, "cao/handoff", {"terminalId": receiver, "message": "sleep 5 never"}))
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == receiver and p["status"] == "processing")
    result = await request(client, "cao/handoff", {"terminalId": sender, "message": f"send {receiver} are you there"})
    message_id = result["output"].split()[1]
    assert "queued" in result["output"]
    await request(client, "cao/terminate", {"terminalId": receiver})
    with pytest.raises(Exception):  # noqa: B017 - the receiver was terminated under the call: any error will do
        await busy

    def notice():
        return [r["text"] for r in transcript(sender) if r["type"] == "user" and "was not delivered" in r["text"]]

    texts = await wait_until(notice)
    assert message_id in texts[0] and receiver in texts[0]
    await request(client, "cao/terminate", {"terminalId": sender})


async def test_text_that_would_end_the_bracketed_paste_is_refused_and_nothing_is_typed(client):
    agent = await spawn(client, "mock_developer")
    attack = "echo harmless\x1b[201~\rsecond task typed as keys\r"
    for method, params in (
        ("cao/handoff", {"terminalId": agent, "message": attack}),
        ("cao/sendMessage", {"terminalId": agent, "message": attack}),
        ("cao/assign", {"profile": "mock_developer", "message": attack}),
        ("cao/handoff", {"terminalId": agent, "message": "echo x\x1b[200~y"}),
    ):
        with pytest.raises(Exception) as refused:
            await request(client, method, params)
        assert refused.value.code == -32602 and "bracketed-paste marker" in refused.value.message
    await asyncio.sleep(0.3)
    assert [r for r in transcript(agent) if r["type"] == "user"] == []  # nothing reached the agent
    await request(client, "cao/terminate", {"terminalId": agent})


async def test_after_an_error_the_agent_takes_the_next_input_and_last_output_follows_it(client):
    agent = await spawn(client, "mock_developer")
    with pytest.raises(Exception) as failed:
        await request(client, "cao/handoff", {"terminalId": agent, "message": "fail broken"})
    assert failed.value.code == -31005
    sent = await request(client, "cao/sendMessage", {"terminalId": agent, "message": "echo recovered"})
    assert sent["state"] == "delivered"  # an agent showing an error is back at its prompt
    await SIDECAR.wait_for(
        "cao/agentStatus",
        lambda p: p["terminalId"] == agent and p["status"] == "completed" and p["previousStatus"] == "processing",
    )
    assert (await request(client, "cao/getOutput", {"terminalId": agent, "mode": "last"}))["output"] == "recovered"
    await request(client, "cao/terminate", {"terminalId": agent})
