"""End to end, editor face: cao/spawn and its errors, including agents that never get ready.

Agents that never get ready: the mock agent cannot be told to hang at startup, so a second sidecar
puts a `sitecustomize.py` on the PYTHONPATH its tmux server (and so its agents) inherit. It acts
only in agent processes started from the profiles `e2e_stuck` (draws a trust dialog and waits
forever, like a CLI stuck on a dialog) and `e2e_crash` (prints an error and exits 3, like a CLI
that dies at startup). That sidecar also runs with CAO_READY_TIMEOUT=3 so "bounded time" is short.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import pytest
import pytest_asyncio
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from conftest import initialize, kill_tmux, request
from test_editor_common import (
    error_data,
    eventually,
    list_agents,
    new_sidecar,
    pane_of,
    panes,
    profile_text,
    rpc_error,
    spawn,
    terminate_all,
    window_gone,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

CONFIG, SIDECAR = new_sidecar("spawn")


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: LanguageClient):
    await initialize(lsp_client, SIDECAR)
    yield
    await terminate_all(lsp_client)
    await lsp_client.shutdown_session()
    kill_tmux(SIDECAR.socket)


@pytest_asyncio.fixture(loop_scope="module", autouse=False)
async def clean(client: LanguageClient):
    yield
    await terminate_all(client)


async def test_spawn_answers_idle_once_ready(client: LanguageClient, clean):
    result = await spawn(client, name="dev-1")
    tid = result["terminalId"]
    assert isinstance(tid, str) and tid
    assert result["status"] == "idle"
    assert result["profile"] == "mock_developer"
    assert result["provider"] == "mock"
    assert result["name"] == "dev-1"
    assert isinstance(result["session"], str) and result["session"]
    # The answer came once the agent was ready: its idle status was already notified.
    assert SIDECAR.statuses(tid)[:2] == ["starting", "idle"]
    # A real tmux window runs the agent, in the session the result names.
    pane = pane_of(SIDECAR, tid)
    assert pane is not None, SIDECAR.tmux("list-windows", "-a")
    assert pane["session"] == result["session"]
    assert pane["dead"] == "0"
    assert result["session"] in SIDECAR.tmux("list-sessions", "-F", "#{session_name}").split()
    # It takes input right away.
    answer = await request(client, "cao/handoff", {"terminalId": tid, "message": "echo ready"})
    assert answer["output"] == "ready"


async def test_spawn_working_directory_defaults_to_workspace_root(client: LanguageClient, clean):
    tid = (await spawn(client))["terminalId"]
    assert (await list_agents(client))[tid]["workingDirectory"] == str(SIDECAR.workspace)
    pane = pane_of(SIDECAR, tid)
    assert pane is not None
    assert os.path.realpath(pane["cwd"]) == os.path.realpath(SIDECAR.workspace)


async def test_spawn_working_directory_override(client: LanguageClient, clean):
    other = Path(tempfile.mkdtemp(prefix="cao-e2e-cwd-", dir=SIDECAR.base))
    tid = (await spawn(client, workingDirectory=str(other)))["terminalId"]
    assert (await list_agents(client))[tid]["workingDirectory"] == str(other)
    pane = pane_of(SIDECAR, tid)
    assert pane is not None
    assert os.path.realpath(pane["cwd"]) == os.path.realpath(other)


async def test_spawn_null_optional_fields_mean_defaults(client: LanguageClient, clean):
    result = await spawn(client, provider=None, workingDirectory=None, session=None, name=None)
    assert result["status"] == "idle"
    assert result["provider"] == "mock"
    assert result["name"] is None
    assert (await list_agents(client))[result["terminalId"]]["workingDirectory"] == str(SIDECAR.workspace)


async def test_spawn_explicit_provider_and_session(client: LanguageClient, clean):
    result = await spawn(client, "mock_reviewer", provider="mock", session="e2e-other")
    assert result["session"] == "e2e-other"
    assert result["provider"] == "mock"
    assert "e2e-other" in SIDECAR.tmux("list-sessions", "-F", "#{session_name}").split()
    pane = pane_of(SIDECAR, result["terminalId"])
    assert pane is not None and pane["session"] == "e2e-other"
    assert result["terminalId"] in await list_agents(client, session="e2e-other")


async def test_spawn_bad_working_directory(client: LanguageClient, clean):
    before = len(panes(SIDECAR))
    missing = str(SIDECAR.base / "does" / "not" / "exist")
    exc = await rpc_error(spawn(client, workingDirectory=missing))
    assert exc.code == -32602
    assert "workingDirectory" in exc.message
    assert error_data(exc).get("kind") == "invalidParams"
    assert await list_agents(client) == {}
    assert len(panes(SIDECAR)) == before


async def test_spawn_working_directory_is_a_file(client: LanguageClient, clean):
    a_file = SIDECAR.base / "a-file.txt"
    a_file.write_text("x")
    exc = await rpc_error(spawn(client, workingDirectory=str(a_file)))
    assert exc.code == -32602
    assert await list_agents(client) == {}


async def test_spawn_unknown_profile(client: LanguageClient, clean):
    before = len(panes(SIDECAR))
    exc = await rpc_error(spawn(client, "no_such_profile"))
    assert exc.code == -31001
    assert error_data(exc).get("kind") == "unknownProfile"
    assert "no_such_profile" in exc.message
    assert await list_agents(client) == {}
    assert len(panes(SIDECAR)) == before


async def test_spawn_unknown_provider(client: LanguageClient, clean):
    before = len(panes(SIDECAR))
    exc = await rpc_error(spawn(client, provider="no_such_cli"))
    assert exc.code == -31002
    assert error_data(exc).get("kind") == "unknownProvider"
    assert "no_such_cli" in exc.message
    assert await list_agents(client) == {}
    assert len(panes(SIDECAR)) == before


async def test_spawn_bad_name_and_session(client: LanguageClient, clean):
    for params in ({"name": "has space"}, {"session": "a:b"}, {"session": "x;kill-server"}):
        exc = await rpc_error(spawn(client, **params))
        assert exc.code == -32602, params
        assert next(iter(params)) in exc.message, (params, exc.message)
    assert await list_agents(client) == {}
    assert SIDECAR.tmux("list-sessions") == "" or "kill" not in SIDECAR.tmux("list-sessions")


async def test_spawn_concurrently(client: LanguageClient, clean):
    """Requests are handled concurrently; several spawns at once all get ready."""
    results = await asyncio.gather(*(spawn(client) for _ in range(3)))
    tids = {r["terminalId"] for r in results}
    assert len(tids) == 3
    assert all(r["status"] == "idle" for r in results)
    assert set(await list_agents(client)) == tids
    for tid in tids:
        assert pane_of(SIDECAR, tid) is not None


# ---- agents that never get ready ---------------------------------------------------------------

HOOK = '''
import os, sys, time
_profile = os.environ.get("CAO_PROFILE") if os.environ.get("CAO_TERMINAL_ID") else None
if _profile == "e2e_stuck":
    sys.stdout.write("Do you trust the files in this folder?\\r\\n\\r\\n> 1. Yes, proceed\\r\\n  2. No, exit\\r\\n")
    sys.stdout.flush()
    time.sleep(600)
    os._exit(0)
elif _profile == "e2e_crash":
    sys.stdout.write("fatal: e2e agent cannot start (exit 3)\\r\\n")
    sys.stdout.flush()
    os._exit(3)
'''

HOOK_DIR = Path(tempfile.mkdtemp(prefix="cao-e2e-hook-"))
(HOOK_DIR / "sitecustomize.py").write_text(HOOK, encoding="utf-8")
READY_TIMEOUT = 3.0

STUCK_CONFIG, STUCK = new_sidecar(
    "stuck",
    user_profiles={
        "e2e_stuck.md": profile_text("e2e_stuck", "Hangs on a dialog at startup."),
        "e2e_crash.md": profile_text("e2e_crash", "Exits at startup."),
    },
)
STUCK.env["PYTHONPATH"] = str(HOOK_DIR) + os.pathsep + STUCK.env["PYTHONPATH"]
STUCK.env["CAO_READY_TIMEOUT"] = str(READY_TIMEOUT)


@pytest_lsp.fixture(config=STUCK_CONFIG, scope="module")
async def stuck_client(lsp_client: LanguageClient):
    await initialize(lsp_client, STUCK)
    yield
    await terminate_all(lsp_client)
    await lsp_client.shutdown_session()
    kill_tmux(STUCK.socket)


async def test_stuck_profiles_are_listed(stuck_client: LanguageClient):
    names = {p["name"] for p in (await request(stuck_client, "cao/listProfiles", {}))["profiles"]}
    assert {"e2e_stuck", "e2e_crash", "mock_developer"} <= names


async def test_spawn_agent_that_never_gets_ready(stuck_client: LanguageClient):
    started = time.monotonic()
    exc = await rpc_error(request(stuck_client, "cao/spawn", {"profile": "e2e_stuck"}, timeout=READY_TIMEOUT + 10))
    elapsed = time.monotonic() - started
    assert exc.code == -31007, (exc.code, exc.message)
    assert elapsed < READY_TIMEOUT + 4, f"took {elapsed:.1f}s with a ready timeout of {READY_TIMEOUT}s"
    data = error_data(exc)
    assert data.get("kind") == "agentNotReady"
    tid = data.get("terminalId")
    assert tid
    assert "Do you trust the files in this folder?" in data.get("screenTail", "")
    # Its window is removed and it is forgotten.
    await eventually(lambda: window_gone(STUCK, tid), 5, what="window removed")
    await eventually(lambda: _not_listed(stuck_client, tid), 5, what="agent forgotten")
    assert STUCK.statuses(tid)[0] == "starting"
    await eventually(lambda: STUCK.statuses(tid)[-1:] == ["exited"], 5, what="status exited")


async def test_spawn_agent_that_exits_at_startup(stuck_client: LanguageClient):
    started = time.monotonic()
    exc = await rpc_error(request(stuck_client, "cao/spawn", {"profile": "e2e_crash"}, timeout=READY_TIMEOUT + 10))
    elapsed = time.monotonic() - started
    assert exc.code == -31006, (exc.code, exc.message)
    assert elapsed < READY_TIMEOUT, f"an exited agent must be reported when it exits, took {elapsed:.1f}s"
    data = error_data(exc)
    assert data.get("kind") == "agentExited"
    tid = data.get("terminalId")
    assert tid
    assert "fatal: e2e agent cannot start" in data.get("screenTail", "")
    await eventually(lambda: window_gone(STUCK, tid), 5, what="window removed")
    await eventually(lambda: _not_listed(stuck_client, tid), 5, what="agent forgotten")


async def test_handoff_to_agent_that_never_gets_ready(stuck_client: LanguageClient):
    started = time.monotonic()
    exc = await rpc_error(
        request(stuck_client, "cao/handoff", {"profile": "e2e_stuck", "message": "echo x"}, timeout=READY_TIMEOUT + 10)
    )
    elapsed = time.monotonic() - started
    assert exc.code == -31007, (exc.code, exc.message)
    assert elapsed < READY_TIMEOUT + 4
    data = error_data(exc)
    assert "Do you trust the files" in data.get("screenTail", "")
    await eventually(lambda: window_gone(STUCK, data["terminalId"]), 5, what="window removed")


async def test_cancel_spawn_removes_agent(stuck_client: LanguageClient):
    """$/cancelRequest on a pending cao/spawn: answered -32800, the agent being started is removed."""
    msg_id = "e2e-cancel-spawn"
    future = stuck_client.protocol.send_request_async("cao/spawn", {"profile": "e2e_stuck"}, msg_id=msg_id)
    note = await STUCK.wait_for(
        "cao/agentStatus",
        lambda p: p["profile"] == "e2e_stuck" and p["status"] == "starting" and not _seen_before(p),
        5,
    )
    tid = note["terminalId"]
    await eventually(lambda: pane_of(STUCK, tid), 5, what="the stuck agent's window")
    stuck_client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    started = time.monotonic()
    exc = await rpc_error(asyncio.wait_for(future, READY_TIMEOUT + 5))
    assert exc.code == -32800
    assert time.monotonic() - started < 2
    await eventually(lambda: window_gone(STUCK, tid), 5, what="window removed")
    await eventually(lambda: _not_listed(stuck_client, tid), 5, what="agent forgotten")


async def test_sidecar_still_spawns_mock_agents(stuck_client: LanguageClient):
    result = await request(stuck_client, "cao/spawn", {"profile": "mock_developer"})
    assert result["status"] == "idle"
    await request(stuck_client, "cao/terminate", {"terminalId": result["terminalId"]})


_SEEN: set[str] = set()


def _seen_before(params: dict) -> bool:
    """Agents of earlier tests (their notifications are kept): not the one we wait for."""
    return params["terminalId"] in _SEEN or params["terminalId"] in {
        n["terminalId"] for n in STUCK.notifications["cao/agentStatus"] if n["status"] == "exited"
    }


async def _not_listed(client: LanguageClient, tid: str) -> bool:
    return tid not in await list_agents(client)
