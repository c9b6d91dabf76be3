"""core.startup: waiting for a CLI's MCP connection, and readiness through start-up dialogs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fakes import IDLE, WAITING, adopt_running, make_agent, make_team, settle

from cao_sidecar.core.errors import AgentExited, AgentNotReady
from cao_sidecar.core.startup import ReadyWaiter, wait_mcp_connection
from cao_sidecar.core.status import AgentStatus as S


async def test_ready_waits_for_the_clis_mcp_connection(tmp_path: Path) -> None:
    team, _tmux = make_team(tmp_path)
    supervisor = team.supervisor
    agent = make_agent(tmp_path, "eeee0006", provider="claude_code")
    agent.status, agent.screen = S.IDLE, "❯ \n  ? for shortcuts"
    supervisor.adopt(agent)
    loop = asyncio.get_running_loop()

    # Never connects: a clear error with the screen's tail.
    with pytest.raises(AgentNotReady) as caught:
        await wait_mcp_connection(agent, 0.3, loop.time())
    assert "the CLI did not connect to the sidecar's MCP server" in str(caught.value)
    assert "? for shortcuts" in json.dumps(caught.value.data)

    # Connects while the core waits: ready then, logged once.
    loop.call_later(0.1, supervisor.mcp_request_seen, agent.terminal_id)
    started = loop.time()
    await wait_mcp_connection(agent, 5, started)
    assert loop.time() - started < 2
    supervisor.mcp_request_seen(agent.terminal_id)
    supervisor.mcp_request_seen("unknown")
    supervisor.stores.logs.close()
    events = [json.loads(line) for f in (tmp_path / "logs").rglob("*.jsonl") for line in f.read_text().splitlines()]
    assert [e.get("terminalId") for e in events if e.get("kind", e.get("event")) == "mcp.connected"] == ["eeee0006"]

    # Exits instead: said so at once, not after the whole timeout.
    gone = make_agent(tmp_path, "eeee0007", provider="claude_code")
    gone.status = S.EXITED
    started = loop.time()
    with pytest.raises(AgentExited):
        await wait_mcp_connection(gone, 10, started)
    assert loop.time() - started < 2


async def test_ready_after_the_mock_answers_nothing_and_fails_on_exit(tmp_path: Path) -> None:
    team, tmux = make_team(tmp_path)
    waiter = ReadyWaiter(tmux, lambda agent: None)  # type: ignore[arg-type]
    agent = make_agent(tmp_path)
    pane = adopt_running(team, tmux, agent, "")
    ready = asyncio.ensure_future(waiter.wait_ready(agent, 5))
    await settle()
    assert not ready.done()  # still starting (empty screen)
    tmux.show(pane, IDLE)
    await asyncio.wait_for(ready, 1)

    other = make_agent(tmp_path, "aaaa0002")
    other_pane = adopt_running(team, tmux, other, WAITING)  # a question the mock has no keys for
    waiting = asyncio.ensure_future(waiter.wait_ready(other, 5))
    await settle()
    tmux.exit(other_pane)
    with pytest.raises(AgentExited):
        await asyncio.wait_for(waiting, 2)
    assert [t for p, t in tmux.typed if p == other_pane] == []  # nothing typed into a dialog it does not know


async def test_not_ready_in_time_says_its_status(tmp_path: Path) -> None:
    team, tmux = make_team(tmp_path)
    agent = make_agent(tmp_path)
    adopt_running(team, tmux, agent, "")
    with pytest.raises(AgentNotReady) as caught:
        await ReadyWaiter(tmux, lambda a: None).wait_ready(agent, 0.1)  # type: ignore[arg-type]
    assert "status starting" in str(caught.value)
