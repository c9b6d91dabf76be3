"""Kiro CLI's hooks, end to end through the real sidecar: the agent file we write carries hooks
that call only our relay, and a `kiro-cli` that runs them the way Kiro documents (a fake: Kiro CLI
cannot be installed here; tests/fixtures/fake_kiro_cli.py) ends its turns by its events. A turn
whose screen is finished waits for the stop event; without one the screen is believed after the
grace time (CAO_EVENT_GRACE).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_lsp import LanguageClient

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import get_provider
from cao_sidecar.providers.base import LaunchContext
from conftest import request
from fixtures.real_cli import RealCliTeam

S = AgentStatus
FAKE = Path(__file__).parent / "fixtures" / "fake_kiro_cli.py"
RELAY = Path(__file__).resolve().parent.parent / "cao_sidecar" / "providers" / "hook_relay.py"
GRACE = 3.0

TEAM = RealCliTeam("cao-kiro-", ready_timeout=20)
BIN = TEAM.base / "bin"
BIN.mkdir()
(BIN / "kiro-cli").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} "$@"\n')
(BIN / "kiro-cli").chmod(0o755)
TEAM.sidecar.env["PATH"] = f"{BIN}:{TEAM.sidecar.env['PATH']}"
TEAM.sidecar.env["CAO_EVENT_GRACE"] = str(GRACE)
LOG = TEAM.base / "kiro-log.jsonl"
TEAM.write_profiles(
    {"kiro_worker": f"---\nname: kiro_worker\ndescription: d\nprovider: kiro_cli\nenv:\n  FAKE_KIRO_LOG: {LOG}\n---\nBe brief.\n"}
)
pytestmark = pytest.mark.timeout(90)
in_module_loop = pytest.mark.asyncio(loop_scope="module")
client = TEAM.client_fixture()


def logged() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LOG.read_text().splitlines()] if LOG.exists() else []


def agent_file(tid: str) -> dict[str, Any]:
    return json.loads((TEAM.base / "home" / ".kiro" / "agents" / f"cao-{tid}.json").read_text())


async def hooks_done() -> list[dict[str, Any]]:
    """The hook runs logged, once every hook that started has ended (the fake logs the end after
    the relay returned, which can be after the sidecar ended the turn)."""
    for _ in range(100):
        runs = [r for r in logged() if "hook" in r]
        if sum(r["phase"] == "start" for r in runs) == sum(r["phase"] == "end" for r in runs):
            return [r for r in runs if r["phase"] == "end"]
        await asyncio.sleep(0.05)
    raise AssertionError(logged())


async def handoff_timed(lsp: LanguageClient, tid: str, task: str) -> tuple[str, float]:
    start = len(logged())
    output = await TEAM.handoff(lsp, tid, task)
    returned = time.time()
    await hooks_done()
    for _ in range(40):  # the fake logs its finished screen after the stop hook ran
        finished = [r["t"] for r in logged()[start:] if r.get("screen") == "finished"]
        if finished:
            break
        await asyncio.sleep(0.05)
    assert finished, logged()[start:]
    return output, returned - finished[-1]


@in_module_loop
async def test_the_agent_file_hooks_call_only_our_relay_and_the_stop_event_ends_the_turn(client: LanguageClient) -> None:
    lsp = client  # type: ignore[assignment]
    tid = await TEAM.spawn_ready(lsp, "kiro_worker")
    hooks = agent_file(tid)["hooks"]
    assert set(hooks) == {"userPromptSubmit", "preToolUse", "postToolUse", "stop"}
    for trigger, entries in hooks.items():
        (hook,) = entries
        argv = shlex.split(hook["command"])
        assert argv[:2] == [sys.executable, str(RELAY)] and argv[-2:] == ["--stdin", "--quiet"], hook
        assert argv[argv.index("--url") + 1].endswith("/hooks/kiro_cli") and "127.0.0.1" in argv[argv.index("--url") + 1]
        assert hook.get("matcher") == ("*" if trigger.endswith("ToolUse") else None)

    # The finished answer is on screen 2 s before the stop hook runs: events win, so the
    # handoff returns only after it (the screen alone would have ended the turn at once).
    output, after_screen = await handoff_timed(lsp, tid, "late: first task")
    assert output == "kiro did: LATE: FIRST TASK", (output, TEAM.screen_of(tid), logged(), TEAM.logged_events()[-12:])
    assert after_screen >= 1.8, "\n".join(map(json.dumps, logged() + TEAM.logged_events()[-12:]))
    runs = await hooks_done()
    assert [r["hook"] for r in runs] == ["userPromptSubmit", "stop"], runs
    assert all(r["rc"] == 0 and r["stdout"] == "" for r in runs), runs  # nothing added to the model's context
    statuses = TEAM.sidecar.statuses(tid)
    assert statuses[-2:] == ["processing", "completed"], statuses

    # Tool hooks keep it processing; the stop hook right after the answer ends the turn.
    output, _ = await handoff_timed(lsp, tid, "tool: read it")
    assert output == "kiro did: TOOL: READ IT"
    assert [r["hook"] for r in (await hooks_done())[2:]] == ["userPromptSubmit", "preToolUse", "postToolUse", "stop"]


@in_module_loop
async def test_without_a_stop_event_the_screen_ends_the_turn_after_the_grace_time(client: LanguageClient) -> None:
    lsp = client  # type: ignore[assignment]
    tid = await TEAM.spawn_ready(lsp, "kiro_worker")
    output, after_screen = await handoff_timed(lsp, tid, "nostop: second task")
    assert output == "kiro did: NOSTOP: SECOND TASK"
    assert GRACE - 0.5 <= after_screen < GRACE + 8, after_screen
    await request(lsp, "cao/terminate", {"terminalId": tid}, timeout=30)


def test_hook_payloads_and_the_q_cli_wiring(tmp_path: Path) -> None:
    kiro, q = get_provider("kiro_cli"), get_provider("q_cli")
    read = lambda p, payload: p.hook_event(p.name, payload, "x")  # noqa: E731
    assert read(kiro, {"hook_event_name": "userPromptSubmit", "cwd": "/w", "prompt": "x"}).status is S.PROCESSING
    assert read(kiro, {"hook_event_name": "preToolUse", "tool_name": "fs_read", "tool_input": {}}).status is S.PROCESSING
    stop = read(kiro, {"hook_event_name": "stop", "cwd": "/w"})
    assert stop.status is S.COMPLETED and stop.answer is None
    for bad in ({"hook_event_name": "agentSpawn"}, {"hook_event_name": "Stop"}, {}, "stop", None):
        assert read(kiro, bad) is None
    assert read(q, {"hook_event_name": "stop"}) is None and q.event_statuses == {S.PROCESSING}
    env = {
        "CAO_MCP_URL": "http://127.0.0.1:4321/mcp",
        "CAO_MCP_TOKEN": "tok-1",
        "CAO_MCP_SOCKET": "/nonexistent.sock",
        "HOME": str(tmp_path),
    }
    (tmp_path / "agent").mkdir()
    spec = q.launch(LaunchContext("1a2b3c4d", "s", str(tmp_path), tmp_path / "agent", env=env))
    data = json.loads((tmp_path / ".aws" / "amazonq" / "cli-agents" / "cao-1a2b3c4d.json").read_text())
    assert spec.events and set(data["hooks"]) == {"userPromptSubmit", "preToolUse", "postToolUse"}
    assert "tok-1" not in json.dumps(data)
    bare = kiro.launch(
        LaunchContext("1a2b3c4e", "s", str(tmp_path), tmp_path / "agent", system_prompt="p", env={"HOME": str(tmp_path)})
    )
    assert not bare.events and "hooks" not in json.loads((tmp_path / ".kiro" / "agents" / "cao-1a2b3c4e.json").read_text())


def test_the_answer_at_the_stop_event_is_this_turns_before_its_credits_line() -> None:
    screen = "\n".join(
        [
            "[cao-1a2b3c4d] 2% λ > first",
            "> the first answer",
            "",
            " ▸ Credits: 0.01 • Time: 1s",
            "",
            "[cao-1a2b3c4d] 2% λ > second",
            "> the second answer",
            "  on two lines",
            "",
        ]
    )
    assert get_provider("kiro_cli").extract_answer(screen) == "the second answer\n  on two lines"
    done = screen + "\n ▸ Credits: 0.01 • Time: 1s\n\n[cao-1a2b3c4d] 3% λ > "
    assert get_provider("kiro_cli").extract_answer(done) == "the second answer\n  on two lines"
