"""The threat model of docs/security.md on the real sidecar process: what a workspace, an agent or
another local user can send us, and what must come of it (a clear error, nothing else)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from cao_client import CaoClient, CaoError
from cao_sidecar.agent_face import guard
from cao_sidecar.providers import mcp_config
from conftest import isolated_env, kill_tmux
from test_recovery import transcript, wait_until


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


def state(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "cao-sidecar"


def credential(env: dict[str, str], terminal_id: str) -> str:
    return (state(env) / "agents" / terminal_id / "credential").read_text().strip()


def mcp_url(env: dict[str, str]) -> str:
    port = (state(env) / f"mcp-{env['CAO_TMUX_SOCKET']}.port").read_text()
    return f"http://127.0.0.1:{port}"


def user_file(env: dict[str, str], relative: str, text: str) -> Path:
    path = Path(env["XDG_CONFIG_HOME"]) / "cao-sidecar" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def agent_env(env: dict[str, str], terminal_id: str) -> dict[str, str]:
    """The environment the sidecar gave an agent, read from its process."""
    out = subprocess.run(
        ["tmux", "-L", env["CAO_TMUX_SOCKET"], "list-panes", "-a", "-F", "#{window_name} #{pane_pid}"],
        capture_output=True,
        text=True,
    ).stdout
    pid = next(line.split()[1] for line in out.splitlines() if line.split()[0].endswith(terminal_id))
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def windows(env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        ["tmux", "-L", env["CAO_TMUX_SOCKET"], "list-windows", "-a", "-F", "#{window_name}"], capture_output=True, text=True
    )
    return out.stdout.split()


# ---- cross-talk ---------------------------------------------------------------------------------


async def test_an_agent_acts_only_within_its_own_session(env, tmp_base):
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        alpha = (await client.spawn("mock_developer", session="alpha"))["terminalId"]
        teammate = (await client.spawn("mock_reviewer", session="alpha"))["terminalId"]
        stranger = (await client.spawn("mock_reviewer", session="beta"))["terminalId"]
        # The agent itself (its own MCP credential) tries to type into another session's agent.
        with pytest.raises(CaoError) as refused:  # the tool's error ends the mock's turn in error
            await client.handoff(f"send {stranger} rm -rf ~", terminal_id=alpha)
        assert f"no agent '{stranger}' in your session 'alpha'" in json.dumps(refused.value.data)
        await asyncio.sleep(0.5)
        assert not [r for r in transcript(env, stranger) if r["type"] == "user"]
        # Its own team is reachable, by terminal id as before.
        sent = (await client.handoff(f"send {teammate} hello", terminal_id=alpha))["output"]
        assert "delivered" in sent or "queued" in sent
        await wait_until(lambda: any("hello" in r["text"] for r in transcript(env, teammate) if r["type"] == "user"))
        # The same from a raw MCP client holding alpha's credential.
        async with httpx2.AsyncClient(timeout=10) as http:
            answer = await http.post(
                mcp_url(env) + "/mcp",
                headers={
                    "Authorization": f"Bearer {credential(env, alpha)}",
                    "Accept": "application/json, text/event-stream",
                    "Content-Type": "application/json",
                },
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": {"name": "send_message", "arguments": {"target": stranger, "message": "x"}},
                },
            )
        result = answer.json()["result"]
        assert result["isError"] is True and "in your session" in result["content"][0]["text"]
    finally:
        await client.close()


# ---- DNS rebinding on the hooks route -------------------------------------------------------------


async def test_the_hooks_route_checks_host_and_origin_like_the_mcp_route(env, tmp_base):
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        agent = (await client.spawn("mock_developer"))["terminalId"]
        url = mcp_url(env)
        auth = {"Authorization": f"Bearer {credential(env, agent)}"}
        async with httpx2.AsyncClient(timeout=10) as http:
            ok = await http.post(url + "/hooks/mock", headers=auth, json={})
            assert ok.status_code == 200
            for route in ("/hooks/mock", "/mcp"):
                foreign = await http.post(url + route, headers={**auth, "Host": "evil.example:80"}, json={})
                assert foreign.status_code == 421, (route, foreign.text)
                browser = await http.post(url + route, headers={**auth, "Origin": "http://evil.example"}, json={})
                assert browser.status_code == 403, (route, browser.text)
    finally:
        await client.close()


# ---- local denial of service ----------------------------------------------------------------------


async def test_a_thousand_half_open_connections_do_not_lock_agents_out(env, tmp_base):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # room for our 1,100 sockets
    # The sidecar starts with the common default of 1,024 open files.
    command = ["sh", "-c", 'ulimit -Sn 1024 && exec "$0" -m cao_sidecar --stdio', sys.executable]
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env, command=command)
    sockets: list[socket.socket] = []
    try:
        agent = (await client.spawn("mock_developer"))["terminalId"]
        port = int(mcp_url(env).rsplit(":", 1)[1])
        for _ in range(1100):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")  # and nothing more
            sockets.append(s)
        started = time.monotonic()
        async with httpx2.AsyncClient(timeout=10) as http:
            answer = await http.post(
                mcp_url(env) + "/mcp",
                headers={
                    "Authorization": f"Bearer {credential(env, agent)}",
                    "Accept": "application/json, text/event-stream",
                    "Content-Type": "application/json",
                },
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_sessions", "arguments": {}}},
            )
        assert answer.status_code == 200 and agent in answer.text
        assert time.monotonic() - started < 3
        # An agent's own tool call still works end to end.
        assert (await client.handoff("echo still served", terminal_id=agent))["output"] == "still served"
        # The oldest waiting connections were closed to make room (at most 256 may wait).
        closed = 0
        for s in sockets[:800]:
            s.setblocking(False)
            try:
                closed += s.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionError:
                closed += 1
        assert closed >= 700
        # A connection that stays half-open is closed once its request is overdue (10 s).
        last = sockets[-1]
        last.settimeout(guard.REQUEST_SECONDS + 5)
        assert last.recv(1) == b""
    finally:
        for s in sockets:
            s.close()
        await client.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---- the workspace's own code ---------------------------------------------------------------------


def hostile_package(directory: Path, marker: Path) -> None:
    package = directory / "cao_sidecar"
    (package / "mock_agent").mkdir(parents=True)
    code = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("__init__.py", "__main__.py", "mock_agent/__init__.py", "mock_agent/__main__.py"):
        (package / name).write_text(code)


async def test_a_workspaces_own_cao_sidecar_package_is_never_run(env, tmp_base):
    repo = tmp_base / "hostile-clone"
    marker = tmp_base / "pwned"
    hostile_package(repo, marker)
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        agent = (await client.spawn("mock_developer", working_directory=str(repo)))["terminalId"]
        assert (await client.handoff("echo works", terminal_id=agent))["output"] == "works"
        # The stdio MCP bridge that CLIs without HTTP start (Kiro, Q), run where they run it.
        entry = mcp_config.stdio_bridge_entry(
            str(state(env) / f"mcp-{env['CAO_TMUX_SOCKET']}.sock"), state(env) / "agents" / agent / "credential"
        )
        bridge = subprocess.Popen(
            [entry["command"], *entry["args"]],
            cwd=repo,
            env=agent_env(env, agent),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            bridge.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}) + "\n")
            bridge.stdin.flush()
            line = await asyncio.wait_for(asyncio.to_thread(bridge.stdout.readline), 20)
        finally:
            bridge.kill()
            bridge.wait()
        assert json.loads(line)["id"] == 1  # our bridge answered
        assert not marker.exists(), marker.read_text()
    finally:
        await client.close()


# ---- profile values that look like flags ----------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["model: --yolo", "allowedTools: [Read, --dangerously-skip-permissions]", "disallowedTools: '-c'"]
)
async def test_a_profile_value_beginning_with_a_dash_starts_nothing(env, tmp_base, field):
    user_file(env, "agents/flagged.md", f"---\nname: flagged\nprovider: mock\n{field}\n---\nYou work.\n")
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        profiles = {p["name"]: p for p in await client.list_profiles()}
        assert "flagged" not in profiles  # refused at validation, with a diagnostic on the file
        with pytest.raises(CaoError) as refused:
            await client.spawn("flagged")
        assert "flagged" in refused.value.message
        assert await client.list_agents() == []
        assert not [w for w in windows(env) if w.startswith("flagged")]
        explained = subprocess.run(
            [
                sys.executable,
                "-m",
                "cao_sidecar",
                "profiles",
                "check",
                str(Path(env["XDG_CONFIG_HOME"]) / "cao-sidecar" / "agents" / "flagged.md"),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        assert "begins with '-'" in explained.stdout + explained.stderr
    finally:
        await client.close()


# ---- line-oriented CLIs -------------------------------------------------------------------------


async def test_a_line_oriented_cli_gets_one_line_and_no_control_characters(env, tmp_base):
    # A CLI declared without bracketed paste (the mock's screen, read as a line-oriented CLI).
    user_file(env, "providers/linemock.yaml", "extends: mock\nbracketed_paste: false\n")
    user_file(env, "agents/liner.md", "---\nname: liner\nprovider: linemock\n---\nYou work.\n")
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        agent = (await client.spawn("liner"))["terminalId"]
        out = await client.handoff("echo first line\nsecond line\r\n\tthird", terminal_id=agent)
        assert out["output"] == "first line second line third"
        for hostile in ("echo stop\x03now", "echo \x1b[A up", "echo del\x7f"):
            with pytest.raises(CaoError) as refused:
                await client.handoff(hostile, terminal_id=agent)
            assert refused.value.code == -32602 and "control character" in refused.value.message
            with pytest.raises(CaoError):
                await client.send_message(agent, hostile)
        users = [r["text"] for r in transcript(env, agent) if r["type"] == "user"]
        assert users == ["echo first line second line third"]  # one input, nothing else typed
        # A new worker is not even started for such a task.
        with pytest.raises(CaoError) as refused:
            await client.handoff("echo \x03", profile="liner")
        assert refused.value.code == -32602
        for _ in range(100):  # the refused worker is torn down
            if [a["terminalId"] for a in await client.list_agents()] == [agent]:
                break
            await asyncio.sleep(0.05)
        assert [a["terminalId"] for a in await client.list_agents()] == [agent]
    finally:
        await client.close()


# ---- tmux targets from names ----------------------------------------------------------------------


async def test_names_that_look_like_tmux_flags_are_only_names(env, tmp_base):
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        agent = (await client.spawn("mock_developer", session="-t", name="-F"))["terminalId"]
        other = (await client.spawn("mock_developer", session="-x"))["terminalId"]
        assert (await client.handoff("echo flagged names", terminal_id=agent))["output"] == "flagged names"
        assert [a["terminalId"] for a in await client.list_agents(session="-t")] == [agent]
        assert [a["terminalId"] for a in await client.list_agents(session="-x")] == [other]
        assert "-F" in windows(env)
    finally:
        await client.close()


# ---- files the sidecar creates ------------------------------------------------------------------


async def test_files_and_sockets_are_private_and_the_state_dir_is_made_private(env, tmp_base):
    directory = state(env)
    directory.mkdir(parents=True)
    directory.chmod(0o755)  # as a careless earlier version or the user left it
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        agent = (await client.spawn("mock_developer"))["terminalId"]
        await client.handoff("echo x", terminal_id=agent)
        mode = lambda p: stat.S_IMODE(p.lstat().st_mode)  # noqa: E731
        assert mode(directory) == 0o700
        assert mode(directory / "agents") == 0o700 and mode(directory / "agents" / agent) == 0o700
        sock = directory / f"mcp-{env['CAO_TMUX_SOCKET']}.sock"
        assert stat.S_ISSOCK(sock.lstat().st_mode) and mode(sock) == 0o600
        for private in (
            directory / f"mcp-{env['CAO_TMUX_SOCKET']}.port",
            directory / "agents" / agent / "credential",
            directory / f"sidecar-{env['CAO_TMUX_SOCKET']}.lock",
        ):
            assert mode(private) == 0o600, private
        logs = [*directory.rglob("*.log"), *directory.rglob("events.jsonl")]
        assert logs and all(mode(p) == 0o600 for p in logs), [(p, oct(mode(p))) for p in logs]
    finally:
        await client.close()


def test_a_directory_of_another_user_is_refused(tmp_path):
    from cao_sidecar import paths

    if os.getuid() != 0:
        pytest.skip("needs root to give a directory away")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(paths.UnsafeDirectory):
        paths.ensure_private_dir(theirs)


def test_a_planted_symlink_is_not_followed(tmp_path):
    from cao_sidecar import paths

    target = tmp_path / "target"
    target.write_text("keep")
    link = tmp_path / "mcp.port"
    link.symlink_to(target)
    with pytest.raises(OSError):
        paths.write_private_text(link, "1234")
    assert target.read_text() == "keep"


# ---- profiles install ---------------------------------------------------------------------------


def test_profiles_install_writes_only_inside_the_user_dir_and_follows_no_link_out(env, tmp_base):
    workspace = tmp_base / "workspace"
    user_agents = Path(env["XDG_CONFIG_HOME"]) / "cao-sidecar" / "agents"

    def install(spec: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cao_sidecar", "profiles", "install", spec, "--workspace", str(workspace)],
            env=env,
            cwd=workspace,
            capture_output=True,
            text=True,
        )

    climbing = workspace / "climbing.md"
    climbing.write_text("---\nname: ../../escaped\nprovider: mock\n---\nb\n")
    out = install(str(climbing))
    assert out.returncode != 0 and "must be 1-64 letters" in out.stderr + out.stdout
    # A workspace profile that is a link to a file outside the workspace: never read, never copied.
    secret = tmp_base / "home" / "secret.md"
    secret.write_text("---\nname: linked\nprovider: mock\ndescription: SECRET-CONTENT\n---\nb\n")
    agents = workspace / ".cao" / "agents"
    agents.mkdir(parents=True)
    (agents / "linked.md").symlink_to(secret)
    out = install("linked")
    assert out.returncode != 0, out.stdout
    assert not list(tmp_base.rglob("escaped*")) and not (user_agents / "linked.md").exists()
    assert "SECRET-CONTENT" not in out.stdout + out.stderr


def test_relayed_text_shows_control_characters_instead_of_losing_the_message():
    from cao_sidecar.core.errors import InvalidRequest
    from cao_sidecar.core.typed_text import text_for_agent
    from cao_sidecar.providers import get_provider

    aider, mock = get_provider("aider"), get_provider("mock")
    assert text_for_agent(aider, "a\x03b\x7f\x9b\nc", "m", strict=False) == "a^Cb^?<U+009B> c"
    with pytest.raises(InvalidRequest):
        text_for_agent(aider, "a\x03b", "m")
    assert text_for_agent(mock, "a\x03b\nc", "m") == "a\x03b\nc"  # bracketed paste: byte-exact
