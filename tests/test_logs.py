"""Conversation logs: readable terminal output and structured events, via cao/getLog and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cao_client import CaoClient, CaoError
from conftest import isolated_env, kill_tmux


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


async def test_events_and_terminal_output_are_logged_and_readable(env, tmp_base):
    client = await CaoClient.start(workspace=tmp_base / "workspace", env=env)
    try:
        kept = (await client.spawn("mock_developer"))["terminalId"]
        await client.handoff("echo first answer", terminal_id=kept)
        worker = (await client.handoff("echo from a worker \x1b[31mred\x1b[0m", profile="mock_reviewer"))["terminalId"]
        await client.send_message(kept, "a note")

        log = await client.request("cao/getLog", {"terminalId": kept})
        kinds = [e["event"] for e in log["events"]]
        for kind in ("spawn", "input", "status", "answer", "message"):
            assert kind in kinds
        assert all(e["terminalId"] == kept for e in log["events"])
        answers = [e["text"] for e in log["events"] if e["event"] == "answer"]
        assert answers[0] == "first answer"
        assert "● first answer" in log["output"]  # as the screen showed it
        assert "\x1b" not in log["output"]
        assert "working (esc to interrupt)" not in log["output"]  # spinner frames redrawn in place are not kept

        # A worker that is gone keeps its log.
        gone = await client.request("cao/getLog", {"terminalId": worker})
        assert [e["event"] for e in gone["events"]][0] == "spawn"
        assert any(e["event"] == "handoff.end" and e["ok"] for e in gone["events"])
        assert "\x1b[31m" not in gone["output"]

        everything = await client.request("cao/getLog", {"limit": 2})
        assert len(everything["events"]) == 2 and everything["output"] is None

        for bad in ("../state", "nope0000"):
            with pytest.raises(CaoError) as refused:
                await client.request("cao/getLog", {"terminalId": bad})
            assert refused.value.code == -31003
        with pytest.raises(CaoError) as refused:
            await client.request("cao/getLog", {"limit": 0})
        assert refused.value.code == -32602
    finally:
        await client.close()

    # No credential of any agent appears in any log.
    state = Path(env["XDG_STATE_HOME"]) / "cao-sidecar"
    tokens = [p.read_text().strip() for p in state.glob("agents/*/credential")]
    assert tokens, "expected the kept agent's credential file"
    for path in (state / "logs").glob("*"):
        text = path.read_text(errors="replace")
        assert not any(token in text for token in tokens), path

    # The command line reads the same logs, without a sidecar.
    printed = subprocess.run(
        [sys.executable, "-m", "cao_sidecar", "logs", "--json"], capture_output=True, text=True, env=env, timeout=30
    )
    assert printed.returncode == 0, printed.stderr
    events = [json.loads(line) for line in printed.stdout.splitlines()]
    assert {"spawn", "answer", "handoff.start"} <= {e["event"] for e in events}
    output = subprocess.run(
        [sys.executable, "-m", "cao_sidecar", "logs", kept], capture_output=True, text=True, env=env, timeout=30
    )
    assert "● first answer" in output.stdout
    bad = subprocess.run([sys.executable, "-m", "cao_sidecar", "logs", "../x"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
