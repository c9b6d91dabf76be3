"""The bodies of the cao/* methods, shared by every door that serves them.

A door (the editor face, ACP's `_cao/*` extension methods) validates params into the method's
wire type (`wire.METHODS`, `wire.structure_params`), calls the handler here and turns its wire
result or `CaoError` into its own protocol's answer. So one method means the same everywhere.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Protocol

from cao_sidecar import views, wire
from cao_sidecar.core.errors import CaoError, InvalidRequest
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.hosts.config import split_terminal_id
from cao_sidecar.hosts.team import hosts_of, resolve_host

if TYPE_CHECKING:
    from cao_sidecar.core.agent import Agent
    from cao_sidecar.core.orchestrator import Orchestrator
    from cao_sidecar.profiles.live import LiveConfig


class HandoffProgress(Protocol):
    """A door's way of showing a handoff while it runs (LSP work-done progress, or nothing)."""

    def begin(self, agent: Agent) -> None: ...

    def end(self) -> None: ...


class Door(Protocol):
    """What a door gives the handlers: the runtime it serves and its own presentation hooks."""

    async def core(self) -> Orchestrator:
        """The orchestration core, once started (raises if it failed to start)."""
        ...

    def started_core(self) -> Optional[Orchestrator]:
        """The core if it is up now, else None (cao/doctor answers without one)."""
        ...

    def live_config(self) -> Optional[LiveConfig]:
        """Live profiles and flows, None if their watcher failed to start."""
        ...

    def credential_count(self) -> int:
        """MCP credentials of the agent face now valid (0 without an agent face)."""
        ...

    def handoff_progress(self, token: Optional[wire.ProgressToken]) -> HandoffProgress: ...

    def shutdown_hook(self) -> Optional[Callable[[bool], None]]:
        """`hook(terminate_agents)` ends the orchestrator for every connection (`cao/shutdown`);
        None where this door cannot end it."""
        ...


def started(core_ready: asyncio.Future[Orchestrator]) -> Optional[Orchestrator]:
    """The core a door's start-up future holds, if it has started (for `Door.started_core`)."""
    if core_ready.done() and not core_ready.cancelled() and core_ready.exception() is None:
        return core_ready.result()
    return None


class NoProgress:
    """For doors that show no handoff progress."""

    def begin(self, agent: Agent) -> None:
        pass

    def end(self) -> None:
        pass


Handler = Callable[[Any, Any], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}


def _handles(method: str) -> Callable[[Handler], Handler]:
    if method not in wire.METHODS:
        raise ValueError(f"{method} is not a wire method")

    def register(fn: Handler) -> Handler:
        HANDLERS[method] = fn
        return fn

    return register


# ---- agents ------------------------------------------------------------------------------


@_handles("cao/spawn")
async def spawn(door: Door, p: wire.SpawnParams) -> wire.SpawnResult:
    from cao_sidecar.core.orchestrator import READY_TIMEOUT

    host = await resolve_host(await door.core(), p.host or await _profile_host(door, p.profile), p.profile, p.provider)
    if host is not None:
        return await _on_host(door, host, "cao/spawn", p, wire.SpawnResult)
    core = await door.core()
    if p.timeout_seconds is not None and p.timeout_seconds <= 0:
        raise InvalidRequest("cao/spawn: field 'timeoutSeconds' must be positive", field="timeoutSeconds")
    agent = await core.spawn(
        p.profile,
        provider=p.provider,
        working_directory=p.working_directory,
        session=p.session,
        name=p.name,
        ready_timeout=p.timeout_seconds or READY_TIMEOUT,
        worktree=p.worktree,
        base_ref=p.base_ref,
    )
    return views.spawn_result(agent, views.stored_worktree(core, agent.terminal_id))


