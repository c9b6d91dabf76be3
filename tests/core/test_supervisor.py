"""The supervisor's turn machine end to end over a FakeTmux: screens arrive as tmux output, the
real monitor and mock provider classify them, and the one commit ends each turn once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fakes import BUSY, FAILED, IDLE, WAITING, FakeTmux, adopt_running, completed, make_agent, make_team, settle

from cao_sidecar.core import supervisor as supervisor_module
from cao_sidecar.core.agent import Agent
from cao_sidecar.core.errors import AgentExited, AgentFailed
from cao_sidecar.core.events import PromptChanged, StatusChanged
from cao_sidecar.core.status import AgentStatus as S
from cao_sidecar.core.team import Team


SCREENS = Path(__file__).parents[1] / "fixtures" / "screens"
CLAUDE_IDLE = (SCREENS / "claude_code-real-idle.txt").read_text()


async def busy_task(team: Team, tmux: FakeTmux, tmp_path: Path) -> tuple[Agent, str, asyncio.Future[str]]:
    """A mock agent working on a task: its pane shows the spinner."""
    agent = make_agent(tmp_path)
    pane = adopt_running(team, tmux, agent)
    await settle()
    run = asyncio.ensure_future(team.run_turn(agent, "task", 5))
    await settle()
    tmux.show(pane, BUSY)
    await settle()
    return agent, pane, run


@pytest.fixture
def team_and_tmux(tmp_path: Path) -> tuple[Team, FakeTmux]:
    return make_team(tmp_path)


async def test_a_task_runs_through_the_inbox_and_its_answer_is_read(team_and_tmux, tmp_path: Path) -> None:
    team, tmux = team_and_tmux
    statuses: list[tuple[S | None, S]] = []
    team.events.subscribe(StatusChanged, lambda e: statuses.append((e.previous, e.status)))
    agent = make_agent(tmp_path)
    pane = adopt_running(team, tmux, agent)
    await settle()
    assert agent.status is S.IDLE
    run = asyncio.ensure_future(team.run_turn(agent, "task", 5))
    await settle()
    assert (pane, "task") in tmux.typed and (pane, "key:Enter") in tmux.typed
    tmux.show(pane, BUSY)
    await settle()
    tmux.show(pane, completed("forty-two"))
    assert await run == "forty-two"
    assert statuses == [(S.STARTING, S.IDLE), (S.IDLE, S.PROCESSING), (S.PROCESSING, S.COMPLETED)]
    assert agent.turn is None and agent.last_answer == "forty-two"


async def test_an_error_screen_fails_the_task(team_and_tmux, tmp_path: Path) -> None:
    team, tmux = team_and_tmux
    agent, pane, run = await busy_task(team, tmux, tmp_path)
    tmux.show(pane, FAILED)
    with pytest.raises(AgentFailed):
        await run


async def test_an_event_ends_the_turn_once_and_the_screen_after_it_changes_nothing(team_and_tmux, tmp_path: Path) -> None:
    team, tmux = team_and_tmux
    agent = make_agent(tmp_path, provider="claude_code")
    pane = adopt_running(team, tmux, agent, screen=CLAUDE_IDLE)
    await settle()
    assert agent.status is S.IDLE
    agent.events_active = True
    statuses: list[S] = []
    team.events.subscribe(StatusChanged, lambda e: statuses.append(e.status))
    turn = agent.begin_turn("task")
    team.supervisor.agent_event(agent, S.PROCESSING)
    team.supervisor.agent_event(agent, S.COMPLETED, "from the hook")
    result = turn.done.result()
    assert result.answer == "from the hook" and agent.last_answer == "from the hook"
    # The same end again (a duplicate hook) and a screen saying so: no second end, no new status.
    team.supervisor.agent_event(agent, S.COMPLETED, "from the hook")
    tmux.show(pane, CLAUDE_IDLE)
    await settle()
    assert statuses == [S.PROCESSING, S.COMPLETED]
    assert agent.turn is None


async def test_events_overrule_the_screen_until_the_grace_period_ends(
    team_and_tmux, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor_module, "EVENT_GRACE_SECONDS", 0.1)
    team, tmux = team_and_tmux
    completed_screen = (SCREENS / "claude_code-real-completed.txt").read_text()
    agent = make_agent(tmp_path, provider="claude_code")
    pane = adopt_running(team, tmux, agent, screen=CLAUDE_IDLE)
    await settle()
    assert agent.status is S.IDLE
    agent.events_active = True
    statuses: list[S] = []
    team.events.subscribe(StatusChanged, lambda e: statuses.append(e.status))
    turn = agent.begin_turn("task")
    tmux.show(pane, (SCREENS / "claude_code-real-processing.txt").read_text())  # events own this status: ignored
    await settle()
    assert agent.status is S.IDLE
    team.supervisor.agent_event(agent, S.PROCESSING)
    tmux.show(pane, completed_screen)  # the screen says done; the Stop hook is lost
    await settle()
    assert not turn.done.done() and agent.status is S.PROCESSING and agent.screen == completed_screen
    result = await asyncio.wait_for(turn.done, 2)  # the screen's word after the grace
    assert result.status is S.COMPLETED and statuses == [S.PROCESSING, S.COMPLETED]


async def test_a_pane_exit_ends_the_turn_and_fails_queued_messages(team_and_tmux, tmp_path: Path) -> None:
    team, tmux = team_and_tmux
    agent, pane, run = await busy_task(team, tmux, tmp_path)
    _, state = await team.send_message(agent.terminal_id, "later")
    assert state == "queued"
    tmux.exit(pane)
    with pytest.raises(AgentExited):
        await run
    assert agent.status is S.EXITED
    assert [m.message_id for m in team.supervisor.stores.messages.queued_for(agent.terminal_id)] == []


async def test_a_question_announces_its_prompt_and_takes_one_answer(team_and_tmux, tmp_path: Path) -> None:
    team, tmux = team_and_tmux
    prompts: list[str] = []
    team.events.subscribe(PromptChanged, lambda e: prompts.append(e.prompt.id))
    agent = make_agent(tmp_path)
    pane = adopt_running(team, tmux, agent)
    await settle()
    tmux.show(pane, WAITING)
    await settle()
    assert agent.status is S.WAITING_USER_ANSWER and agent.prompt is not None
    prompt_id, typed = await team.answer(agent.terminal_id, "Yes", agent.prompt.id)
    assert prompt_id == f"{agent.terminal_id}:1" and (pane, "y") in tmux.typed
    from cao_sidecar.core.errors import PromptGone

    with pytest.raises(PromptGone):
        await team.answer(agent.terminal_id, "No", prompt_id)
    assert prompts == []  # the prompt came with its status; it did not change afterwards


async def test_teardown_types_the_exit_command_and_forgets_the_agent(team_and_tmux, tmp_path: Path) -> None:
    team, tmux = team_and_tmux
    agent = make_agent(tmp_path)
    pane = adopt_running(team, tmux, agent, IDLE)
    await settle()
    tmux.exit(pane)  # the CLI quits as the exit command asks
    await team.terminate(agent.terminal_id)
    assert agent.status is S.EXITED and agent.terminal_id not in team.supervisor.agents
    assert team.supervisor.inbox_of(agent.terminal_id) is None
