"""The MCP host door, `cao-sidecar mcp`, started exactly as each host's snippet in docs/mcp-hosts.md
starts it (command + args + cwd + env), driven by the MCP SDK's own stdio client: a host's agent
leads a team of mock workers in a real tmux, with isolated XDG dirs and tmux socket."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import mcp_types
import pytest
import yaml
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from conftest import ROOT, agent_panes, isolated_env, kill_tmux

DOC = ROOT / "docs" / "mcp-hosts.md"
PLACEHOLDERS = ("/path/to/your/project", "${workspaceFolder}")
TOOLS = {
    "handoff", "assign", "send_message", "list_sessions", "list_profiles", "spawn", "get_output", "answer",
    "terminate", "read_messages", "wait_for_messages", "run_workflow",
}  # fmt: skip
BIN = Path(sys.executable).parent  # where `pip install` put the cao-sidecar command
NODE_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
CLAUDE = shutil.which("claude", path=str(NODE_BIN)) or shutil.which("claude")
CODEX = shutil.which("codex", path=str(NODE_BIN)) or shutil.which("codex")
WORKSPACE_PROFILES = {
    "ws_helper.md": "---\nname: ws_helper\ndescription: only this project defines it\nprovider: mock\n"
    "env:\n  PLANTED_BY_PROJECT: planted\n---\nYou help.\n",
    "developer.md": "---\nname: developer\ndescription: the project's own developer\nprovider: mock\n---\nYou build.\n",
}


def host_env(base: Path, *, trusted: bool = True) -> dict[str, str]:
    env = isolated_env(base, trusted=trusted)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"  # `cao-sidecar` as a user's PATH finds it
    agents = base / "workspace" / ".cao" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    for name, text in WORKSPACE_PROFILES.items():
        (agents / name).write_text(text)
    return env


def doc_snippets() -> dict[str, tuple[str, list[str]]]:
    """Each host's (command, args) from its section of docs/mcp-hosts.md."""
    found: dict[str, tuple[str, list[str]]] = {}
    for section in re.split(r"^### ", DOC.read_text(), flags=re.M)[1:]:
        host = section.splitlines()[0].strip()
        block = re.search(r"```(\w+)\n(.*?)```", section, re.S)
        if block is None:
            continue
        lang, text = block.groups()
        if lang == "sh":
            argv = shlex.split(text.strip())
            assert argv[:4] == ["claude", "mcp", "add", "cao"], text
            found[host] = (argv[5], argv[6:])
            continue
        if lang == "json":
            data = json.loads(text)
            servers = data.get("mcpServers") or data.get("servers") or data.get("context_servers")
            entry = servers["cao"]
        elif lang == "toml":
            entry = tomllib.loads(text)["mcp_servers"]["cao"]
        elif lang == "yaml":
            entry = next(s for s in yaml.safe_load(text)["mcpServers"] if s["name"] == "cao")
        else:
            continue
        found[host] = (entry["command"], list(entry["args"]))
    return found


SNIPPETS = doc_snippets()


def started_like(host: str, base: Path, env: dict[str, str]) -> StdioServerParameters:
    """How `host` starts the door: its snippet's command and args, a project path where the
    snippet has a placeholder (and then a working directory that is not the project)."""
    command, args = SNIPPETS[host]
    workspace = str(base / "workspace")
    filled = [workspace if a in PLACEHOLDERS else a for a in args]
    elsewhere = base / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    cwd = elsewhere if filled != args else base / "workspace"
    return StdioServerParameters(command=command, args=filled, env=env, cwd=str(cwd))