@_handles("cao/handoff")
async def handoff(door: Door, p: wire.HandoffParams) -> wire.HandoffResult:
    host = (
        split_terminal_id(p.terminal_id)[0] if p.terminal_id
        else await resolve_host(await door.core(), p.host or await _profile_host(door, p.profile), p.profile, p.provider)
    )  # fmt: skip
    if host is not None:
        return await _on_host(door, host, "cao/handoff", p, wire.HandoffResult)
    core = await door.core()
    progress = door.handoff_progress(p.work_done_token)
    try:
        agent, answer = await core.handoff(
            p.message,
            profile=p.profile,
            terminal_id=p.terminal_id,
            provider=p.provider,
            working_directory=p.working_directory,
            session=p.session,
            timeout=p.timeout_seconds,
            keep=p.keep,
            on_agent=progress.begin,
            worktree=p.worktree,
            base_ref=p.base_ref,
            model=p.model,
        )
    finally:
        progress.end()
    return wire.HandoffResult(
        terminal_id=agent.terminal_id, status=AgentStatus.COMPLETED, output=answer,
        worktree=views.stored_worktree(core, agent.terminal_id),
    )  # fmt: skip


@_handles("cao/assign")
async def assign(door: Door, p: wire.AssignParams) -> wire.AssignResult:
    host = await resolve_host(await door.core(), p.host or await _profile_host(door, p.profile), p.profile, p.provider)
    caller = getattr(door, "caller", None)  # an agent of a host asked (hosts.team.LinkDoor): reported to it
    if host is not None:
        hosts = hosts_of(await door.core())
        with hosts.assigning(host):
            assigned = await _on_host(door, host, "cao/assign", p, wire.AssignResult)
            if caller is not None:
                hosts.report_to(assigned.terminal_id, caller)
        return assigned
    core = await door.core()
    agent = core.assign(
        p.message,
        profile=p.profile,
        provider=p.provider,
        working_directory=p.working_directory,
        session=p.session,
        timeout=p.timeout_seconds,
        keep=p.keep,
        worktree=p.worktree,
        base_ref=p.base_ref,
        model=p.model,
        caller=caller,
    )
    return wire.AssignResult(terminal_id=agent.terminal_id)


@_handles("cao/sendMessage")
async def send_message(door: Door, p: wire.SendMessageParams) -> wire.SendMessageResult:
    if split_terminal_id(p.terminal_id)[0] is not None:
        return await _on_host(door, split_terminal_id(p.terminal_id)[0], "cao/sendMessage", p, wire.SendMessageResult)
    core = await door.core()
    message_id, state = await core.send_message(p.terminal_id, p.message, p.sender)
    return wire.SendMessageResult(message_id=message_id, state=state)  # type: ignore[arg-type]


@_handles("cao/listAgents")
async def list_agents(door: Door, p: wire.ListAgentsParams) -> wire.ListAgentsResult:
    core = await door.core()
    agents = [views.agent_info(a, core) for a in core.list_agents(p.session, include_pooled=p.include_pooled)]
    return wire.ListAgentsResult(agents=agents + await _remote_agents(core, p.session))


@_handles("cao/answer")
async def answer(door: Door, p: wire.AnswerParams) -> wire.AnswerResult:
    if split_terminal_id(p.terminal_id)[0] is not None:
        return await _on_host(door, split_terminal_id(p.terminal_id)[0], "cao/answer", p, wire.AnswerResult)
    core = await door.core()
    prompt_id, typed = await core.answer(p.terminal_id, p.answer, p.prompt_id)
    return wire.AnswerResult(terminal_id=p.terminal_id, prompt_id=prompt_id, typed=typed)


@_handles("cao/getOutput")
async def get_output(door: Door, p: wire.GetOutputParams) -> wire.GetOutputResult:
    if split_terminal_id(p.terminal_id)[0] is not None:
        return await _on_host(door, split_terminal_id(p.terminal_id)[0], "cao/getOutput", p, wire.GetOutputResult)
    core = await door.core()
    return wire.GetOutputResult(output=await core.get_output(p.terminal_id, p.mode))


