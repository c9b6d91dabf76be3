"""Stalls, end to end: a real sidecar (stall time 1 s) and real mock agents whose screen freezes
(task `hang`) or keeps only a spinner going (task `sleep`). The agent turns `stalled` with a
cao/agentStatus notification and goes back to `processing` by itself when its output moves, and
its turn still ends with its answer. Plus the fingerprint that tells progress from animation.
"""

from __future__ import annotations

import asyncio

import pytest
from pytest_lsp import LanguageClient

from cao_sidecar.core.stalls import screen_fingerprint
from conftest import request
from test_editor_common import list_agents, module_fixtures, new_sidecar, spawn

CONFIG, SIDECAR = new_sidecar("stalls", extra_env={"CAO_STALL_SECONDS": "1"})
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

client, clean = module_fixtures(CONFIG, SIDECAR)


async def test_fingerprint_ignores_spinners_and_counters_not_text() -> None:
    frame_a = "● earlier answer\n⠋ working (esc to interrupt)\n"
    frame_b = "● earlier answer\n⠹ working (esc to interrupt)\n"
    assert screen_fingerprint(frame_a) == screen_fingerprint(frame_b)
    claude_a = "✻ Thinking… (12s · ↓ 340 tokens · esc to interrupt)"
    claude_b = "✶ Thinking… (13s · ↓ 352 tokens · esc to interrupt)"
    assert screen_fingerprint(claude_a) == screen_fingerprint(claude_b)
    assert screen_fingerprint(frame_a) != screen_fingerprint(frame_a + "● new line of the answer\n")


async def test_frozen_screen_stalls_and_recovers_with_its_answer(client: LanguageClient):
    agent = await spawn(client)
    tid = agent["terminalId"]
    turn = asyncio.ensure_future(request(client, "cao/handoff", {"terminalId": tid, "message": "hang 2.5 unstuck"}, timeout=20))
    note = await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "stalled", timeout=10)
    assert note["previousStatus"] == "processing" and note["prompt"] is None
    assert (await list_agents(client))[tid]["status"] == "stalled"
    result = await turn
    assert result["status"] == "completed" and result["output"] == "unstuck"
    statuses = SIDECAR.statuses(tid)
    stalled_at = statuses.index("stalled")
    # Recovered by itself when the answer came: processing again, then the turn's end.
    assert statuses[stalled_at + 1 : stalled_at + 3] == ["processing", "completed"], statuses


async def test_live_spinner_alone_is_no_progress(client: LanguageClient):
    agent = await spawn(client)
    tid = agent["terminalId"]
    result = await request(client, "cao/handoff", {"terminalId": tid, "message": "sleep 2 spun"}, timeout=20)
    assert result["output"] == "spun"
    assert "stalled" in SIDECAR.statuses(tid)


async def test_short_turns_and_idle_agents_never_stall(client: LanguageClient):
    agent = await spawn(client)
    tid = agent["terminalId"]
    for n in range(3):
        result = await request(client, "cao/handoff", {"terminalId": tid, "message": f"sleep 0.4 quick {n}"})
        assert result["output"] == f"quick {n}"
    await asyncio.sleep(1.5)  # idle longer than the stall time
    assert "stalled" not in SIDECAR.statuses(tid)
    assert (await list_agents(client))[tid]["status"] == "completed"
