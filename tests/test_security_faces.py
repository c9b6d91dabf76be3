"""Deeply nested JSON against the editor doors (ACP lines, LSP frames) of the real process: an
error answer for the message, and the door keeps serving."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from conftest import isolated_env, kill_tmux
from test_faults import _frame, _read_frame

DEPTHS = (100, 5_000, 200_000)  # past our limit; past the interpreter's recursion limit; far past


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


def nested(depth: int) -> bytes:
    return b'{"jsonrpc": "2.0", "id": 9, "method": "session/new", "params": {"x": ' + b"[" * depth + b"]" * depth + b"}}"


async def test_acp_answers_deep_nesting_with_an_error_and_keeps_serving(env, tmp_base):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cao_sidecar", "--acp", cwd=str(tmp_base / "workspace"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, limit=1 << 24,
    )  # fmt: skip
    assert proc.stdin and proc.stdout
    try:
        for depth in DEPTHS:
            proc.stdin.write(nested(depth) + b"\n")
            proc.stdin.write(b'{"a": ' * depth + b"1" + b"}" * depth + b"\n")
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 1, "clientCapabilities": {}}}
        proc.stdin.write(json.dumps(init).encode() + b"\n")
        await proc.stdin.drain()
        answers = []
        while True:
            message = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            answers.append(message)
            if message.get("id") == 1:
                break
        errors = [a["error"] for a in answers if "error" in a]
        assert len(errors) == 2 * len(DEPTHS), answers
        assert all(e["code"] in (-32700, -32600) and "nested deeper" in e["message"] for e in errors), errors
        assert answers[-1]["result"]["agentInfo"]["name"] == "cao-sidecar"
        assert proc.returncode is None
    finally:
        proc.kill()
        await proc.wait()


async def test_lsp_answers_deep_nesting_with_an_error_and_keeps_serving(env, tmp_base):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cao_sidecar", "--stdio",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, limit=1 << 24,
    )  # fmt: skip
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(_frame({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"capabilities": {}}}))
        assert (await asyncio.wait_for(_read_frame(proc.stdout), 30))["id"] == 0
        for depth in DEPTHS:
            body = nested(depth).replace(b"session/new", b"cao/listAgents")
            proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        proc.stdin.write(_frame({"jsonrpc": "2.0", "id": 1, "method": "cao/listAgents", "params": {}}))
        await proc.stdin.drain()
        answers = []
        while True:
            message = await asyncio.wait_for(_read_frame(proc.stdout), 30)
            answers.append(message)
            if message.get("id") == 1:
                break
        assert answers[-1]["result"] == {"agents": []}
        assert proc.returncode is None
    finally:
        proc.kill()
        await proc.wait()