@_handles("cao/terminate")
async def terminate(door: Door, p: wire.TerminateParams) -> wire.TerminateResult:
    if split_terminal_id(p.terminal_id)[0] is not None:
        return await _on_host(door, split_terminal_id(p.terminal_id)[0], "cao/terminate", p, wire.TerminateResult)
    core = await door.core()
    await core.terminate(p.terminal_id)
    return wire.TerminateResult()


@_handles("cao/getLog")
async def get_log(door: Door, p: wire.GetLogParams) -> wire.GetLogResult:
    from cao_sidecar.storage.logs import read_events, read_output

    if p.terminal_id is not None and split_terminal_id(p.terminal_id)[0] is not None:
        return await _on_host(door, split_terminal_id(p.terminal_id)[0], "cao/getLog", p, wire.GetLogResult)
    core = await door.core()
    if p.limit is not None and p.limit <= 0:
        raise InvalidRequest("cao/getLog: field 'limit' must be positive", field="limit")
    # The event log can be megabytes: read it off the event loop.
    events = await asyncio.to_thread(read_events, core.logs.directory, p.terminal_id, p.since, p.limit)
    output = await asyncio.to_thread(read_output, core.logs.directory, p.terminal_id) if p.terminal_id else None
    if p.terminal_id is not None and p.terminal_id not in core.agents and not events and not output:
        core.get_agent(p.terminal_id)  # raises unknownTerminal (agents that are gone keep their logs)
    return wire.GetLogResult(events=events, output=output)


def _process_figures() -> tuple[int, int]:
    """(resident bytes, open file descriptors) of this process; blocking /proc reads."""
    rss = 0
    try:
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        open_files = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_files = -1
    return rss, open_files


@_handles("cao/stats")
async def stats(door: Door, p: wire.StatsParams) -> wire.StatsResult:
    """Resource counts, for leak checks (bench/soak.py) and for users debugging a sidecar."""
    core = await door.core()
    rss, open_files = await asyncio.to_thread(_process_figures)
    mine = core.list_agents()  # the user's: warm workers of the pool are not counted
    return wire.StatsResult(
        agents=len(mine),
        live_agents=sum(1 for a in mine if a.alive),
        tasks=len(asyncio.all_tasks()),
        credentials=door.credential_count(),
        queued_messages=core.queued_messages,
        open_files=open_files,
        rss_bytes=rss,
        hosts=[wire.converter.structure(h, wire.HostStats) for h in await hosts_of(core).stats()],
    )


@_handles("cao/doctor")
async def doctor(door: Door, p: wire.DoctorParams) -> wire.DoctorResult:
    """What `cao-sidecar doctor` reports; needs no core, so it answers when tmux is missing."""
    from cao_sidecar.doctor import gather

    core = door.started_core()
    report = await gather(workspace=core.default_cwd if core is not None else None)
    return wire.DoctorResult(**report)


@_handles("cao/shutdown")
async def shutdown(door: Door, p: wire.ShutdownParams) -> wire.ShutdownResult:
    hook = door.shutdown_hook()
    if hook is None:
        raise CaoError("this server cannot be shut down from here")
    if p.terminate_agents:
        core = await door.core()
        for agent in core.list_agents():  # warm workers of the pool end with the orchestrator
            await core.terminate(agent.terminal_id)
    # After the answer has gone out: the orchestrator then closes every connection.
    asyncio.get_running_loop().call_later(0.05, hook, False)
    return wire.ShutdownResult()


# ---- worker worktrees (core.worktree_manager; docs/worktrees.md) ------------------------------


@_handles("cao/listWorktrees")
async def list_worktrees(door: Door, p: wire.ListWorktreesParams) -> wire.ListWorktreesResult:
    core = await door.core()
    local = [views.worktree_info(i) for i in await core.worktrees.list(p.session)]
    return wire.ListWorktreesResult(worktrees=local + await _remote_worktrees(core, p.session))


