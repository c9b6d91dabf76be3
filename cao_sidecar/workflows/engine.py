"""Workflow runs in the orchestrator: the scripts it starts, the journal its steps go through.

- A run starts a script process (cao_sidecar.workflows.runner) that joins the team as a client.
  Each `step(...)` of the script is a `cao/workflowStep` request, answered here.
- A step is journaled (storage.workflows) `pending` before anything is sent, then sent as an
  assign to a new worker of its profile, journaled `sent` in the same transaction that stores the
  worker's task (so a crash leaves either both or neither). The worker's end (WorkerCompleted, or
  its report in the state db when the sidecar died in between) is journaled `completed`/`failed`,
  whether or not the script still waits for it.
- Resume runs the script again: a step the journal has finished answers from it at once, a sent
  one waits for its worker (never sent twice), a pending one was never sent and is sent now. A
  step whose profile or task differs from the journal's is refused (the script changed); a
  script whose content changed since the run started is not resumed without `force`.
- When the sidecar starts, runs it left `running` (it died under them) resume by themselves; a
  script that died while the sidecar lived leaves its run `interrupted` until resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from cao_sidecar import paths, trust, views, wire
from cao_sidecar.core.errors import CaoError, InvalidRequest
from cao_sidecar.core.events import WorkerCompleted
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.hosts.config import runs_elsewhere
from cao_sidecar.storage.messages import transaction
from cao_sidecar.storage.workflows import WorkflowRun, WorkflowStep, WorkflowStore
from cao_sidecar.workflows import catalog
from cao_sidecar.workflows.runner import LOST
from cao_sidecar.wire_types.agents import ASSIGN_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from cao_sidecar.core.orchestrator import Orchestrator

log = logging.getLogger(__name__)

RunListener = Callable[[wire.WorkflowRunInfo], None]
RECHECK_SECONDS = 5.0  # a waiting step looks at the journal and the reports this often anyway


def task_hash(task: str) -> str:
    return hashlib.sha256(task.encode("utf-8", "surrogateescape")).hexdigest()


def _short(text: str, size: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"


def _script_pid_alive(pid: Optional[int], run_id: str) -> bool:
    """Whether `pid` is still this run's script (not a pid reused by another program)."""
    if not pid or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"cao_sidecar.workflows.runner" in cmdline and run_id.encode() in cmdline


def script_env(tmux_socket: str) -> dict[str, str]:
    """A script's environment: ours, on this team's tmux socket, with both packages importable
    (cao_client for `step`, cao_sidecar for the runner) wherever they are installed."""
    import cao_client

    env = dict(os.environ)
    env["CAO_TMUX_SOCKET"] = tmux_socket
    roots = [str(Path(cao_client.__file__).resolve().parent.parent), str(Path(__file__).resolve().parents[2])]
    env["PYTHONPATH"] = os.pathsep.join([*roots, *filter(None, [env.get("PYTHONPATH")])])
    return env


