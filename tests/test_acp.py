"""`cao-sidecar --acp` driven by a real ACP client (the `agent-client-protocol` Python SDK) with
the mock agents: streamed answers, team updates, permission requests, cancel, malformed lines."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from acp import PROTOCOL_VERSION, RequestError, spawn_agent_process, text_block
from acp.schema import AllowedOutcome, RequestPermissionResponse

from conftest import isolated_env, kill_tmux

pytestmark = pytest.mark.asyncio(loop_scope="module")


class RecordingClient:
    """An ACP client that records every session/update and answers permission requests."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, Any]] = []
        self.permissions: list[Any] = []
        self.answer = "Yes"  # the name of the option to pick

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append((session_id, update))

    async def request_permission(self, session_id: str, tool_call: Any, options: list[Any], **kwargs: Any) -> Any:
        self.permissions.append((session_id, tool_call, options))
        chosen = next(o.option_id for o in options if o.name == self.answer)
        return RequestPermissionResponse(outcome=AllowedOutcome(outcome="selected", option_id=chosen))

    def of(self, session_id: str, kind: str) -> list[Any]:
        return [u for s, u in self.updates if s == session_id and u.session_update == kind]

    def answer_text(self, session_id: str) -> str:
        return "".join(u.content.text for u in self.of(session_id, "agent_message_chunk"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def acp():
    base = Path(tempfile.mkdtemp(prefix="cao-acp-"))
    env = isolated_env(base)
    env["CAO_ACP_DEFAULT_PROFILE"] = "mock_supervisor"
    client = RecordingClient()
    async with spawn_agent_process(
        client, sys.executable, "-m", "cao_sidecar", "--acp", env=env, cwd=str(base / "workspace")
    ) as (conn, process):
        init = await asyncio.wait_for(conn.initialize(protocol_version=PROTOCOL_VERSION), 10)
        assert init.agent_info.name == "cao-sidecar"
        assert init.agent_capabilities.load_session is True
        yield conn, client, process, base, env
    kill_tmux(env["CAO_TMUX_SOCKET"])
    shutil.rmtree(base, ignore_errors=True)


async def new_session(conn: Any, base: Path) -> str:
    return (await asyncio.wait_for(conn.new_session(cwd=str(base / "workspace"), mcp_servers=[]), 15)).session_id


async def prompt(conn: Any, session_id: str, text: str, timeout: float = 20) -> Any:
    return await asyncio.wait_for(conn.prompt(session_id=session_id, prompt=[text_block(text)]), timeout)


async def test_prompt_streams_the_supervisors_answer(acp):
    conn, client, _process, base, _env = acp
    sid = await new_session(conn, base)
    result = await prompt(conn, sid, "echo hello")
    assert result.stop_reason == "end_turn"
    assert client.answer_text(sid) == "hello"
    # The same supervisor takes the next prompt.
    await prompt(conn, sid, "echo again")
    assert client.answer_text(sid) == "helloagain"
    listed = await conn.ext_method("cao/listAgents", {"sessionId": sid})
    assert [a["profile"] for a in listed["agents"]] == ["mock_supervisor"]


async def test_handoff_shows_the_worker_as_team_activity(acp):
    conn, client, _process, base, _env = acp
    sid = await new_session(conn, base)
    result = await prompt(conn, sid, "handoff mock_developer echo hi")
    assert result.stop_reason == "end_turn"
    assert "hi" in client.answer_text(sid)
    starts = client.of(sid, "tool_call")
    assert len(starts) == 1 and starts[0].title.startswith("mock_developer worker")
    progress = [u for u in client.of(sid, "tool_call_update") if u.tool_call_id == starts[0].tool_call_id]
    assert any(u.status == "in_progress" for u in progress)
    assert progress[-1].status == "completed"
    assert "result: hi" in progress[-1].content[0].content.text


async def test_question_becomes_a_permission_request(acp):
    conn, client, _process, base, _env = acp
    sid = await new_session(conn, base)
    result = await prompt(conn, sid, "ask Proceed?")
    assert result.stop_reason == "end_turn"
    asked = [p for p in client.permissions if p[0] == sid]
    assert len(asked) == 1
    assert "Proceed?" in asked[0][1].title
    # The mock's question offers Yes/No; picking Yes types its "y".
    assert [(o.name, o.kind) for o in asked[0][2]] == [("Yes", "allow_once"), ("No", "reject_once")]
    assert asked[0][1].raw_input["choices"] == ["Yes", "No"]
    assert client.answer_text(sid) == "answered: y"


async def test_cancel_stops_the_turn(acp):
    conn, client, _process, base, _env = acp
    sid = await new_session(conn, base)
    await prompt(conn, sid, "echo ready")  # the supervisor is up
    turn = asyncio.create_task(prompt(conn, sid, "sleep 10 x"))
    await asyncio.sleep(1.0)
    started = asyncio.get_running_loop().time()
    await conn.cancel(session_id=sid)
    result = await asyncio.wait_for(turn, 5)
    assert result.stop_reason == "cancelled"
    assert asyncio.get_running_loop().time() - started < 3
    # The supervisor takes the next prompt at once.
    await prompt(conn, sid, "echo after")
    assert client.answer_text(sid).endswith("after")


async def test_profile_command_and_load_session(acp):
    conn, client, _process, base, _env = acp
    sid = await new_session(conn, base)
    await prompt(conn, sid, "/profile mock_developer")
    assert "mock_developer" in client.answer_text(sid)
    await prompt(conn, sid, "echo dev")
    agents = (await conn.ext_method("cao/listAgents", {"sessionId": sid}))["agents"]
    assert [a["profile"] for a in agents] == ["mock_developer"]
    bad = await prompt(conn, sid, "/profile nope")
    assert bad.stop_reason == "end_turn" and "nope" in client.answer_text(sid)
    before = len(client.of(sid, "agent_message_chunk"))
    await asyncio.wait_for(conn.load_session(cwd=str(base / "workspace"), session_id=sid, mcp_servers=[]), 10)
    replayed = client.of(sid, "user_message_chunk")
    assert [u.content.text for u in replayed][:2] == ["/profile mock_developer", "echo dev"]
    assert len(client.of(sid, "agent_message_chunk")) > before
    with pytest.raises(RequestError):
        await conn.load_session(cwd=str(base / "workspace"), session_id="000000000000", mcp_servers=[])


async def test_extension_methods(acp):
    conn, _client, _process, base, _env = acp
    sid = await new_session(conn, base)
    spawned = await conn.ext_method("cao/spawn", {"profile": "mock_reviewer", "sessionId": sid})
    assert spawned["status"] in ("idle", "completed")
    done = await conn.ext_method("cao/handoff", {"terminalId": spawned["terminalId"], "message": "echo ext"})
    assert done["output"] == "ext"
    assigned = await conn.ext_method("cao/assign", {"profile": "mock_developer", "message": "echo bg", "sessionId": sid})
    assert len(assigned["terminalId"]) == 8
    with pytest.raises(RequestError) as info:
        await conn.ext_method("cao/spawn", {"profile": "no_such_profile"})
    assert info.value.code == -31001
    with pytest.raises(RequestError) as info:
        await conn.ext_method("cao/nothing", {})
    assert info.value.code == -32601
    # Every editor-face method, validated by the same wire types: the error names the field.
    with pytest.raises(RequestError) as info:
        await conn.ext_method("cao/handoff", {"message": "x", "profile": "mock_developer", "timeoutSeconds": "soon"})
    assert info.value.code == -32602 and "timeoutSeconds" in str(info.value.data)
    with pytest.raises(RequestError) as info:
        await conn.ext_method("cao/spawn", {"profile": "mock_reviewer", "timeoutSeconds": -1})
    assert info.value.code == -32602 and info.value.data["kind"] == "invalidParams"
    listed = (await conn.ext_method("cao/listAgents", {"sessionId": sid}))["agents"]
    assert {a["terminalId"] for a in listed} == {spawned["terminalId"], assigned["terminalId"]}
    assert all(a["attachCommand"] for a in listed if a["terminalId"] == spawned["terminalId"])
    output = await conn.ext_method("cao/getOutput", {"terminalId": spawned["terminalId"]})
    assert output["output"] == "ext"
    stats = await conn.ext_method("cao/stats", {})
    assert stats["agents"] >= 2 and stats["credentials"] >= 1
    assert await conn.ext_method("cao/terminate", {"terminalId": spawned["terminalId"]}) == {}
    profiles = (await conn.ext_method("cao/listProfiles", {}))["profiles"]
    assert "mock_reviewer" in {p["name"] for p in profiles}


async def test_malformed_lines_get_errors_and_the_session_goes_on(acp):
    conn, client, process, base, _env = acp
    sid = await new_session(conn, base)
    # The raw pipe: the client's reader would drop replies without an id, so read them ourselves.
    raw = process.stdin
    seen: list[dict] = []
    conn._conn.add_observer(lambda event: seen.append(event.message) if event.direction.value == "incoming" else None)
    for line in (
        b"this is not json\n",
        b"[1, 2, 3]\n",
        b'{"jsonrpc": "2.0", "id": 77, "method": 5}\n',
        b'{"jsonrpc": "2.0", "id": 78, "method": "session/prompt", "params": {"bogus": true}}\n',
        b'{"jsonrpc": "2.0", "id": 79, "method": "no/such/method", "params": {}}\n',
    ):
        raw.write(line)
    await raw.drain()
    await asyncio.sleep(0.5)
    errors = [m for m in seen if "error" in m]
    codes = sorted(m["error"]["code"] for m in errors)
    assert codes == sorted([-32700, -32600, -32600, -32602, -32601]), errors
    assert {m["id"] for m in errors if m["error"]["code"] in (-32602, -32601)} == {78, 79}
    # Still alive and well.
    await prompt(conn, sid, "echo still here")
    assert client.answer_text(sid) == "still here"


async def test_trust_ext_methods(acp):
    conn, _client, _process, base, _env = acp
    workspace = base / "workspace"
    flows = workspace / ".cao" / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    (flows / "acp-flow.md").write_text('---\nname: acp-flow\nschedule: "0 0 1 1 *"\nprofile: mock_developer\n---\necho hi\n')
    (info,) = (await conn.ext_method("cao/getTrust", {}))["folders"]
    assert info == {"path": str(workspace), "trusted": True, "source": "store", "hasConfig": True, "heldBack": []}
    (info,) = (await conn.ext_method("cao/setTrust", {"trusted": False, "persist": False}))["folders"]
    assert info["trusted"] is False and info["source"] == "editor"
    assert "flow acp-flow: not scheduled" in info["heldBack"]
    with pytest.raises(RequestError):
        await conn.ext_method("cao/setTrust", {"trusted": "yes"})
    (info,) = (await conn.ext_method("cao/setTrust", {"trusted": True, "persist": False}))["folders"]
    assert info["trusted"] is True and info["heldBack"] == []


async def test_worktree_ext_methods_and_the_workers_branch_in_its_tool_call(acp):
    import subprocess

    conn, client, _process, base, _env = acp
    repo = base / "workspace" / "acp-repo"
    repo.mkdir(parents=True)
    identity = ["-c", "user.name=Ana", "-c", "user.email=ana@example.com"]
    subprocess.run(["git", "init", "-q", "--initial-branch=main"], cwd=repo, check=True)
    (repo / "a.txt").write_text("a\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", *identity, "commit", "-qm", "start"], cwd=repo, check=True)
    sid = await new_session(conn, base)
    assigned = await conn.ext_method(
        "cao/assign",
        {
            "profile": "mock_developer",
            "message": "edit b.txt from acp",
            "sessionId": sid,
            "workingDirectory": str(repo),
            "worktree": True,
        },
    )
    tool_id = f"cao-{assigned['terminalId']}"

    def reported():
        return [
            u
            for u in client.of(sid, "tool_call_update")
            if u.tool_call_id == tool_id and u.status == "completed" and (u.raw_output or {}).get("worktree")
        ]

    for _ in range(300):
        if reported():
            break
        await asyncio.sleep(0.1)
    worktree = reported()[0].raw_output["worktree"]
    assert worktree["branch"] == f"cao/mock_developer-{assigned['terminalId']}" and worktree["files"] == ["b.txt"]
    listed = (await conn.ext_method("cao/listWorktrees", {"sessionId": sid}))["worktrees"]
    assert [w["terminalId"] for w in listed] == [assigned["terminalId"]]
    merged = await conn.ext_method("cao/mergeWorktree", {"terminalId": assigned["terminalId"]})
    assert merged["merged"] is True and (repo / "b.txt").read_text() == "from acp\n"
    with pytest.raises(RequestError) as info:
        await conn.ext_method("cao/discardWorktree", {"terminalId": "00000000"})
    assert info.value.code == -31012