@_handles("cao/mergeWorktree")
async def merge_worktree(door: Door, p: wire.MergeWorktreeParams) -> wire.MergeWorktreeResult:
    if split_terminal_id(p.terminal_id)[0] is not None:
        return await _on_host(door, split_terminal_id(p.terminal_id)[0], "cao/mergeWorktree", p, wire.MergeWorktreeResult)
    core = await door.core()
    done = await core.worktrees.merge(p.terminal_id, p.strategy)
    return wire.MergeWorktreeResult(
        merged=done["merged"], message=done["message"], worktree=views.worktree_info(done["worktree"]),
        conflicts=done["conflicts"], commit=done["commit"],
    )  # fmt: skip


@_handles("cao/discardWorktree")
async def discard_worktree(door: Door, p: wire.DiscardWorktreeParams) -> wire.DiscardWorktreeResult:
    if split_terminal_id(p.terminal_id)[0] is not None:
        return await _on_host(door, split_terminal_id(p.terminal_id)[0], "cao/discardWorktree", p, wire.DiscardWorktreeResult)
    core = await door.core()
    return wire.DiscardWorktreeResult(worktree=views.worktree_info(await core.worktrees.discard(p.terminal_id)))


# ---- profiles, flows and trust (cao_sidecar.profiles.live) -------------------------------


async def _live(door: Door) -> LiveConfig:
    await door.core()
    live = door.live_config()
    if live is None:
        raise CaoError("profiles and flows are not available (their watcher failed to start; see the log)")
    return live


@_handles("cao/listProfiles")
async def list_profiles(door: Door, p: wire.ListProfilesParams) -> wire.ListProfilesResult:
    core = await door.core()
    return wire.ListProfilesResult(profiles=[views.profile_info(e) for e in core.catalog.entries()])


@_handles("cao/installProfile")
async def install_profile(door: Door, p: wire.InstallProfileParams) -> wire.InstallProfileResult:
    from cao_sidecar.profiles.install import install_profile as install

    live = await _live(door)
    cwd = live.folders[0] if live.folders else None
    done = install(p.profile, catalog=live.profiles, user_dir=live.user_profiles, overwrite=p.overwrite, cwd=cwd)
    await live.reload({"profiles"})  # answer once cao/listProfiles shows it
    return wire.InstallProfileResult(name=done.name, path=str(done.path), replaced=done.replaced, warnings=done.warnings)


@_handles("cao/listFlows")
async def list_flows(door: Door, p: wire.ListFlowsParams) -> wire.ListFlowsResult:
    live = await _live(door)
    return wire.ListFlowsResult(flows=live.flow_infos())


@_handles("cao/runFlow")
async def run_flow(door: Door, p: wire.RunFlowParams) -> wire.RunFlowResult:
    live = await _live(door)
    return wire.RunFlowResult(run=views.run_info(await live.scheduler.run_now(p.name)))


@_handles("cao/setFlowEnabled")
async def set_flow_enabled(door: Door, p: wire.SetFlowEnabledParams) -> wire.SetFlowEnabledResult:
    live = await _live(door)
    return wire.SetFlowEnabledResult(flow=views.flow_info(live.scheduler.set_enabled(p.name, p.enabled)))


@_handles("cao/getTrust")
async def get_trust(door: Door, p: wire.GetTrustParams) -> wire.GetTrustResult:
    live = await _live(door)
    return wire.GetTrustResult(folders=live.trust_infos())


@_handles("cao/setTrust")
async def set_trust(door: Door, p: wire.SetTrustParams) -> wire.SetTrustResult:
    live = await _live(door)
    return wire.SetTrustResult(folders=await live.set_trust(p.trusted, p.path, p.persist))


# ---- agents on other hosts (cao_sidecar.hosts; issue 19) ------------------------------------


async def _on_host(door: Door, host: Optional[str], method: str, p: Any, result_cls: type) -> Any:
    """`method` on `host`'s node: the params without `host` (and ids unqualified), the result's
    ids qualified."""
    assert host is not None
    core = await door.core()
    params = {k: v for k, v in wire.unstructure(p).items() if v is not None and k not in ("host", "workDoneToken")}
    hosts = hosts_of(core)
    if isinstance(params.get("terminalId"), str) and ":" in params["terminalId"]:
        raw = await hosts.call_terminal(params.pop("terminalId"), method, params)
    else:
        raw = await hosts.call(host, method, params)
    return wire.converter.structure(raw, result_cls)