class Host:
    """A connected MCP client and what the server told it unasked."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.logs: list[Any] = []

    async def call(self, tool: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> mcp_types.CallToolResult:
        result = await self.session.call_tool(tool, arguments or {}, **kwargs)
        assert isinstance(result, mcp_types.CallToolResult)
        return result

    async def ok(self, tool: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        result = await self.call(tool, arguments, **kwargs)
        assert not result.is_error, result.content
        assert result.structured_content is not None
        return result.structured_content

    async def error(self, tool: str, arguments: dict[str, Any] | None = None) -> str:
        result = await self.call(tool, arguments)
        assert result.is_error, result
        return result.content[0].text  # type: ignore[union-attr]

    async def logged(self, event: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The `event`s announced so far in log notifications (logger 'cao'), once there is one."""
        deadline = time.monotonic() + timeout
        while True:
            found = [n.data for n in self.logs if n.logger == "cao" and isinstance(n.data, dict) and n.data.get("event") == event]
            if found:
                return found
            assert time.monotonic() < deadline, f"no {event} announced: {self.logs}"
            await asyncio.sleep(0.05)

    async def agent(self, terminal_id: str) -> dict[str, Any] | None:
        team = await self.ok("list_sessions")
        return next((a for a in team["agents"] if a["terminalId"] == terminal_id), None)

    async def wait_status(self, terminal_id: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            agent = await self.agent(terminal_id)
            if agent is not None and agent["status"] == status:
                return agent
            assert time.monotonic() < deadline, f"{terminal_id} never became {status}: {agent}"
            await asyncio.sleep(0.2)


@asynccontextmanager
async def connect(params: StdioServerParameters, name: str = "test-host") -> AsyncIterator[Host]:
    logs: list[Any] = []

    async def on_log(params: Any) -> None:
        logs.append(params)

    with open(Path(params.env["HOME"]).parent / "mcp-door.stderr", "a") as errlog:  # type: ignore[index]
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(
                read, write, logging_callback=on_log, client_info=mcp_types.Implementation(name=name, version="1")
            ) as session:
                await session.initialize()
                host = Host(session)
                host.logs = logs
                yield host


@pytest.fixture
def short_tmp() -> Path:
    """A short base dir: the orchestrator's Unix socket lives in its state dir (108-byte limit)."""
    return Path(tempfile.mkdtemp(prefix="cao-h-"))


@pytest.fixture(scope="module")
def team_base():
    base = Path(tempfile.mkdtemp(prefix="cao-h-"))
    env = host_env(base)
    yield base, env
    kill_tmux(env["CAO_TMUX_SOCKET"])


def test_the_docs_have_a_snippet_for_every_host_and_each_runs_the_door():
    assert set(SNIPPETS) == {
        "Claude Code", "Claude Desktop", "Cursor", "VS Code", "Windsurf", "Cline", "Continue", "Codex", "Zed",
    }  # fmt: skip
    for host, (command, args) in SNIPPETS.items():
        assert command == "cao-sidecar" and args[0] == "mcp", host


@pytest.mark.parametrize("host", sorted(SNIPPETS))
async def test_each_hosts_snippet_starts_the_door_on_its_project(host: str, short_tmp: Path):
    tmp_path = short_tmp
    env = host_env(tmp_path)
    try:
        async with connect(started_like(host, tmp_path, env)) as client:
            tools = (await client.session.list_tools()).tools
            assert {t.name for t in tools} == TOOLS
            assert all(t.output_schema and t.description for t in tools)
            profiles = await client.ok("list_profiles")
            # The project's own profile: the door found the project the snippet names.
            assert "ws_helper" in {p["name"] for p in profiles["profiles"]}
    finally:
        kill_tmux(env["CAO_TMUX_SOCKET"])


async def test_a_host_leads_a_team_handoff_assign_messages_answer_terminate(team_base):
    base, env = team_base
    async with connect(started_like("Claude Code", base, env)) as host:
        # handoff: the answer is the result; progress notifications keep a long call alive
        progress: list[tuple[float, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, message))

        started = time.monotonic()
        handed = await host.ok(
            "handoff", {"target": "mock_developer", "task": "sleep 4 the slow answer"}, progress_callback=on_progress
        )
        assert handed["output"] == "the slow answer" and handed["status"] == "completed"
        assert time.monotonic() - started >= 4
        assert progress and "mock_developer" in (progress[-1][1] or "")
        assert await host.agent(handed["terminalId"]) is None  # a handoff's worker is stopped after answering

        # assign: the result comes back through the inbox (and a log notification announces it)
        assigned = await host.ok("assign", {"target": "mock_developer", "task": "echo the assigned result"})
        inbox = await host.ok("wait_for_messages", {"timeout_seconds": 30})
        assert [m["text"] for m in inbox["messages"]] == ["result of the task you assigned: the assigned result"]
        assert assigned["terminalId"] in inbox["messages"][0]["sender"]
        lead_id = inbox["leadId"]
        assert lead_id == "host-test-host"
        assert (await host.logged("message"))[0]["sender"] == inbox["messages"][0]["sender"]
        assert (await host.ok("read_messages"))["messages"] == []  # handed over once

        # a kept agent: spawn, talk to it (it sees who wrote), read its answer
        spawned = await host.ok("spawn", {"profile": "mock_developer", "name": "w1"})
        assert spawned["status"] == "idle"
        sent = await host.ok("send_message", {"target": "w1", "message": "hi from the lead"})
        assert sent["terminalId"] == spawned["terminalId"]
        await host.wait_status(spawned["terminalId"], "completed")
        output = (await host.ok("get_output", {"target": "w1"}))["output"]
        assert output == f"done: [message from lead {lead_id}] hi from the lead"
        team = await host.ok("list_sessions")
        assert {"leadId": lead_id, "host": "test-host", "connected": True, "you": True} in team["leads"]

        # a worker writes to the lead with its own send_message tool (its answer follows)
        writer = await host.ok("assign", {"target": "mock_developer", "task": f"send {lead_id} done with the review"})
        reply = await host.ok("wait_for_messages", {"timeout_seconds": 30})
        assert reply["messages"][0]["text"] == "done with the review"
        assert reply["messages"][0]["sender"] == f"mock_developer {writer['terminalId']}"

        # an agent's question: seen in list_sessions, answered by the host
        asking = await host.ok("assign", {"target": "mock_developer", "task": "ask Deploy now?"})
        waiting = await host.wait_status(asking["terminalId"], "waiting_user_answer")
        assert "Deploy now?" in waiting["question"]["text"]
        announced = await host.logged("question")
        assert announced[-1]["terminalId"] == asking["terminalId"]
        assert announced[-1]["id"] == waiting["question"]["id"]
        answered = await host.ok(
            "answer", {"target": asking["terminalId"], "answer": "yes", "question_id": waiting["question"]["id"]}
        )
        assert answered["questionId"] == waiting["question"]["id"]
        assert answered["typed"] == "'y' + Enter"  # the choice "yes" stands for, as the CLI expects it
        texts: list[str] = []
        while not any("answered:" in t for t in texts):
            got = (await host.ok("wait_for_messages", {"timeout_seconds": 30}))["messages"]
            assert got, f"no answer from the worker that asked; had {texts}"
            texts += [m["text"] for m in got]
        assert "result of the task you assigned: answered: y" in texts

        # terminate: gone from the team
        for terminal_id in (spawned["terminalId"], assigned["terminalId"], writer["terminalId"], asking["terminalId"]):
            assert (await host.ok("terminate", {"target": terminal_id}))["status"] == "exited"
        assert (await host.ok("list_sessions"))["agents"] == []


async def test_every_bad_input_is_a_tool_error_and_the_door_keeps_serving(team_base):
    base, env = team_base
    async with connect(started_like("Claude Code", base, env)) as host:
        assert "unknown profile 'nope'" in await host.error("handoff", {"target": "nope", "task": "x"})
        assert "must not be empty" in await host.error("assign", {"target": "mock_developer", "task": "  "})
        assert "bracketed-paste" in await host.error("assign", {"target": "mock_developer", "task": "a\x1b[201~b"})
        assert "no agent with terminal id or name 'ghost'" in await host.error("get_output", {"target": "ghost"})
        assert "no agent with terminal id or name 'ghost'" in await host.error("terminate", {"target": "ghost"})
        assert "no agent" in await host.error("send_message", {"target": "ghost", "message": "hi"})
        assert "yourself" in await host.error("send_message", {"target": "host-test-host", "message": "hi"})
        assert (await host.call("handoff", {"target": "mock_developer"})).is_error  # a missing argument
        assert (await host.call("wait_for_messages", {"timeout_seconds": -1})).is_error
        spawned = await host.ok("spawn", {"profile": "mock_developer"})
        assert await host.error("answer", {"target": spawned["terminalId"], "answer": "yes"})  # nothing asked
        assert (await host.ok("list_profiles"))["profiles"]  # still serving
        await host.ok("terminate", {"target": spawned["terminalId"]})


async def test_a_garbage_line_gets_a_parse_error_and_the_next_request_an_answer(team_base):
    base, env = team_base
    params = started_like("Claude Code", base, env)
    proc = await asyncio.create_subprocess_exec(
        params.command, *params.args, cwd=params.cwd, env=params.env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }  # fmt: skip
    not_a_request = {"jsonrpc": "2.0", "id": 7, "method": 42}
    proc.stdin.write(
        b"{this is not json\n" + b"[" * 100000 + b"\n" + json.dumps(not_a_request).encode() + b"\n"
        + json.dumps(initialize).encode() + b"\n"
    )  # fmt: skip
    await proc.stdin.drain()
    answers = []
    while not any(a.get("id") == 1 for a in answers):
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, "the door closed"
        answers.append(json.loads(line))
    assert next(a for a in answers if a.get("id") == 1)["result"]["serverInfo"]["name"] == "cao"
    errors = [(a["id"], a["error"]["code"]) for a in answers if "error" in a]
    assert errors == [(None, -32700), (None, -32700), (7, -32600)]  # each bad line answered, in order
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_the_host_joins_the_editors_team_acts_only_in_its_session_and_finds_results_after_a_break(team_base):
    from cao_client import CaoClient

    base, env = team_base
    params = started_like("Claude Code", base, env)
    seen_by_editor: list[dict[str, Any]] = []

    def on_notification(method: str, notification: Any) -> None:
        if method == "cao/agentStatus":
            seen_by_editor.append(notification)

    async with CaoClient.start(workspace=base / "workspace", env=env, on_notification=on_notification) as editor:
        mine = await editor.spawn("mock_developer", name="editors_worker")
        outsider = await editor.spawn("mock_developer", name="outsider", session="other")
        async with connect(params, name="returning") as host:
            team = await host.ok("list_sessions")
            names = {a["name"] for a in team["agents"]}
            assert "editors_worker" in names and "outsider" not in names  # the editor's team, its own session only
            refused = await host.error("get_output", {"target": outsider["terminalId"]})
            assert f"no agent '{outsider['terminalId']}' in your session 'cao'" in refused
            assert "no agent" in await host.error("terminate", {"target": "outsider"})
            handed = await host.ok("handoff", {"target": "mock_developer", "task": "echo seen by the editor"})
            assert any(n["terminalId"] == handed["terminalId"] for n in seen_by_editor)  # the editor saw the worker
            assigned = await host.ok("assign", {"target": "mock_developer", "task": "sleep 3 the late result"})
        # The host is away while its worker runs; back under the same name, the result waits for it.
        async with connect(params, name="returning") as host:
            inbox = await host.ok("wait_for_messages", {"timeout_seconds": 30})
            assert inbox["leadId"] == "host-returning"
            assert [m["text"] for m in inbox["messages"]] == ["result of the task you assigned: the late result"]
            assert assigned["terminalId"] in inbox["messages"][0]["sender"]
        for agent in (mine, outsider, assigned):
            await editor.terminate(agent["terminalId"])


def pane_environment(socket: str, pane_id: str) -> dict[str, str]:
    pid = subprocess.run(
        ["tmux", "-L", socket, "display-message", "-p", "-t", pane_id, "#{pane_pid}"], capture_output=True, text=True
    ).stdout.strip()
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
async def test_a_host_gets_no_more_than_the_users_trust_allows(short_tmp: Path, trusted: bool):
    tmp_path = short_tmp
    env = host_env(tmp_path, trusted=trusted)
    try:
        async with connect(started_like("Claude Code", tmp_path, env)) as host:
            profiles = {p["name"]: p for p in (await host.ok("list_profiles"))["profiles"]}
            assert profiles["ws_helper"]["untrusted"] is not trusted
            # An untrusted folder's developer.md never replaces the built-in one.
            assert (profiles["developer"]["scope"] == "workspace") is trusted
            spawned = await host.ok("spawn", {"profile": "ws_helper"})
            panes = agent_panes(env["CAO_TMUX_SOCKET"])
            assert len(panes) == 1
            planted = pane_environment(env["CAO_TMUX_SOCKET"], panes[0]).get("PLANTED_BY_PROJECT")
            assert planted == ("planted" if trusted else None)  # the profile's env: held back unless trusted
            await host.ok("terminate", {"target": spawned["terminalId"]})
    finally:
        kill_tmux(env["CAO_TMUX_SOCKET"])


@pytest.mark.skipif(CLAUDE is None, reason="Claude Code is not installed (npm install @anthropic-ai/claude-code)")
def test_claude_mcp_add_then_list_shows_the_door_connected(short_tmp: Path):
    tmp_path = short_tmp
    env = host_env(tmp_path)
    home = Path(env["HOME"])
    claude_env = {**env, "DISABLE_AUTOUPDATER": "1"}
    workspace = tmp_path / "workspace"
    try:
        command, args = SNIPPETS["Claude Code"]
        added = subprocess.run(
            [CLAUDE, "mcp", "add", "cao", "--", command, *args], cwd=workspace, env=claude_env,
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
        assert (home / ".claude.json").exists()
        listed = subprocess.run(
            [CLAUDE, "mcp", "list"], cwd=workspace, env=claude_env, capture_output=True, text=True, timeout=120
        )
        line = next((ln for ln in listed.stdout.splitlines() if ln.startswith("cao:")), None)
        assert line is not None, listed.stdout + listed.stderr
        assert "cao-sidecar mcp" in line and "Connected" in line, line
    finally:
        kill_tmux(env["CAO_TMUX_SOCKET"])


@pytest.mark.skipif(CODEX is None, reason="Codex is not installed (npm install @openai/codex)")
def test_codex_mcp_add_writes_the_documented_config(tmp_path: Path):
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    command, args = SNIPPETS["Codex"]
    added = subprocess.run(
        [CODEX, "mcp", "add", "cao", "--", command, *args],
        env={"HOME": str(tmp_path), "CODEX_HOME": str(codex_home), "PATH": os.environ["PATH"]},
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    written = tomllib.loads((codex_home / "config.toml").read_text())["mcp_servers"]["cao"]
    assert (written["command"], written["args"]) == (command, args)


async def test_a_hosts_handoff_and_assign_take_worktree_and_base_ref_like_the_agents_tools(team_base):
    base, env = team_base
    async with connect(started_like("Claude Code", base, env)) as host:
        tools = {t.name: t for t in (await host.session.list_tools()).tools}
        for name in ("handoff", "assign"):
            assert {"worktree", "base_ref"} <= set(tools[name].input_schema["properties"])
        # The option reaches the core: the team's workspace is no git repository, so a worktree is a clear error.
        args = {"target": "mock_developer", "task": "x", "worktree": True, "base_ref": "main"}
        assert "not in a git repository" in await host.error("assign", args)
        assert "not in a git repository" in await host.error("handoff", args)
        assert (await host.ok("list_profiles"))["profiles"]  # still serving
