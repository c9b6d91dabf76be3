"""A CLI that drops what is typed into it (Claude Code does, typed into right after its startup
dialog on a loaded machine): the core types the text again, once it is sure it was lost, and the
agent takes it exactly once. Real sidecar, real tmux, mock agents started with
CAO_MOCK_DROP_INPUT=1 (each loses the first input typed into it).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pytest_lsp import LanguageClient

from conftest import request
from test_editor_common import module_fixtures, new_sidecar

CONFIG, SIDECAR = new_sidecar("drop", extra_env={"CAO_MOCK_DROP_INPUT": "1"})
SIDECAR.env["CAO_MOCK_RECEIVED_LOG"] = str(SIDECAR.base / "received.jsonl")
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

client, clean = module_fixtures(CONFIG, SIDECAR)


def received() -> Counter:
    seen: Counter = Counter()
    path = Path(SIDECAR.env["CAO_MOCK_RECEIVED_LOG"])
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        if record["type"] == "user":
            seen[record["text"]] += 1
    return seen


def events(kind: str, terminal_id: str) -> list[dict]:
    path = SIDECAR.base / "state" / "cao-sidecar" / "logs" / "events.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if r["event"] == kind and r.get("terminalId") == terminal_id]


async def test_a_dropped_task_is_typed_again_and_taken_once(client: LanguageClient):
    tid = (await request(client, "cao/spawn", {"profile": "mock_developer"}))["terminalId"]
    result = await request(client, "cao/handoff", {"terminalId": tid, "message": "echo taken once"}, timeout=30)
    assert result["output"] == "taken once"
    assert received()["echo taken once"] == 1
    assert [e["attempt"] for e in events("input.retyped", tid)] == [1]
    # the next task is not dropped: typed once, never again
    result = await request(client, "cao/handoff", {"terminalId": tid, "message": "echo second"}, timeout=30)
    assert result["output"] == "second" and received()["echo second"] == 1
    assert len(events("input.retyped", tid)) == 1
