"""Adopting the agents a previous sidecar left behind (after a crash or an editor restart).

Agents live in tmux, not in the sidecar, so they keep running while it is gone. On start the
sidecar reads its agent store, finds each agent's pane on its tmux server (same pane id and same
process), and takes it back: status is re-derived from the screen, output events are re-armed,
undelivered messages are queued again with their ids, and assigns that were running are
followed to their end and reported. Agents whose panes are gone are reported `exited`.

An assign (or a handoff to a new worker) is stored with its task when it is acknowledged. A
worker that never got its task (its window gone, or still starting) is launched again and given
it; one whose task was typed in and whose process is gone is reported failed. A message (or
task) the crash cut off while it was being typed in is settled from the screen first
(typing_recovery): Enter only, nothing, or typed again, never twice. Either way the
assign is reported once (Team.report_assigned), to the editor and the assigning agent.

Everything here goes through the supervisor's public methods; what an assign needs afterwards
(running it again, following it, reporting it) is the team's, reached through `ResumesAssigns`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cao_sidecar.core.agent import Agent
from cao_sidecar.core.events import WorkerOutcome
from cao_sidecar.core.errors import AgentExited, AgentFailed, AgentTimeout, CaoError, UnknownProfile, UnknownProvider
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.core.typing_recovery import Settled, settle_typing
from cao_sidecar.profiles.profile import Profile
from cao_sidecar.providers import get_provider
from cao_sidecar.storage.agents import AgentRecord, AssignRecord
from cao_sidecar.storage.messages import StoredMessage
from cao_sidecar.terminal.tmux import TmuxError

if TYPE_CHECKING:
    from cao_sidecar.core.supervisor import AgentSupervisor

log = logging.getLogger(__name__)


class ResumesAssigns(Protocol):
    """What recovery needs of the team for the assigns that were pending (core.team.Team)."""

    async def run_assigned(
        self, agent: Agent, task_id: str, message: str, deadline: float, keep: bool, caller_id: str | None
    ) -> None: ...

    async def report_assigned(self, outcome: WorkerOutcome, caller_id: str | None, keep: bool) -> None: ...

    async def report_lost(self, assign: AssignRecord, reason: str) -> None: ...


async def adopt_agents(core: "AgentSupervisor", team: ResumesAssigns) -> None:
    store = core.stores.agents
    records = store.all()
    pending = {assign.worker_id: assign for assign in store.pending_assigns()}
    panes = {pane.pane_id: pane for pane in await core.tmux.list_panes()} if records else {}
    relaunch: set[str] = set()
    notices: list[StoredMessage] = []  # for agents whose messages failed: routed once all are back
    for record in records:
        assign = pending.get(record.terminal_id)
        pane = panes.get(record.pane_id or "")
        alive = pane is not None and not pane.dead and (record.pid is None or pane.pid == record.pid)
        if not alive and record.status == AgentStatus.EXITED.value and assign is None:
            store.remove(record.terminal_id)  # already reported before the restart
            continue
        agent = _rebuild(core, record)
        if agent is None:
            continue
        inbox = core.adopt(agent)
        queued = core.stores.messages.queued_for(agent.terminal_id)
        # At most one: the inbox types one message at a time (see typing_recovery).
        typing = next((m for m in queued if m.typing_at is not None), None) if alive else None
        task_typed = typing is not None and assign is not None and typing.message_id == assign.task_id
        if (
            assign is not None
            and assign.task_id is not None
            and core.stores.messages.is_queued(assign.task_id)
            and not task_typed
        ):
            # The worker never got its task (still starting, or its window is gone): start it
            # afresh, and give it the task once it is ready.
            log.info("worker %s (%s) never got its task: launched again", agent.terminal_id, agent.profile.name)
            if alive and record.pane_id is not None:
                try:
                    await core.tmux.kill_window(record.pane_id)
                except TmuxError:
                    pass
            store.set_relaunching(agent.terminal_id, AgentStatus.STARTING.value)
            inbox.restore([m for m in queued if m.message_id != assign.task_id])
            relaunch.add(agent.terminal_id)
            continue
        if alive:
            log.info("adopted agent %s (%s) in pane %s", agent.terminal_id, agent.profile.name, record.pane_id)
            agent.pane_id, agent.pane_pid = record.pane_id, record.pid
            if typing is not None and await settle_typing(core, agent, typing) is not Settled.RETYPE:
                queued = [m for m in queued if m.message_id != typing.message_id]
            core.watch(agent)  # classifies the current screen at once
            inbox.restore(queued)
        else:
            log.info("agent %s (%s) is gone: reported exited", agent.terminal_id, agent.profile.name)
            agent.mark_exited()
            store.set_status(agent.terminal_id, AgentStatus.EXITED.value)
            for message in queued:
                notice = core.stores.messages.mark_failed(message.message_id, "the agent exited while the sidecar was down")
                if notice is not None:
                    notices.append(notice)
    for notice in notices:
        core.queue_stored(notice)
    for assign in pending.values():
        worker = core.agents.get(assign.worker_id)
        if worker is None:
            core.spawn_background(team.report_lost(assign, "the worker is gone (its record was lost)"))
        elif worker.terminal_id in relaunch:
            assert assign.task_id is not None
            core.spawn_background(
                team.run_assigned(worker, assign.task_id, assign.message, assign.deadline, assign.keep, assign.caller_id)
            )
        else:
            core.spawn_background(_follow_assign(core, team, worker, assign))


def _rebuild(core: "AgentSupervisor", record: AgentRecord) -> Agent | None:
    try:
        provider = get_provider(record.provider)
    except UnknownProvider:
        log.warning("agent %s: provider %r is no longer known; forgetting it", record.terminal_id, record.provider)
        core.stores.agents.remove(record.terminal_id)
        return None
    try:
        profile = core.catalog.get(record.profile)
    except UnknownProfile:  # the profile file went away; the agent still runs
        profile = Profile(name=record.profile, provider=record.provider)
    return Agent(
        terminal_id=record.terminal_id,
        session=record.session,
        profile=profile,
        provider=provider,
        working_directory=record.working_directory,
        agent_dir=Path(record.agent_dir),
        name=record.name,
        created_at=record.created_at,
        last_answer=record.last_answer,
    )


async def _follow_assign(core: "AgentSupervisor", team: ResumesAssigns, worker: Agent, assign: AssignRecord) -> None:
    """Wait for an assign that was running when the sidecar went down, then report it."""
    inbox = core.inbox_of(worker.terminal_id)
    outcome: WorkerOutcome
    try:
        while True:
            settled = worker.turn is None and (inbox is None or inbox.pending == 0)
            if not worker.alive:
                raise AgentExited(
                    "the worker exited after it got its task (while the sidecar was down or restarting)",
                    terminalId=worker.terminal_id,
                    screenTail=worker.screen_tail(),
                )
            if settled and worker.status is AgentStatus.COMPLETED:
                answer = await core.read_answer(worker)
                outcome = WorkerOutcome(worker, AgentStatus.COMPLETED, answer)
                break
            if settled and worker.status is AgentStatus.ERROR:
                raise AgentFailed("the worker reported an error", terminalId=worker.terminal_id, screenTail=worker.screen_tail())
            remaining = assign.deadline - time.time()
            if remaining <= 0:
                raise AgentTimeout("the assigned task did not finish in time", terminalId=worker.terminal_id)
            await worker.wait_change(min(remaining, 5.0))
    except CaoError as exc:
        status = worker.status if worker.status in (AgentStatus.ERROR, AgentStatus.EXITED) else AgentStatus.ERROR
        outcome = WorkerOutcome(worker, status, worker.screen_tail(), exc)
    except asyncio.CancelledError:
        raise
    await team.report_assigned(outcome, assign.caller_id, assign.keep)