class WorkflowEngine:
    def __init__(self, core: "Orchestrator", *, project: Path, tmux_socket: str) -> None:
        self.core = core
        self.project = project
        self.tmux_socket = tmux_socket
        self.store = WorkflowStore(core.supervisor.stores.db)
        self.runs_dir = paths.ensure_private_dir(core.state_dir / "workflows")
        self._listeners: list[RunListener] = []
        self._scripts: dict[str, asyncio.subprocess.Process] = {}
        self._changed: dict[str, asyncio.Event] = {}  # run id or worker id -> something moved
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled: set[str] = set()  # runs whose script is being stopped by cancel()
        self._subscription = core.events.subscribe(WorkerCompleted, self._on_worker_completed)
        self.closing = False
        # Runs a dead sidecar left running, taken now: requests wait until they are resumed.
        self._orphans = self.store.running()
        self._ready = asyncio.Event()

    # ---- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Journal what ended while no one listened, then resume the runs a dead sidecar left."""
        try:
            for run in self._orphans:
                for step in self.store.steps(run.run_id):
                    if step.status == "sent":
                        self._settle_from_reports(step)
            for run in self._orphans:
                await self._resume_orphan(run)
        finally:
            self._ready.set()

    async def close(self) -> None:
        """The sidecar stops: scripts lose their connection and exit; their runs stay `running`
        so the next sidecar resumes them."""
        self.closing = True
        self._subscription.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def add_listener(self, listener: RunListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    @property
    def active(self) -> int:
        """Scripts running now (the orchestrator stays while there are any)."""
        return len(self._scripts)

    # ---- queries ------------------------------------------------------------------------------

    def info(self, run_id: str) -> wire.WorkflowRunInfo:
        run = self.store.run(run_id)
        if run is None:
            raise InvalidRequest(f"no workflow run '{run_id}'; `cao-sidecar workflow runs` lists them", field="runId")
        return views.workflow_run_info(run, self.store.steps(run_id))

    def runs(self, limit: int = 50) -> list[wire.WorkflowRunInfo]:
        return [views.workflow_run_info(run, self.store.steps(run.run_id)) for run in self.store.runs(limit)]

    def _notify(self, run_id: str) -> None:
        event = self._changed.get(run_id)
        if event is not None:
            event.set()
        if not self._listeners:
            return
        info = self.info(run_id)
        for listener in list(self._listeners):
            try:
                listener(info)
            except Exception:
                log.exception("workflow listener failed")

    # ---- runs ---------------------------------------------------------------------------------

    async def run(self, name: str, inputs: dict[str, str], *, trigger: str) -> wire.WorkflowRunInfo:
        await self._ready.wait()
        workflow = await asyncio.to_thread(catalog.find, self.project, name)
        digest = await asyncio.to_thread(catalog.script_hash, workflow.path)
        run = self.store.add_run(name=name, path=str(workflow.path), script_hash=digest, inputs=inputs, trigger=trigger)
        await self._launch(run)
        return self.info(run.run_id)

    async def _unfinished(self, run_id: str) -> WorkflowRun:
        """The run `run_id` once runs a dead sidecar left are resumed; refused if completed."""
        await self._ready.wait()
        run = self.store.run(run_id)
        if run is None:
            raise InvalidRequest(f"no workflow run '{run_id}'; `cao-sidecar workflow runs` lists them", field="runId")
        if run.status == "completed":
            raise CaoError(f"workflow run {run_id} has completed already; `cao-sidecar workflow show {run_id}` shows it")
        return run

    async def resume(self, run_id: str, *, force: bool = False) -> wire.WorkflowRunInfo:
        run = await self._unfinished(run_id)
        if run_id in self._scripts:
            return self.info(run_id)  # running already (resumed when this sidecar started): follow it
        changed = await self._changed_since_start(run)
        if changed is not None and not force:
            raise CaoError(
                changed + "; resume with --force to replay its journal anyway (steps that differ are refused), or start a new run"
            )
        self.store.set_status(run_id, "running")
        await self._launch(run)
        return self.info(run_id)

    async def cancel(self, run_id: str) -> wire.WorkflowRunInfo:
        """Stop a run for good: its script is killed, the workers of its unfinished steps are
        terminated, the run is `failed` ("cancelled"). `resume` could still go on with it."""
        await self._unfinished(run_id)
        process = self._scripts.get(run_id)
        if process is not None:
            self._cancelled.add(run_id)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the script leads its own process group
            await process.wait()
        for step in self.store.steps(run_id):
            if step.status == "sent" and step.worker_id in self.core.agents:
                with contextlib.suppress(CaoError):
                    await self.core.terminate(step.worker_id)
        self.store.set_status(run_id, "failed", error="cancelled")
        self._notify(run_id)
        return self.info(run_id)

    async def wait_ended(self, run_id: str) -> wire.WorkflowRunInfo:
        event = self._changed.setdefault(run_id, asyncio.Event())
        while True:
            run = self.store.run(run_id)
            if run is None or run.status != "running":
                return self.info(run_id)
            event.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), RECHECK_SECONDS)

    async def _changed_since_start(self, run: WorkflowRun) -> Optional[str]:
        """Why the run's script cannot be resumed as it is (gone, untrusted, changed), else None."""
        path = Path(run.path)
        if path.parent == catalog.workspace_workflows_dir(self.project) and not trust.decide(self.project).trusted:
            raise CaoError(
                f"workflow '{run.name}' is in a folder you have not trusted: its scripts do not run. {trust.how_to_trust(self.project)}"
            )
        try:
            digest = await asyncio.to_thread(catalog.script_hash, path)
        except OSError as exc:
            raise CaoError(f"workflow run {run.run_id}: its script {path} cannot be read ({exc.strerror or exc})") from None
        if digest != run.script_hash:
            return (
                f"the script {path} changed since run {run.run_id} started (content hash {run.script_hash[:12]} -> {digest[:12]})"
            )
        return None

    async def _resume_orphan(self, run: WorkflowRun) -> None:
        """A run left `running` by a sidecar that died: end its orphaned script, resume it."""
        if _script_pid_alive(run.pid, run.run_id):
            assert run.pid is not None
            with contextlib.suppress(OSError):
                os.killpg(run.pid, signal.SIGKILL)  # the script leads its own process group
            for _ in range(50):
                if not _script_pid_alive(run.pid, run.run_id):
                    break
                await asyncio.sleep(0.05)
        try:
            changed = await self._changed_since_start(run)
        except CaoError as exc:
            changed = exc.message
        if changed is not None:
            self.store.set_status(run.run_id, "interrupted", error=f"not resumed: {changed}")
            self._notify(run.run_id)
            return
        log.info("resuming workflow run %s (%s): its sidecar stopped under it", run.run_id, run.name)
        await self._launch(run)

    async def _launch(self, run: WorkflowRun) -> None:
        result = self.runs_dir / f"{run.run_id}.result.json"
        with contextlib.suppress(FileNotFoundError):
            result.unlink()
        env = script_env(self.tmux_socket)
        log_fd = paths.open_private(self.runs_dir / f"{run.run_id}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cao_sidecar.workflows.runner",
                run.run_id, run.path, str(result), str(self.project), json.dumps(run.inputs),
                cwd=str(self.project), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            self.store.set_status(run.run_id, "failed", error=f"cannot start the script: {exc}")
            self._notify(run.run_id)
            return
        finally:
            os.close(log_fd)
        self._scripts[run.run_id] = process
        self.store.set_pid(run.run_id, process.pid)
        self._notify(run.run_id)
        task = asyncio.get_running_loop().create_task(self._watch(run.run_id, process, result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, run_id: str, process: asyncio.subprocess.Process, result: Path) -> None:
        code = await process.wait()
        self._scripts.pop(run_id, None)
        if self.closing:
            return  # stays `running`: the next sidecar resumes it
        if run_id in self._cancelled:
            self._cancelled.discard(run_id)
            return  # cancel() records how it ended
        try:
            outcome = json.loads(await asyncio.to_thread(result.read_text, encoding="utf-8"))
        except (OSError, ValueError):
            outcome = {}
        logfile = self.runs_dir / f"{run_id}.log"
        if code == 0 and "output" in outcome:
            self.store.set_status(run_id, "completed", output=outcome["output"])
        elif "error" in outcome:
            self.store.set_status(run_id, "failed", error=str(outcome["error"]))
        elif code < 0 or code == LOST:
            how = f"was killed (signal {-code})" if code < 0 else "lost its connection to the sidecar"
            self.store.set_status(
                run_id, "interrupted", error=f"the script {how}; `cao-sidecar workflow resume {run_id}` goes on"
            )
        else:
            self.store.set_status(run_id, "failed", error=f"the script exited with code {code}; its output: {logfile}")
        self._notify(run_id)

    # ---- steps --------------------------------------------------------------------------------

    async def step(self, p: wire.WorkflowStepParams) -> wire.WorkflowStepResult:
        await self._ready.wait()
        run = self.store.run(p.run_id)
        if run is None or run.status != "running":
            raise CaoError(f"workflow run {p.run_id} is not running (it is {run.status if run else 'unknown'})")
        if p.key < 0:
            raise InvalidRequest("field 'key' must not be negative", field="key")
        digest = task_hash(p.task)
        journaled = self.store.step(p.run_id, p.key)
        if journaled is not None and (journaled.profile != p.profile or journaled.task_hash != digest):
            raise CaoError(
                f"step {p.key} is not the step the journal has: it was {journaled.profile} '{_short(journaled.task)}', "
                f"now {p.profile} '{_short(p.task)}'. The script changed (or calls its steps in another order); "
                "start a new run"
            )
        if journaled is not None and journaled.status == "completed":
            assert journaled.answer is not None and journaled.worker_id is not None
            return wire.WorkflowStepResult(answer=journaled.answer, terminal_id=journaled.worker_id, replayed=True)
        if journaled is not None and journaled.status == "sent":
            assert journaled.worker_id is not None
            worker_id = journaled.worker_id  # its worker is still on it: wait for that one
        else:
            worker_id = self._send(p, digest)
        step = await self._wait_step(p.run_id, p.key)
        if step.status == "failed":
            raise CaoError(f"the {step.profile} worker {step.worker_id} failed: {step.error}", terminalId=step.worker_id)
        assert step.answer is not None
        return wire.WorkflowStepResult(answer=step.answer, terminal_id=worker_id, replayed=False)

    def _send(self, p: wire.WorkflowStepParams, digest: str) -> str:
        try:
            host = runs_elsewhere(self.core.catalog.get(p.profile))
        except CaoError:
            host = None  # an unknown profile: core.assign says so
        if host is not None:
            raise InvalidRequest(
                f"profile '{p.profile}' runs on host '{host}' (its host:), and workflow steps run on this machine "
                "only: give this step a profile without host:", field="profile",
            )  # fmt: skip
        self.store.add_pending(p.run_id, p.key, p.profile, digest, p.task)  # journaled before it is sent
        self._notify(p.run_id)
        timeout = p.timeout_seconds if p.timeout_seconds is not None else ASSIGN_TIMEOUT_SECONDS
        if timeout <= 0:
            raise InvalidRequest("field 'timeoutSeconds' must be positive", field="timeoutSeconds")
        with transaction(self.store.connection):
            # The worker's task and the journal's `sent` land together (same database): a crash
            # leaves the step pending (never sent) or sent (its successor follows the worker).
            agent = self.core.assign(p.task, profile=p.profile, timeout=timeout, keep=False, worktree=p.worktree)
            self.store.mark_sent(p.run_id, p.key, agent.terminal_id)
        self.core.logs.event("workflow.step", agent.terminal_id, runId=p.run_id, key=p.key, profile=p.profile)
        self._notify(p.run_id)
        return agent.terminal_id

    async def _wait_step(self, run_id: str, key: int) -> WorkflowStep:
        while True:
            step = self.store.step(run_id, key)
            assert step is not None and step.worker_id is not None
            if step.status in ("completed", "failed"):
                return step
            event = self._changed.setdefault(step.worker_id, asyncio.Event())
            if self._settle_from_reports(step):
                continue
            event.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), RECHECK_SECONDS)

    def _settle_from_reports(self, step: WorkflowStep) -> bool:
        """A sent step whose worker was reported without the journal hearing it (the sidecar died
        between the two, or the worker's record was lost): journal the report now."""
        assert step.worker_id is not None
        if self.core.agent_store.has_assign(step.worker_id):
            return False  # still working (or a successor follows it)
        report = self.core.supervisor.stores.reports.latest(step.worker_id)
        if report is None:
            self._finish(step.worker_id, None, "the step's worker is gone and was never reported")
        elif report.status == AgentStatus.COMPLETED.value:
            self._finish(step.worker_id, report.output, None)
        else:
            self._finish(step.worker_id, None, report.error or report.status)
        return True

    def _on_worker_completed(self, event: WorkerCompleted) -> None:
        outcome = event.outcome
        ok = outcome.status is AgentStatus.COMPLETED and outcome.error is None
        error = None if ok else (outcome.error.message if outcome.error else outcome.status.value)
        self._finish(outcome.agent.terminal_id, outcome.output if ok else None, error)

    def _finish(self, worker_id: str, answer: Optional[str], error: Optional[str]) -> None:
        step = self.store.step_of_worker(worker_id)
        if step is None or not self.store.finish(step.run_id, step.key, answer=answer, error=error):
            return
        waiter = self._changed.pop(worker_id, None)
        if waiter is not None:
            waiter.set()
        self._notify(step.run_id)
