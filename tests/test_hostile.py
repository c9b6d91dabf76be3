"""Hostile input against the real sidecar process: huge bodies, floods, NUL bytes, bad names."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from cao_client import CaoClient, CaoError
from conftest import isolated_env, kill_tmux
from test_faults import _frame, _read_frame
from test_recovery import transcript


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


async def test_a_50_mb_body_and_a_flood_of_1000_requests(env, tmp_base):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cao_sidecar", "--stdio",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, limit=1 << 24,
    )  # fmt: skip
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(_frame({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"capabilities": {}}}))
        assert (await _read_frame(proc.stdout))["id"] == 0
        body = b'{"jsonrpc": "2.0", "id": 1, "method": "cao/listAgents", "params": {"pad": "' + b"x" * (50 << 20) + b'"}}'
        proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        for i in range(1000):
            proc.stdin.write(_frame({"jsonrpc": "2.0", "id": 100 + i, "method": "cao/listAgents", "params": {}}))
        await proc.stdin.drain()
        answers = {}
        while len(answers) < 1001:
            message = await asyncio.wait_for(_read_frame(proc.stdout), 30)
            answers[message.get("id")] = message
        assert answers[None]["error"]["code"] == -32600 and "exceeds" in answers[None]["error"]["message"]
        assert all(answers[100 + i]["result"] == {"agents": []} for i in range(1000))
    finally:
        proc.kill()
        await proc.wait()


async def test_nul_bytes_key_names_and_escapes_arrive_exactly(env, tmp_base):
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        agent = (await client.spawn("mock_developer"))["terminalId"]
        payload = "a\x00b Enter C-c \x1b]52;c;ZXZpbA==\x07 \x1b]0;title\x07 $(touch /tmp/pwned) `id`; -x"
        assert (await client.handoff("echo " + payload, terminal_id=agent))["output"] == payload
        users = [r["text"] for r in transcript(env, agent) if r["type"] == "user"]
        assert users == ["echo " + payload]  # one input, nothing more typed
    finally:
        await client.close()


@pytest.mark.parametrize(
    "params, code",
    [
        ({"profile": "../mock_developer"}, -31001),
        ({"profile": "mock_developer/../x"}, -31001),
        ({"profile": "mock\x00developer"}, -31001),
        ({"profile": "mock_developer", "session": "../etc"}, -32602),
        ({"profile": "mock_developer", "session": "a/b"}, -32602),
        ({"profile": "mock_developer", "session": "s\nnew-window"}, -32602),
        ({"profile": "mock_developer", "session": "x" * 500}, -32602),
        ({"profile": "mock_developer", "name": "a;b"}, -32602),
        ({"profile": "mock_developer", "name": "\x1b[31m"}, -32602),
        ({"profile": "mock_developer", "workingDirectory": "/no/such/dir"}, -32602),
        ({"profile": "mock_developer", "workingDirectory": "/etc/passwd"}, -32602),
    ],
)
async def test_hostile_names_and_paths_are_refused(env, tmp_base, params, code):
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        with pytest.raises(CaoError) as refused:
            await client.spawn(**{k if k != "workingDirectory" else "working_directory": v for k, v in params.items()})
        assert refused.value.code == code
        assert await client.list_agents() == []
        for terminal in ("../x", "a\x00b", "x" * 1000):
            with pytest.raises(CaoError) as unknown:
                await client.send_message(terminal, "hi")
            assert unknown.value.code == -31003
    finally:
        await client.close()


@pytest.mark.parametrize("field", ["session", "name"])
async def test_a_trailing_newline_does_not_sneak_through_a_name_check(env, tmp_base, field):
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        with pytest.raises(CaoError) as refused:
            await client.spawn("mock_developer", **{field: "dev\n"})
        assert refused.value.code == -32602
    finally:
        await client.close()
