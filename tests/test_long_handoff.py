"""Long handoffs outlive the lead's tool-call timeout (cao_sidecar/handoff_tickets.py): a real MCP
client, as an agent, with the reply time configured short (CAO_HANDOFF_REPLY_AFTER=1.5 s).

- A caller that sent a progressToken gets its answer as an SSE stream, with progress
  notifications while the handoff runs (agent_face/progress_stream.py); other calls stay JSON.
- After the reply time the call returns a ticket; wait_for_result(ticket) returns the answer.
- A ticket nobody collects: its answer is typed into the lead's input as a message, and can
  still be collected.
- Another lead's ticket is not found.
- A handoff's `model` that could act as a flag is refused.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import httpx2
import pytest
import pytest_lsp
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pytest_lsp import LanguageClient

from conftest import initialize, kill_tmux, request, sidecar_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE = Path(tempfile.mkdtemp(prefix="cao-long-handoff-"))
CONFIG, SIDECAR = sidecar_config(BASE)
SIDECAR.env["CAO_HANDOFF_REPLY_AFTER"] = "1.5"
SIDECAR.env["CAO_HANDOFF_PROGRESS_EVERY"] = "0.3"


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: LanguageClient):
    await initialize(lsp_client, SIDECAR)
    yield
    await lsp_client.shutdown_session()
    kill_tmux(SIDECAR.socket)


def agent_credentials(terminal_id: str) -> tuple[str, str]:
    """The MCP URL and token the sidecar gave an agent (read from its process)."""
    out = SIDECAR.tmux("list-panes", "-a", "-F", "#{window_name}\t#{pane_pid}")
    for line in out.splitlines():
        window, _, pid = line.partition("\t")
        if window.endswith(terminal_id):
            raw = Path(f"/proc/{pid}/environ").read_bytes()
            env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
            return env["CAO_MCP_URL"], env["CAO_MCP_TOKEN"]
    raise AssertionError(f"no pane for {terminal_id}")


def mcp_client(terminal_id: str) -> Client:
    url, token = agent_credentials(terminal_id)
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http))


def transcript(terminal_id: str) -> str:
    path = Path(SIDECAR.env["XDG_STATE_HOME"]) / "cao-sidecar" / "agents" / terminal_id / "transcript.jsonl"
    return path.read_text() if path.exists() else ""


async def spawn(client: LanguageClient, profile: str = "mock_supervisor") -> str:
    return (await request(client, "cao/spawn", {"profile": profile}))["terminalId"]


async def test_a_long_handoff_sends_progress_then_a_ticket_and_wait_for_result_gets_the_answer(client):
    lead = await spawn(client)
    progress: list[tuple[float, str]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message or ""))

    async with mcp_client(lead) as mcp:
        tools = {t.name for t in (await mcp.list_tools()).tools}
        assert "wait_for_result" in tools
        started = asyncio.get_running_loop().time()
        first = await mcp.call_tool(
            "handoff", {"target": "mock_developer", "task": "sleep 3 late-answer-71"}, progress_callback=on_progress
        )
        took = asyncio.get_running_loop().time() - started
        assert not first.is_error, first.content
        data = first.structured_content
        assert data["status"] == "running" and data["ticket"], data
        assert data["output"] == "" and data["terminalId"], data
        assert 1.4 < took < 5, took
        # Every 0.3 s until the reply time (1.5 s): they reached this client, in order.
        assert len(progress) >= 3 and progress == sorted(progress), progress
        ticket = data["ticket"]
        assert all(ticket in message for _, message in progress), progress
        assert ticket in first.content[0].text and "wait_for_result" in first.content[0].text

        for _ in range(10):  # each call waits up to the reply time, then returns the ticket again
            again = await mcp.call_tool("wait_for_result", {"ticket": ticket})
            assert not again.is_error, again.content
            if again.structured_content["status"] == "completed":
                break
            assert again.structured_content["ticket"] == ticket
        assert again.structured_content["output"] == "late-answer-71", again.structured_content
        assert again.structured_content["terminalId"] == data["terminalId"]
        # Collected by the lead: not also typed into its input.
        await asyncio.sleep(0.5)
        assert "late-answer-71" not in transcript(lead)

        # Another lead cannot collect it.
        other = await spawn(client)
        async with mcp_client(other) as theirs:
            refused = await theirs.call_tool("wait_for_result", {"ticket": ticket})
            assert refused.is_error and "no handoff ticket" in refused.content[0].text
        unknown = await mcp.call_tool("wait_for_result", {"ticket": "h-0-nothing"})
        assert unknown.is_error
    for tid in (lead, other):
        await request(client, "cao/terminate", {"terminalId": tid})


async def test_an_uncollected_answer_is_delivered_into_the_leads_input_and_still_collectable(client):
    lead = await spawn(client)
    async with mcp_client(lead) as mcp:
        first = await mcp.call_tool("handoff", {"target": "mock_developer", "task": "sleep 2.5 inbox-answer-72"})
        ticket = first.structured_content["ticket"]
        assert ticket, first.structured_content
        deadline = asyncio.get_running_loop().time() + 20
        while "inbox-answer-72" not in transcript(lead):
            assert asyncio.get_running_loop().time() < deadline, transcript(lead)
            await asyncio.sleep(0.1)
        typed = [json.loads(line) for line in transcript(lead).splitlines() if "inbox-answer-72" in line]
        assert ticket in json.dumps(typed), typed
        kept = await mcp.call_tool("wait_for_result", {"ticket": ticket})
        assert kept.structured_content["output"] == "inbox-answer-72", kept.structured_content
    await request(client, "cao/terminate", {"terminalId": lead})


async def test_a_flag_like_or_multi_word_model_is_refused_before_anything_starts(client):
    lead = await spawn(client)
    async with mcp_client(lead) as mcp:
        for bad in ("-rf", "two words", "x\ny"):
            refused = await mcp.call_tool("assign", {"target": "mock_developer", "task": "echo no", "model": bad})
            assert refused.is_error and "model" in refused.content[0].text, refused.content
        fine = await mcp.call_tool("handoff", {"target": "mock_developer", "task": "echo yes", "model": "some-model-1"})
        assert fine.structured_content["output"] == "yes", fine.structured_content
    await request(client, "cao/terminate", {"terminalId": lead})


async def test_only_a_tool_call_that_asked_for_progress_is_answered_as_a_stream(client):
    """Plain JSON for every other call (fastest); SSE when a tools/call carries a progressToken."""
    lead = await spawn(client)
    url, token = agent_credentials(lead)
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-06-18",
    }

    def call(meta: dict) -> dict:
        return {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": "list_sessions", "arguments": {}, "_meta": meta},
        }

    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        plain = await http.post(url, json=call({}))
        assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json"), plain.text
        assert plain.json()["result"]["structuredContent"], plain.text
        streamed = await http.post(url, json=call({"progressToken": "p-1"}))
        assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
        assert '"structuredContent"' in streamed.text and '"id":7' in streamed.text.replace(" ", ""), streamed.text
        # A progressToken in a text argument, or a client that takes no stream: JSON as before.
        decoy = dict(call({}), params={"name": "send_message", "arguments": {"target": "x", "message": "progressToken"}})
        assert (await http.post(url, json=decoy)).headers["content-type"].startswith("application/json")
        json_only = await http.post(url, json=call({"progressToken": "p-2"}), headers={"Accept": "application/json"})
        assert json_only.headers["content-type"].startswith("application/json"), json_only.text
    await request(client, "cao/terminate", {"terminalId": lead})
