"""core.team and the Orchestrator composition: WorkerSpec, validation before anything starts,
and the listener adapters over core.events with their unsubscribe handles."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeTmux, adopt_running, make_agent, make_team, settle

from cao_sidecar.core.errors import AgentExited, InvalidRequest, UnknownTerminal
from cao_sidecar.core.orchestrator import Orchestrator
from cao_sidecar.core.spec import WorkerSpec
from cao_sidecar.core.status import AgentStatus as S
from cao_sidecar.profiles.catalog import ProfileCatalog


def orchestrator(tmp_path: Path) -> tuple[Orchestrator, FakeTmux]:
    agents = tmp_path / "profiles"
    agents.mkdir()
    (agents / "dev.md").write_text("---\nname: dev\nprovider: mock\n---\nYou develop.\n")
    tmux = FakeTmux()
    catalog = ProfileCatalog(workspace_dirs=[], user_dir=agents)
    state = tmp_path / "state"
    state.mkdir()
    core = Orchestrator(tmux=tmux, catalog=catalog, state_dir=state, default_cwd=str(tmp_path))  # type: ignore[arg-type]
    return core, tmux


def test_a_worker_joins_its_callers_session_and_directory(tmp_path: Path) -> None:
    caller = make_agent(tmp_path)
    caller.session, caller.working_directory = "team-a", "/srv/work"
    spec = WorkerSpec("dev").joining(caller)
    assert (spec.session, spec.working_directory) == ("team-a", "/srv/work")
    own = WorkerSpec("dev", session="mine", working_directory="/elsewhere").joining(caller)
    assert (own.session, own.working_directory) == ("mine", "/elsewhere")  # what was given wins
    assert WorkerSpec("dev").joining(None) == WorkerSpec("dev")


async def test_create_registers_a_starting_agent_and_tells_subscribers(tmp_path: Path) -> None:
    core, _ = orchestrator(tmp_path)
    seen: list[tuple[str, S | None, S]] = []
    handle = core.add_status_listener(lambda agent, previous, status: seen.append((agent.terminal_id, previous, status)))
    agent = core.create("dev", name="alpha")
    assert seen == [(agent.terminal_id, None, S.STARTING)]
    assert core.agents[agent.terminal_id] is agent and core.list_agents("cao") == [agent]
    assert core.resolve_target("alpha", "cao") is agent
    assert [r.terminal_id for r in core.agent_store.all()] == [agent.terminal_id]
    handle()  # unsubscribed: the next agent is not heard of
    core.create("dev")
    assert len(seen) == 1


async def test_create_refuses_bad_names_and_duplicates(tmp_path: Path) -> None:
    core, _ = orchestrator(tmp_path)
    with pytest.raises(InvalidRequest, match="session"):
        core.create("dev", session="no spaces")
    core.create("dev", name="alpha")
    with pytest.raises(InvalidRequest, match="already runs"):
        core.create("dev", name="alpha")
    with pytest.raises(InvalidRequest, match="workingDirectory"):
        core.create("dev", working_directory=str(tmp_path / "missing"))
    assert len(core.agents) == 1  # nothing registered by a refused request


async def test_handoff_and_assign_refuse_bad_requests_before_starting_anything(tmp_path: Path) -> None:
    core, tmux = orchestrator(tmp_path)
    with pytest.raises(InvalidRequest, match="exactly one"):
        await core.handoff("task")
    with pytest.raises(InvalidRequest, match="exactly one"):
        await core.handoff("task", profile="dev", terminal_id="abcd0001")
    with pytest.raises(InvalidRequest, match="bracketed-paste"):
        await core.handoff("evil \x1b[201~ keys", profile="dev")
    with pytest.raises(InvalidRequest, match="timeoutSeconds"):
        await core.handoff("task", profile="dev", timeout=0)
    with pytest.raises(InvalidRequest, match="empty"):
        core.assign("   ", profile="dev")
    with pytest.raises(UnknownTerminal):
        await core.handoff("task", terminal_id="abcd0001")
    assert core.agents == {} and tmux.screens == {}


async def test_messages_to_an_exited_agent_are_refused(tmp_path: Path) -> None:
    team, tmux = make_team(tmp_path)
    agent = make_agent(tmp_path)
    pane = adopt_running(team, tmux, agent)
    await settle()
    tmux.exit(pane)
    await settle()
    assert agent.status is S.EXITED
    with pytest.raises(AgentExited):
        await team.send_message(agent.terminal_id, "hello")
    with pytest.raises(AgentExited):
        await team.answer(agent.terminal_id, "yes")


async def test_a_message_to_an_idle_agent_is_delivered_at_once(tmp_path: Path) -> None:
    team, tmux = make_team(tmp_path)
    agent = make_agent(tmp_path)
    pane = adopt_running(team, tmux, agent)
    await settle()
    message_id, state = await team.send_message(agent.terminal_id, "hello", sender="lead")
    assert state == "delivered" and (pane, "[message from lead] hello") in tmux.typed
    assert team.supervisor.stores.messages.get(message_id).state == "delivered"