async def _profile_host(door: Door, profile: Optional[str]) -> Optional[str]:
    """The `host:` of the profile a request names, if it names one this side knows."""
    if profile is None:
        return None
    core = await door.core()
    try:
        return core.catalog.get(profile).host
    except CaoError:
        return None  # an unknown profile is reported where it is started


async def _remote_agents(core: Any, session: Optional[str]) -> list[wire.AgentInfo]:
    return _fitting(await hosts_of(core).list_agents(session), wire.AgentInfo)


def _fitting(raws: list[dict[str, Any]], cls: type) -> list[Any]:
    """What nodes listed, as wire types; from a node of another version, what does not fit is skipped."""
    infos: list[Any] = []
    for raw in raws:
        try:
            infos.append(wire.converter.structure(raw, cls))
        except Exception:  # noqa: BLE001
            continue
    return infos


async def _remote_worktrees(core: Any, session: Optional[str]) -> list[wire.WorktreeInfo]:
    return _fitting(await hosts_of(core).list_worktrees(session), wire.WorktreeInfo)


# ---- workflows (cao_sidecar.workflows; docs/workflows.md) -------------------------------------


async def _workflows(door: Door) -> Any:
    core = await door.core()
    if core.workflows is None:
        raise CaoError("workflows are not available in this server")
    return core.workflows


@_handles("cao/listWorkflows")
async def list_workflows(door: Door, p: wire.ListWorkflowsParams) -> wire.ListWorkflowsResult:
    from cao_sidecar.workflows.catalog import list_workflows as listed

    engine = await _workflows(door)
    return wire.ListWorkflowsResult(workflows=[views.workflow_info(w) for w in await asyncio.to_thread(listed, engine.project)])


@_handles("cao/runWorkflow")
async def run_workflow(door: Door, p: wire.RunWorkflowParams) -> wire.RunWorkflowResult:
    engine = await _workflows(door)
    run = await engine.run(p.name, p.inputs, trigger="client")
    return wire.RunWorkflowResult(run=await engine.wait_ended(run.run_id) if p.wait else run)


@_handles("cao/resumeWorkflow")
async def resume_workflow(door: Door, p: wire.ResumeWorkflowParams) -> wire.ResumeWorkflowResult:
    engine = await _workflows(door)
    run = await engine.resume(p.run_id, force=p.force)
    return wire.ResumeWorkflowResult(run=await engine.wait_ended(run.run_id) if p.wait else run)


@_handles("cao/listWorkflowRuns")
async def list_workflow_runs(door: Door, p: wire.ListWorkflowRunsParams) -> wire.ListWorkflowRunsResult:
    engine = await _workflows(door)
    if p.limit is not None and p.limit <= 0:
        raise InvalidRequest("cao/listWorkflowRuns: field 'limit' must be positive", field="limit")
    return wire.ListWorkflowRunsResult(runs=engine.runs(p.limit or 50))


@_handles("cao/getWorkflowRun")
async def get_workflow_run(door: Door, p: wire.GetWorkflowRunParams) -> wire.GetWorkflowRunResult:
    engine = await _workflows(door)
    return wire.GetWorkflowRunResult(run=engine.info(p.run_id))


@_handles("cao/cancelWorkflow")
async def cancel_workflow(door: Door, p: wire.CancelWorkflowParams) -> wire.CancelWorkflowResult:
    engine = await _workflows(door)
    return wire.CancelWorkflowResult(run=await engine.cancel(p.run_id))


@_handles("cao/workflowStep")
async def workflow_step(door: Door, p: wire.WorkflowStepParams) -> wire.WorkflowStepResult:
    engine = await _workflows(door)
    return await engine.step(p)
