"""Warm workers with a real Claude Code (`.ci/node`) against the local fake model: a handoff to a
pooled worker answers, the next task goes to a fresh worker whose model requests hold nothing of
the previous task, and nothing is left after shutdown. Skipped without Claude Code."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest
from cao_client import CaoClient
from conftest import ROOT, isolated_env, kill_tmux
from fixtures.fake_model_server import FakeModelServer
from test_pool import alive, gone, panes, warm, write_profile

pytestmark = pytest.mark.asyncio

NODE_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
CLAUDE = shutil.which("claude", path=str(NODE_BIN))


@pytest.fixture
def model():
    server = FakeModelServer(delay=0.01).start()
    yield server
    server.stop()


@pytest.mark.skipif(CLAUDE is None, reason="Claude Code is not installed (.ci/run installs it under .ci/node)")
async def test_pooled_claude_code_workers_are_fresh_and_leave_nothing(tmp_base, model):
    env = isolated_env(tmp_base)
    env["PATH"] = f"{NODE_BIN}:{env['PATH']}"
    env["CAO_READY_TIMEOUT"] = "60"
    (tmp_base / "home" / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
    workspace = tmp_base / "workspace"
    (workspace / ".cao" / "agents").mkdir(parents=True)
    write_profile(workspace, "cc_warm", (
        "---\nname: cc_warm\ndescription: Claude Code, warm\nprovider: claude_code\npool: 1\n"
        f"env:\n  ANTHROPIC_BASE_URL: {model.url}\n  ANTHROPIC_AUTH_TOKEN: fake-token\n---\nYou are a worker.\n"
    ))  # fmt: skip
    try:
        async with CaoClient.start(workspace=workspace, env=env) as cao:
            first_warm = (await warm(cao, 1, timeout=90))[0]
            t0 = time.perf_counter()
            first = await cao.handoff("say: first-task-7c1", profile="cc_warm", timeout_seconds=60)
            assert first["terminalId"] == first_warm["terminalId"]
            assert "first-task-7c1" in first["output"]
            assert time.perf_counter() - t0 < 20
            # A fresh worker replaces it; the second task goes there and the model never sees
            # the first task in that worker's requests.
            second_warm = (await warm(cao, 1, timeout=90))[0]
            assert second_warm["terminalId"] != first["terminalId"]
            seen = len(model.requests)
            second = await cao.handoff("say: second-task-9d2", profile="cc_warm", timeout_seconds=60)
            assert second["terminalId"] == second_warm["terminalId"]
            assert "second-task-9d2" in second["output"]
            later = json.dumps([r["body"] for r in model.requests[seen:]])
            assert "second-task-9d2" in later and "first-task-7c1" not in later
            await warm(cao, 1, timeout=90)
            windows = panes(env)
            pids = list(windows.values())
            assert all(alive(p) for p in pids)
            await cao.shutdown_team()
        await gone(pids, env, list(windows))
        await asyncio.sleep(0)
    finally:
        kill_tmux(env["CAO_TMUX_SOCKET"])
