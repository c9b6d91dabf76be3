"""Domain objects as wire types: the one place that builds each `cao_sidecar.wire` result.

Every door (the editor face, ACP's `_cao/*` methods, the MCP tools, the command line) shows an
agent, a profile or a flow through these functions, so they all show the same fields.
"""

from __future__ import annotations

import json

from typing import TYPE_CHECKING, Any, Optional

from cao_sidecar import wire
from cao_sidecar.core.status import AgentStatus

if TYPE_CHECKING:
    from cao_sidecar.core.agent import Agent
    from cao_sidecar.core.orchestrator import Orchestrator
    from cao_sidecar.flows.flow import Flow
    from cao_sidecar.flows.scheduler import FlowState
    from cao_sidecar.profiles.layers import Entry
    from cao_sidecar.profiles.profile import Profile
    from cao_sidecar.storage.flows import FlowRun
    from cao_sidecar.storage.reports import Report
    from cao_sidecar.storage.workflows import WorkflowRun, WorkflowStep
    from cao_sidecar.workflows.catalog import Workflow


def attach_command(core: Orchestrator, agent: Agent) -> list[str]:
    """argv that shows the agent's live window in a terminal; empty once it has exited."""
    if not agent.alive or agent.pane_id is None:
        return []
    return core.tmux.attach_command(agent.session, agent.pane_id)


def prompt_info(agent: Agent) -> Optional[wire.PromptInfo]:
    """The question the agent waits on, if it waits on one."""
    pending = agent.prompt
    if pending is None or agent.status is not AgentStatus.WAITING_USER_ANSWER:
        return None
    return wire.PromptInfo(
        id=pending.id,
        text=pending.prompt.text,
        choices=[c.label for c in pending.prompt.choices],
        detail=pending.prompt.detail,
    )


def agent_info(agent: Agent, core: Orchestrator) -> wire.AgentInfo:
    return wire.AgentInfo(
        terminal_id=agent.terminal_id,
        session=agent.session,
        profile=agent.profile.name,
        provider=agent.provider.name,
        status=agent.status,
        working_directory=agent.working_directory,
        created_at=agent.created_at,
        name=agent.name,
        prompt=prompt_info(agent),
        attach_command=attach_command(core, agent),
        pooled=agent.pooled,
    )


def worktree_info(info: dict[str, Any]) -> wire.WorktreeInfo:
    """The worktree manager's camelCase summary (core.worktree_manager) as the wire type."""
    return wire.converter.structure(info, wire.WorktreeInfo)


def stored_worktree(core: Orchestrator, terminal_id: str) -> Optional[wire.WorktreeInfo]:
    """The agent's worktree as last summarised (no git runs), or None if it has none."""
    info = core.worktrees.stored_info(terminal_id)
    return worktree_info(info) if info is not None else None


def reported_worktree(report: Report) -> Optional[wire.WorktreeInfo]:
    """A host's worker's worktree, as its node described it with its report (hosts.node_reports)."""
    if report.worktree is None:
        return None
    try:
        found: wire.WorktreeInfo = wire.converter.structure(json.loads(report.worktree), wire.WorktreeInfo)
    except Exception:  # noqa: BLE001 - a node of another version: the report goes without it
        return None
    return found


def spawn_result(agent: Agent, worktree: Optional[wire.WorktreeInfo] = None) -> wire.SpawnResult:
    return wire.SpawnResult(
        terminal_id=agent.terminal_id,
        session=agent.session,
        profile=agent.profile.name,
        provider=agent.provider.name,
        status=agent.status,
        name=agent.name,
        worktree=worktree,
    )


def agent_status(agent: Agent, previous: Optional[AgentStatus], status: AgentStatus) -> wire.AgentStatusNotification:
    return wire.AgentStatusNotification(
        terminal_id=agent.terminal_id,
        profile=agent.profile.name,
        status=status,
        previous_status=previous,
        session=agent.session,
        prompt=prompt_info(agent),
    )


def worker_completed(report: Report, worktree: Optional[wire.WorktreeInfo] = None) -> wire.WorkerCompletedNotification:
    return wire.WorkerCompletedNotification(
        terminal_id=report.terminal_id,
        profile=report.profile,
        status=AgentStatus(report.status),
        output=report.output,
        error=report.error,
        worktree=worktree,
    )


def profile_info(entry: Entry[Profile]) -> wire.ProfileInfo:
    p = entry.item
    scope = entry.layer.scope
    return wire.ProfileInfo(
        name=p.name,
        description=p.description,
        provider=p.provider,
        source="builtin" if scope == "builtin" else str(entry.path),
        scope=scope,  # type: ignore[arg-type]
        path=str(entry.path),
        model=p.model,
        tags=list(p.tags),
        shadows=[str(s) for s in entry.shadows],
        stale=entry.stale,
        untrusted=not entry.layer.trusted,
    )


def run_info(run: FlowRun) -> wire.FlowRunInfo:
    return wire.FlowRunInfo(
        run_id=run.run_id,
        flow=run.flow,
        trigger=run.trigger,  # type: ignore[arg-type]
        status=run.status,  # type: ignore[arg-type]
        started_at=run.started_at,
        scheduled_at=run.scheduled_at,
        ended_at=run.ended_at,
        terminal_id=run.terminal_id,
        output=run.output,
        reason=run.reason,
    )


def flow_info(state: FlowState) -> wire.FlowInfo:
    flow: Flow = state.entry.item
    return wire.FlowInfo(
        name=flow.name,
        schedule=flow.schedule,
        profile=flow.profile,
        enabled=state.enabled,
        scope=flow.scope,  # type: ignore[arg-type]
        path=str(state.entry.path),
        description=flow.description,
        provider=flow.provider,
        working_directory=flow.working_directory,
        has_gate=flow.gate is not None,
        next_run_at=state.next_run_at,
        running=state.running,
        last_run=run_info(state.last_run) if state.last_run is not None else None,
        shadows=[str(s) for s in state.entry.shadows],
        stale=state.entry.stale,
        untrusted=not state.entry.layer.trusted,
    )


# ---- workflows (cao_sidecar.workflows) ---------------------------------------------------------


def _iso(stamp: Optional[float]) -> Optional[str]:
    from datetime import datetime, timezone

    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc).astimezone().isoformat(timespec="milliseconds")


def workflow_run_info(run: "WorkflowRun", steps: list["WorkflowStep"]) -> wire.WorkflowRunInfo:
    return wire.WorkflowRunInfo(
        run_id=run.run_id, name=run.name, path=run.path, status=run.status,  # type: ignore[arg-type]
        trigger=run.trigger, started_at=_iso(run.started_at) or "", inputs=run.inputs, ended_at=_iso(run.ended_at),
        output=run.output, error=run.error,
        steps=[
            wire.WorkflowStepInfo(
                key=s.key, profile=s.profile, task=s.task, status=s.status,  # type: ignore[arg-type]
                terminal_id=s.worker_id, answer=s.answer, error=s.error, attempts=s.attempts,
            )
            for s in steps
        ],
    )  # fmt: skip


def workflow_info(workflow: "Workflow") -> wire.WorkflowInfo:
    return wire.WorkflowInfo(
        name=workflow.name, path=str(workflow.path), kind=workflow.kind,  # type: ignore[arg-type]
        scope=workflow.scope, description=workflow.description,  # type: ignore[arg-type]
        untrusted=not workflow.trusted, problems=list(workflow.problems),
    )  # fmt: skip
