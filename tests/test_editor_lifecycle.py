"""End to end, editor face: initialize, listProfiles, listAgents, getOutput, terminate.

A real sidecar (`python -m cao_sidecar --stdio`, started by pytest-lsp) on its own tmux server,
real mock agents.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime

import pytest
import pytest_asyncio
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

import cao_sidecar
from conftest import initialize, request
from test_editor_common import (
    close_client,
    MOCK_PROFILES,
    eventually,
    list_agents,
    new_sidecar,
    pane_of,
    profile_text,
    rpc_error,
    spawn,
    terminate_all,
    window_gone,
)

CONFIG, SIDECAR = new_sidecar(
    "lifecycle",
    workspace_profiles={"e2e_workspace.md": profile_text("e2e_workspace", "A profile of the workspace.")},
)
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

INIT: dict[str, types.InitializeResult] = {}


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: LanguageClient):
    INIT["result"] = await initialize(lsp_client, SIDECAR)
    yield
    await close_client(lsp_client, SIDECAR)


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def clean(client: LanguageClient):
    yield
    await terminate_all(client)


async def test_initialize_result(client: LanguageClient):
    result = INIT["result"]
    assert result.server_info is not None
    assert result.server_info.name == "cao-sidecar"
    assert result.server_info.version == cao_sidecar.__version__
    cao = result.capabilities.experimental["cao"]
    assert cao["protocolVersion"] == 1
    assert set(cao["methods"]) >= {
        "cao/spawn",
        "cao/handoff",
        "cao/assign",
        "cao/sendMessage",
        "cao/listAgents",
        "cao/getOutput",
        "cao/terminate",
        "cao/listProfiles",
    }
    assert set(cao["notifications"]) >= {"cao/agentStatus", "cao/workerCompleted"}
    assert "mock" in cao["providers"]


async def test_started_with_stdio_flag(client: LanguageClient):
    # The fixture's server command ends in `--stdio` (as vscode-languageclient appends it): the
    # process accepted it and serves on stdio.
    assert CONFIG.server_command[-1] == "--stdio"
    assert client._server is not None and client._server.returncode is None
    result = await request(client, "cao/listAgents", {})
    assert result == {"agents": []}


async def test_list_profiles_builtin_mock_profiles(client: LanguageClient):
    result = await request(client, "cao/listProfiles", {})
    profiles = {p["name"]: p for p in result["profiles"]}
    for name in MOCK_PROFILES:
        assert name in profiles, profiles
        assert profiles[name]["provider"] == "mock"
        assert profiles[name]["source"] == "builtin"
        assert isinstance(profiles[name]["description"], str) and profiles[name]["description"]


async def test_list_profiles_without_params(client: LanguageClient):
    # Params may be omitted (spec §5 cao/listProfiles).
    result = await request(client, "cao/listProfiles", None)
    assert {p["name"] for p in result["profiles"]} >= set(MOCK_PROFILES)


async def test_list_profiles_includes_workspace_profile(client: LanguageClient):
    """A profile file in <workspace root>/.cao/agents/ (workspace = rootUri of initialize)."""
    result = await request(client, "cao/listProfiles", {})
    profiles = {p["name"]: p for p in result["profiles"]}
    assert "e2e_workspace" in profiles, sorted(profiles)
    assert profiles["e2e_workspace"]["provider"] == "mock"
    assert profiles["e2e_workspace"]["description"] == "A profile of the workspace."
    assert profiles["e2e_workspace"]["source"] != "builtin"


async def test_list_agents_fields(client: LanguageClient):
    agent = await spawn(client, name="lister")
    tid = agent["terminalId"]
    agents = await list_agents(client)
    assert list(agents) == [tid]
    info = agents[tid]
    assert info["session"] == agent["session"]
    assert info["profile"] == "mock_developer"
    assert info["provider"] == "mock"
    assert info["status"] == "idle"
    assert info["workingDirectory"] == str(SIDECAR.workspace)
    assert info["name"] == "lister"
    created = datetime.fromisoformat(info["createdAt"].replace("Z", "+00:00"))
    assert created.utcoffset() is not None, "createdAt must carry a UTC offset"
    # Session filter.
    assert tid in await list_agents(client, session=agent["session"])
    assert await list_agents(client, session="no-such-session") == {}


async def test_list_agents_oldest_first(client: LanguageClient):
    first = (await spawn(client))["terminalId"]
    second = (await spawn(client, "mock_reviewer"))["terminalId"]
    agents = await list_agents(client)
    assert list(agents) == [first, second]
    assert agents[second]["profile"] == "mock_reviewer"


async def test_get_output_last_and_full(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    # No answer yet: "last" is an empty string.
    assert await request(client, "cao/getOutput", {"terminalId": tid}) == {"output": ""}
    await request(client, "cao/handoff", {"terminalId": tid, "message": "echo first answer"})
    await request(client, "cao/handoff", {"terminalId": tid, "message": "echo second\nanswer"})
    last = await request(client, "cao/getOutput", {"terminalId": tid, "mode": "last"})
    assert last == {"output": "second\nanswer"}
    default = await request(client, "cao/getOutput", {"terminalId": tid})
    assert default == last
    full = (await request(client, "cao/getOutput", {"terminalId": tid, "mode": "full"}))["output"]
    assert "echo first answer" in full
    assert "first answer" in full.replace("echo first answer", "")
    assert "echo second" in full
    assert full.index("echo first answer") < full.index("echo second")
    assert "\x1b" not in full, "outputs are plain text without terminal escape sequences"


async def test_get_output_bad_mode(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    exc = await rpc_error(request(client, "cao/getOutput", {"terminalId": tid, "mode": "everything"}))
    assert exc.code == -32602
    assert "mode" in exc.message


async def test_get_output_unknown_terminal(client: LanguageClient):
    exc = await rpc_error(request(client, "cao/getOutput", {"terminalId": "00000000"}))
    assert exc.code == -31003


async def test_terminate_removes_window(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    assert pane_of(SIDECAR, tid) is not None
    assert await request(client, "cao/terminate", {"terminalId": tid}) == {}
    assert window_gone(SIDECAR, tid), SIDECAR.tmux("list-windows", "-a")
    assert tid not in await list_agents(client)
    await eventually(lambda: SIDECAR.statuses(tid)[-1:] == ["exited"], 5, what="status exited")
    # Nothing more about it afterwards, and it is unknown now.
    exc = await rpc_error(request(client, "cao/terminate", {"terminalId": tid}))
    assert exc.code == -31003


async def test_terminate_busy_agent(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    result = await request(client, "cao/sendMessage", {"terminalId": tid, "message": "sleep 30 busy"})
    assert result["state"] == "delivered"
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "processing", 5)
    await request(client, "cao/terminate", {"terminalId": tid}, timeout=10)
    assert window_gone(SIDECAR, tid)
    assert tid not in await list_agents(client)
    await eventually(lambda: SIDECAR.statuses(tid)[-1:] == ["exited"], 5, what="status exited")


async def test_terminate_unknown_terminal(client: LanguageClient):
    exc = await rpc_error(request(client, "cao/terminate", {"terminalId": "00000000"}))
    assert exc.code == -31003
    assert exc.data is not None


async def test_agent_status_notification_shape(client: LanguageClient):
    agent = await spawn(client)
    tid = agent["terminalId"]
    notes = [n for n in SIDECAR.notifications["cao/agentStatus"] if n["terminalId"] == tid]
    assert notes[0]["previousStatus"] is None
    assert notes[0]["status"] == "starting"
    for before, after in itertools.pairwise(notes):
        assert after["previousStatus"] == before["status"]
    assert all(n["profile"] == "mock_developer" and n["session"] == agent["session"] for n in notes)
    assert re.fullmatch(r"\S+", tid)
