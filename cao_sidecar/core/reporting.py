"""Assigns and their reports, durable: every acknowledged assign is reported exactly once.

An assign (or a handoff to a new worker) is stored with its task when it is acknowledged
(`record_task`). When it ends, `settle` takes it off the pending list in the same transaction
that stores its reports: one for the editor (storage.reports, sent once an editor is connected)
and, for an agent's assign, a message to that agent's inbox. Whatever crashes, an assign is
either still pending (a restarted sidecar finishes and reports it, core.recovery) or reported,
never both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from cao_sidecar.core.events import EventSource, WorkerCompleted, WorkerOutcome
from cao_sidecar.core.statedir import refusing_when_full
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.storage.agents import AgentStore, AssignRecord
from cao_sidecar.storage.logs import ConversationLogs
from cao_sidecar.storage.messages import MessageStore, StoredMessage, is_full, transaction
from cao_sidecar.storage.reports import Report, ReportStore

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0  # a report that found the disk full is written again after this
SINK_WAIT_SECONDS = 0.1  # a report waits this long at a time for the editor to catch up
FORWARD_RETRY_SECONDS = 5.0  # a report its receiver refused is offered again after this

Forward = Callable[[Report], Awaitable[Any]]  # returns once the receiver has the report


class AssignReports:
    def __init__(
        self,
        *,
        state_dir: Path,
        messages: MessageStore,
        agent_store: AgentStore,
        reports: ReportStore,
        logs: ConversationLogs,
        events: EventSource,
        queue_stored: Callable[[StoredMessage], None],
    ) -> None:
        self._state_dir = state_dir
        self._messages = messages
        self._agent_store = agent_store
        self._reports = reports
        self._logs = logs
        self._queue_stored = queue_stored  # puts a stored message in its receiver's inbox
        self._events = events
        self._sink: Optional[Callable[[Report], None]] = None
        self._sink_ready: Callable[[], bool] = lambda: True
        self._forward: Optional[Forward] = None
        self._forwarding: dict[int, asyncio.Task[None]] = {}  # report id -> its delivery, one at a time
        self.closing = False  # the sidecar stops: waiting for room is over
        # worker id -> where its work is (its worktree's branch), for the assigning agent
        self.describe_work: Callable[[str], Optional[str]] = lambda worker_id: None

    def set_sink(self, sink: Callable[[Report], None], ready: Callable[[], bool] = lambda: True) -> None:
        """`sink(report)` gets every report once: the stored unsent ones now, then each new one.
        `ready()`: whether what the sink writes now leaves the process at once (not buffered)."""
        self._sink = sink
        self._sink_ready = ready
        for report in self._reports.unsent():
            self._send(report)

    def set_forwarder(self, forward: Forward) -> None:
        """Reports go to `forward` instead of the editors (a node's go up to its orchestrator,
        hosts.node_reports). Each is marked sent only once `forward` has returned: a dropped link
        or a crash before that sends it again (the receiver takes each report id once), so none is
        lost in transit. The stored unsent ones go now."""
        if self._forward is not None:
            return
        self._forward = forward
        for report in self._reports.unsent():
            self._send(report)

    def _send(self, report: Report) -> None:
        if self._forward is not None:
            if report.report_id not in self._forwarding:
                task = asyncio.get_running_loop().create_task(self._deliver(self._forward, report))
                self._forwarding[report.report_id] = task
            return
        if self._sink is None:
            return  # stored: sent when an editor connects
        if not self._sink_ready():  # the editor is behind: a crash would lose what waits here
            asyncio.get_running_loop().call_later(SINK_WAIT_SECONDS, self._send, report)
            return
        # Marked sent right before it is written (same step of the event loop): never twice.
        if not self._reports.mark_sent(report.report_id):
            if not self._reports.is_sent(report.report_id):  # the disk is full: try again later
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self._send, report)
            return
        try:
            self._sink(report)
        except Exception:
            log.exception("report sink failed")

    async def _deliver(self, forward: Forward, report: Report) -> None:
        try:
            while True:
                try:
                    await forward(report)
                    break
                except Exception as exc:  # noqa: BLE001 - refused (a bug there, a full disk): kept, offered again
                    log.warning("report %s of worker %s not taken: %s", report.report_id, report.terminal_id, exc)
                    await asyncio.sleep(FORWARD_RETRY_SECONDS)
            # A full disk leaves it unsent: sent again after a restart, and taken once there.
            self._reports.mark_sent(report.report_id)
        finally:
            self._forwarding.pop(report.report_id, None)

    def record_task(self, worker_id: str, profile: str, message: str, caller_id: str | None, keep: bool, timeout: float) -> str:
        """Store a new worker's task and its assign in one transaction, before it is acknowledged:
        from then on a restarted sidecar runs it (or reports it failed). Returns the task's id."""
        with refusing_when_full(self._state_dir), transaction(self._messages.connection):
            task_id = self._messages.add(worker_id, message, None)
            self._agent_store.add_assign(
                AssignRecord(worker_id, caller_id, message, keep, time.time() + timeout, profile, task_id)
            )
        return task_id

    async def close_handoff(self, worker_id: str) -> None:
        """Take a handoff off the pending list (its caller gets the answer as the reply), waiting
        for room if the disk is full: a successor must not report it again."""
        while True:
            try:
                self._agent_store.claim_assign(worker_id)
                return
            except Exception as exc:
                if not is_full(exc) or self.closing:
                    raise
                await asyncio.sleep(RETRY_SECONDS)

    async def report(self, outcome: WorkerOutcome, caller_id: str | None) -> bool:
        """Report how an assign ended: to the editor, the in-process subscribers (WorkerCompleted)
        and the assigning agent's inbox. False if it was reported already."""
        agent = outcome.agent
        error = outcome.error.message if outcome.error else None
        if not await self._settle(agent.terminal_id, agent.profile.name, outcome.status, outcome.output, error, caller_id):
            return False
        self._events.emit(WorkerCompleted(outcome))
        return True

    async def report_lost(self, assign: AssignRecord, reason: str) -> None:
        """Report an assign whose worker is not known any more (its record is gone) as failed."""
        await self._settle(assign.worker_id, assign.profile or "unknown", AgentStatus.EXITED, "", reason, assign.caller_id)

    async def report_from_host(
        self, key: str, worker_id: str, profile: str, status: AgentStatus, output: str, error: str | None,
        caller_id: str | None, worktree: str | None = None, work: str | None = None,
    ) -> bool:  # fmt: skip
        """The report of a worker of another host (`box1:ab12cd34`), sent by its node as `key`:
        stored and sent as a local worker's is (to the editors, and to `caller_id`, the agent that
        assigned it, if any), once per key. `worktree` (JSON) and `work`: its worktree, as its node
        described it. False: taken before (a re-send)."""
        return await self._settle(
            worker_id, profile, status, output, error, caller_id,
            claim=lambda: self._reports.take(key), worktree=worktree, work=work,
        )  # fmt: skip

    async def _settle(
        self, worker_id: str, profile: str, status: AgentStatus, output: str, error: str | None, caller_id: str | None,
        claim: Optional[Callable[[], bool]] = None, worktree: str | None = None, work: str | None = None,
    ) -> bool:  # fmt: skip
        """Take the assign off the pending list (`claim`: or what else says it is reported once)
        and store its reports in one transaction, then send them. False: reported already. A full
        disk makes it wait for room, never drop it."""
        reply: StoredMessage | None = None
        while True:
            try:
                with transaction(self._messages.connection):
                    if not (claim() if claim is not None else self._agent_store.claim_assign(worker_id)):
                        return False
                    report = self._reports.add(worker_id, profile, status.value, output, error, worktree)
                    if caller_id is not None:
                        reply = self._reply(worker_id, profile, output, error, caller_id, work)
                break
            except Exception as exc:
                if not is_full(exc) or self.closing:
                    raise
                log.warning("state dir full: the report of worker %s waits for room", worker_id)
                await asyncio.sleep(RETRY_SECONDS)
        self._logs.event("assign.end", worker_id, status=status.value, error=error)
        self._send(report)
        if reply is not None:
            self._queue_stored(reply)
        return True

    def _reply(
        self, worker_id: str, profile: str, output: str, error: str | None, caller_id: str, work: str | None = None
    ) -> StoredMessage:
        # A lead of another host names this machine's agents `main:1a2b3c4d` (hosts.team_calls).
        sender = f"{profile} worker {'main:' if ':' in caller_id and ':' not in worker_id else ''}{worker_id}"
        body = f"result of the task you assigned: {output}" if error is None else f"the task you assigned failed: {error}"
        work = work or self.describe_work(worker_id)
        if work:
            body += f"\n{work}"
        # Worker output is untrusted: it must not carry paste markers into the caller's input.
        text = f"[message from {sender}] " + body.replace("\x1b[200~", "").replace("\x1b[201~", "")
        return StoredMessage(self._messages.add(caller_id, text, sender), caller_id, sender, text, "queued", None)
