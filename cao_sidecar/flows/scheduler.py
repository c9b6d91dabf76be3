"""Runs flows on their schedules while the sidecar runs, and on request (`cao/runFlow`).

The scheduler sleeps until the earliest next run (at most MAX_SLEEP, so a laptop that slept or a
clock that jumped is noticed), wakes early when the flows change, and never polls files: flow
files are watched (profiles.live). A due flow runs as a `cao/assign` (the editor sees the worker
and its `cao/workerCompleted`), after its gate if it has one. A flow whose previous run is still
working is skipped; missed slots are not made up (one late run at most, e.g. after a suspend);
runs due while no sidecar was running are not made up at all. Every run is recorded.

Test hook: CAO_CLOCK_OFFSET_SECONDS (a number of seconds, may be negative) shifts the clock the
scheduler reads, and only that clock: it decides when cron schedules are due, and the
`nextRunAt`/`scheduledAt` it reports are in that shifted time. Nothing else is shifted.
CAO_FLOWS_SCHEDULER=off stops scheduled runs (cao/runFlow still works).

A flow of a workspace folder the user has not trusted is never scheduled, and `run_now` refuses
it (Untrusted): its gate is a program the folder chose.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Optional, Protocol

import attrs

from cao_sidecar.core.errors import CaoError, InvalidRequest, Untrusted
from cao_sidecar.flows.catalog import FlowCatalog
from cao_sidecar.flows.flow import Flow, fill_placeholders
from cao_sidecar.flows.gate import run_gate
from cao_sidecar.hosts.config import runs_elsewhere
from cao_sidecar.profiles.files import NAME_PATTERN, NAME_RULE
from cao_sidecar.profiles.layers import Entry
from cao_sidecar.settings import Settings, settings
from cao_sidecar.storage.flows import FlowRun, FlowRunStore

if TYPE_CHECKING:
    from cao_sidecar.core.agent import Agent
    from cao_sidecar.core.events import WorkerOutcome
    from cao_sidecar.workflows.engine import WorkflowEngine
    from cao_sidecar.profiles.catalog import ProfileCatalog


class AssignsWork(Protocol):
    """What the scheduler needs of the core (core.team.Team): where flows run by default, the
    profiles (their host), and assigning a worker."""

    @property
    def default_cwd(self) -> str: ...

    @property
    def catalog(self) -> "ProfileCatalog": ...

    def assign(
        self,
        message: str,
        *,
        profile: str,
        provider: str | None = None,
        working_directory: str | None = None,
        timeout: float = ...,
        keep: bool = ...,
        worktree: bool | None = None,
    ) -> "Agent": ...

    @property
    def workflows(self) -> Optional["WorkflowEngine"]:
        """Where a flow with `workflow:` starts its run (None: not available)."""
        ...


log = logging.getLogger(__name__)

MAX_SLEEP = 60.0
COMPLETION_GRACE = 60.0  # beyond a flow's timeoutSeconds


def local_zone() -> tzinfo:
    """The local time zone with its DST rules when they can be found (cron is local time)."""
    try:
        from zoneinfo import ZoneInfo

        name = os.environ.get("TZ", "").lstrip(":")
        if name:
            return ZoneInfo(name)
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except Exception:  # noqa: BLE001 - no tz database: a fixed offset
        return datetime.now(timezone.utc).astimezone().tzinfo or timezone.utc


class Clock:
    """The scheduling clock: wall-clock time plus an offset (0 unless a test sets one)."""

    def __init__(self, offset: float = 0.0, zone: Optional[tzinfo] = None) -> None:
        self.offset = offset
        self.zone = zone or local_zone()

    @classmethod
    def from_env(cls) -> "Clock":
        """A clock with the offset the environment sets now (tests; the sidecar reads its
        settings once, see FlowScheduler)."""
        return cls(Settings.from_environ(os.environ).clock_offset_seconds)

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset, self.zone)


def next_after(schedule: str, base: datetime) -> datetime:
    from croniter import croniter  # not at start-up: see flows.flow

    return croniter(schedule, base).get_next(datetime)


def iso(moment: Optional[datetime]) -> Optional[str]:
    return moment.isoformat(timespec="seconds") if moment is not None else None


@attrs.define
class FlowState:
    """What the editor sees of one flow (server.py turns it into wire.FlowInfo)."""

    entry: Entry[Flow]
    enabled: bool
    next_run_at: Optional[str]
    running: bool
    last_run: Optional[FlowRun]


class FlowScheduler:
    def __init__(
        self,
        *,
        core: Optional[AssignsWork],
        flows: FlowCatalog,
        store: FlowRunStore,
        clock: Optional[Clock] = None,
        auto: Optional[bool] = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.core = core
        self.flows = flows
        self.store = store
        self.clock = clock or Clock(settings().clock_offset_seconds)
        if auto is None:
            auto = settings().flows_scheduler
        self.auto = auto
        self._on_change = on_change
        self._next: dict[Path, tuple[str, datetime]] = {}
        self._active: dict[Path, str] = {}  # flow file -> run id, runs of this sidecar
        self._by_terminal: dict[str, tuple[str, Path]] = {}  # worker -> (run id, flow file)
        self._workflow_waits: set[asyncio.Task[None]] = set()  # flows that run a workflow, until it ends
        self._wake = asyncio.Event()
        self._task: Optional[asyncio.Task[None]] = None
        self._runs: set[asyncio.Task[object]] = set()

    # ---- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        orphans = self.store.fail_orphans()
        if orphans:
            log.info("marked %d flow runs of stopped sidecars as failed", orphans)
        self.reschedule()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="cao-flow-scheduler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._runs):
            task.cancel()
        for pending in [self._task, *self._runs]:
            if pending is not None:
                try:
                    await pending
                except BaseException:  # noqa: BLE001 - cancelled or failed: either way done
                    pass
        self.store.fail_mine("the sidecar stopped before the run finished (its worker may still be in tmux)")

    def reschedule(self) -> None:
        """Flows changed: schedule new or changed ones, forget removed ones, wake the loop."""
        now = self.clock.now()
        current: dict[Path, str] = {e.path: e.item.schedule for e in self.flows.entries() if e.layer.trusted}
        for path in [p for p in self._next if p not in current]:
            del self._next[path]
        for path, schedule in current.items():
            known = self._next.get(path)
            if known is None or known[0] != schedule:
                try:
                    self._next[path] = (schedule, next_after(schedule, now))
                except Exception:  # validated already; never let one flow stop the rest
                    log.exception("flow %s: cannot compute the next run of %r", path, schedule)
        self._wake.set()

    # ---- the loop -------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock.now()
            for path, (schedule, due) in list(self._next.items()):
                if due > now:
                    continue
                try:
                    self._next[path] = (schedule, next_after(schedule, max(now, due)))
                    entry = self._entry_for(path)
                    if entry is None or not entry.layer.trusted or not self.auto:
                        continue
                    if not self.store.effective_enabled(str(path), entry.item.enabled):
                        continue
                except Exception:  # one flow's trouble must not stop the others
                    log.exception("flow %s: cannot schedule", path)
                    self._next[path] = (schedule, now.replace(microsecond=0) + timedelta(seconds=60))
                    continue
                self._spawn(self.run(entry.item, trigger="schedule", scheduled_at=due))
            if self._next:
                soonest = min(due for _schedule, due in self._next.values())
                delay = min(MAX_SLEEP, max(0.0, (soonest - self.clock.now()).total_seconds()) + 0.002)
            else:
                delay = MAX_SLEEP
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def _entry_for(self, path: Path) -> Optional[Entry[Flow]]:
        return next((e for e in self.flows.entries() if e.path == path), None)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._runs.add(task)
        task.add_done_callback(self._run_done)

    def _run_done(self, task: asyncio.Task[object]) -> None:
        self._runs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("flow run failed", exc_info=task.exception())

    # ---- one run --------------------------------------------------------------------------

    async def run(self, flow: Flow, *, trigger: str, scheduled_at: Optional[datetime] = None) -> Optional[FlowRun]:
        """Run a flow once. None: another sidecar sharing the state dir claimed this slot."""
        path = str(flow.path)
        slot = iso(scheduled_at)
        busy_id = self._active.get(flow.path)
        if busy_id is None:
            other = self.store.running(path)
            busy_id = other.run_id if other is not None else None
        if busy_id is not None:
            run = self.store.record_final(
                flow=flow.name,
                path=path,
                trigger=trigger,
                scheduled_at=slot,
                status="skipped",
                reason=f"the previous run (#{busy_id}) is still working",
            )
            if run is not None:
                log.info("flow %s: skipped, run #%s is still working", flow.name, busy_id)
                self._changed()
            return run
        run = self.store.start(flow=flow.name, path=path, trigger=trigger, scheduled_at=slot)
        if run is None:
            return None
        self._active[flow.path] = run.run_id
        self._changed()
        log.info("flow %s: run #%s (%s)", flow.name, run.run_id, trigger)
        try:
            return await self._start_worker(flow, run, scheduled_at)
        except asyncio.CancelledError:
            self._finish(flow.path, run.run_id, "failed", reason="the sidecar stopped during the run")
            raise
        except Exception as exc:  # recorded; the scheduler goes on
            log.exception("flow %s: run #%s failed", flow.name, run.run_id)
            return self._finish(flow.path, run.run_id, "failed", reason=f"internal error: {exc}")

    async def _start_worker(self, flow: Flow, run: FlowRun, scheduled_at: Optional[datetime]) -> Optional[FlowRun]:
        core = self.core
        if core is None:  # a scheduler for listing flows only (`cao-sidecar flows`)
            return self._finish(flow.path, run.run_id, "failed", reason="no orchestration core to run it")
        cwd = flow.working_directory or core.default_cwd or os.getcwd()
        task = flow.task
        inputs = dict(flow.inputs)
        if flow.gate is not None:
            if not await asyncio.to_thread(os.path.isdir, cwd):
                return self._finish(flow.path, run.run_id, "gate_failed", reason=f"working directory {cwd} does not exist")
            decision = await run_gate(flow.gate, cwd=cwd, env=self._gate_env(flow, run, scheduled_at))
            if not decision.run:
                status = "gate_failed" if decision.failed else "skipped"
                log.info("flow %s: run #%s %s: %s", flow.name, run.run_id, status, decision.reason)
                return self._finish(flow.path, run.run_id, status, reason=decision.reason)
            task, missing = fill_placeholders(task, decision.values)
            inputs = {k: fill_placeholders(v, decision.values)[0] for k, v in flow.inputs.items()}
            missing = sorted(set(missing) | {m for v in flow.inputs.values() for m in fill_placeholders(v, decision.values)[1]})
            if missing:
                names = ", ".join("{{" + m + "}}" for m in missing)
                return self._finish(flow.path, run.run_id, "gate_failed", reason=f"the gate's JSON has no value for {names}")
        if flow.workflow is not None:
            return await self._start_workflow(flow, run, inputs, task)
        try:
            host = runs_elsewhere(core.catalog.get(flow.profile))
        except CaoError:
            host = None  # an unknown profile: core.assign says so
        if host is not None:
            reason = f"profile '{flow.profile}' runs on host '{host}' (its host:), and flows run on this machine only"
            return self._finish(flow.path, run.run_id, "failed", reason=reason, task=task)
        try:
            agent = core.assign(
                task,
                profile=flow.profile,
                provider=flow.provider,
                working_directory=flow.working_directory,
                timeout=flow.timeout,
                keep=flow.keep,
                worktree=flow.worktree,
            )
        except CaoError as exc:
            log.info("flow %s: run #%s could not start: %s", flow.name, run.run_id, exc.message)
            return self._finish(flow.path, run.run_id, "failed", reason=exc.message, task=task)
        self._by_terminal[agent.terminal_id] = (run.run_id, flow.path)
        updated = self.store.update(run.run_id, terminal_id=agent.terminal_id, task=task)
        # Safety net: the core reports every assign's end; should it ever not, the run does not
        # stay "running" (and block later runs) past its timeout.
        asyncio.get_running_loop().call_later(flow.timeout + COMPLETION_GRACE, self._expire, agent.terminal_id, run.run_id)
        self._changed()
        return updated

    async def _start_workflow(self, flow: Flow, run: FlowRun, inputs: dict[str, str], task: str) -> Optional[FlowRun]:
        """A flow that runs a workflow (docs/workflows.md): the flow run ends with the workflow run."""
        core = self.core
        assert core is not None and flow.workflow is not None
        if core.workflows is None:
            return self._finish(flow.path, run.run_id, "failed", reason="workflows are not available in this sidecar", task=task)
        try:
            started = await core.workflows.run(flow.workflow, inputs, trigger="flow")
        except CaoError as exc:
            return self._finish(flow.path, run.run_id, "failed", reason=exc.message, task=task)
        updated = self.store.update(run.run_id, task=f"workflow {flow.workflow} run {started.run_id}")
        self._changed()
        engine = core.workflows

        async def until_ended() -> None:
            ended = await engine.wait_ended(started.run_id)
            output = ended.output if isinstance(ended.output, str) or ended.output is None else json.dumps(ended.output)
            ok = ended.status == "completed"
            self._finish(
                flow.path, run.run_id, "completed" if ok else "failed", output=output or "",
                reason=None if ok else f"workflow run {started.run_id} {ended.status}: {ended.error}",
            )  # fmt: skip

        task_ = asyncio.get_running_loop().create_task(until_ended())
        self._workflow_waits.add(task_)
        task_.add_done_callback(self._workflow_waits.discard)
        return updated

    def _expire(self, terminal_id: str, run_id: str) -> None:
        ref = self._by_terminal.get(terminal_id)
        if ref is None or ref[0] != run_id:
            return
        del self._by_terminal[terminal_id]
        log.warning("flow run #%s: no end reported for worker %s; marking it failed", run_id, terminal_id)
        self._finish(ref[1], run_id, "failed", reason="the worker's end was never reported (timed out)")

    def _gate_env(self, flow: Flow, run: FlowRun, scheduled_at: Optional[datetime]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CAO_FLOW_NAME=flow.name,
            CAO_FLOW_FILE=str(flow.path),
            CAO_FLOW_RUN_ID=run.run_id,
            CAO_FLOW_TRIGGER=run.trigger,
            CAO_FLOW_SCHEDULED_AT=iso(scheduled_at) or "",
        )
        previous = next((r for r in self.store.history(str(flow.path), 50) if r.status == "completed"), None)
        env["CAO_FLOW_LAST_SUCCESS_AT"] = previous.started_at if previous else ""
        return env

    def _finish(self, path: Path, run_id: str, status: str, **fields: Optional[str]) -> Optional[FlowRun]:
        run = self.store.update(run_id, status=status, **fields)
        if self._active.get(path) == run_id:
            del self._active[path]
        self._changed()
        return run

    def on_worker_completed(self, outcome: "WorkerOutcome") -> None:
        """Completion listener (core.events.WorkerCompleted): a flow's worker finished (or failed)."""
        ref = self._by_terminal.pop(outcome.agent.terminal_id, None)
        if ref is None:
            return
        run_id, path = ref
        error = outcome.error
        self._finish(
            path,
            run_id,
            "completed" if error is None else "failed",
            output=outcome.output or "",
            reason=error.message if error is not None else None,
        )

    def _changed(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("flow change listener failed")

    # ---- requests -------------------------------------------------------------------------

    def entry(self, name: str) -> Entry[Flow]:
        if not NAME_PATTERN.match(name):
            raise InvalidRequest(f"field 'name' must be {NAME_RULE}", field="name")
        entry = self.flows.get(name)
        if entry is None:
            known = ", ".join(e.name for e in self.flows.entries()) or "none"
            raise InvalidRequest(f"no flow named '{name}' (known: {known})", field="name")
        return entry

    async def run_now(self, name: str) -> FlowRun:
        entry = self.entry(name)
        if not entry.layer.trusted:
            from cao_sidecar.trust import how_to_trust

            folder = entry.layer.base_dir or entry.path.parent
            raise Untrusted(
                f"flow '{name}' comes from {folder}, a folder you have not trusted: it does not run; " + how_to_trust(folder),
                flow=name,
                path=str(folder),
            )
        run = await self.run(entry.item, trigger="manual")
        assert run is not None  # manual runs claim no slot
        return run

    def set_enabled(self, name: str, enabled: bool) -> FlowState:
        entry = self.entry(name)
        self.store.set_enabled(str(entry.path), enabled, entry.item.enabled)
        self._wake.set()
        self._changed()
        return self.state(entry)

    def state(self, entry: Entry[Flow]) -> FlowState:
        path = str(entry.path)
        enabled = self.store.effective_enabled(path, entry.item.enabled)
        scheduled = self._next.get(entry.path)
        next_run = iso(scheduled[1]) if (scheduled and enabled and self.auto) else None
        running = entry.path in self._active or self.store.running(path) is not None
        return FlowState(entry, enabled, next_run, running, self.store.last(path))

    def states(self) -> list[FlowState]:
        return [self.state(e) for e in self.flows.entries()]
