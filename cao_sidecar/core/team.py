"""The team: what faces and the flow scheduler do with agents (handoff, assign, messages,
answers, output), as policies over the agent supervisor (core.supervisor).

Every face (the editor's cao/* methods, the agents' MCP tools, ACP, the command line) calls these
methods; none of them talks to tmux or to providers directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Optional

from cao_sidecar.core import prompts
from cao_sidecar.core.agent import Agent
from cao_sidecar.core.errors import (
    AgentExited,
    AgentFailed,
    AgentTimeout,
    CaoError,
    InvalidRequest,
    TerminalError,
)
from cao_sidecar.core.events import EventSource, WorkerOutcome
from cao_sidecar.core.leads import Caller
from cao_sidecar.core.pool import WorkerPool
from cao_sidecar.core.recovery import adopt_agents
from cao_sidecar.core.reporting import AssignReports
from cao_sidecar.core.spec import WorkerSpec
from cao_sidecar.core.statedir import check_room, refusing_when_full
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.core.supervisor import READY_TIMEOUT, AgentSupervisor
from cao_sidecar.core.typed_text import text_for_agent
from cao_sidecar.storage.agents import AssignRecord
from cao_sidecar.terminal.tmux import PaneGone, TmuxError
from cao_sidecar.wire_types.agents import ASSIGN_TIMEOUT_SECONDS, HANDOFF_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

HANDOFF_TIMEOUT = HANDOFF_TIMEOUT_SECONDS
ASSIGN_TIMEOUT = ASSIGN_TIMEOUT_SECONDS


def check_agent_text(text: str, field: str) -> None:
    """Refuse text that could act as more than one input to an agent's terminal."""
    if "\x1b[200~" in text or "\x1b[201~" in text:
        raise InvalidRequest(
            f"field '{field}' contains a bracketed-paste marker (ESC [200~ or ESC [201~), which would let "
            "the rest of the text act as typed keys; remove it",
            field=field,
        )


class Team:
    def __init__(self, supervisor: AgentSupervisor, assigns: AssignReports, pool: Optional[WorkerPool] = None) -> None:
        self.supervisor = supervisor
        self.assigns = assigns
        self.pool = pool  # warm workers a handoff or assign takes first (core.pool)

    @property
    def events(self) -> EventSource:
        """Subscribe here: StatusChanged, PromptChanged, WorkerCompleted (core.events)."""
        return self.supervisor.events

    @property
    def default_cwd(self) -> str:
        return self.supervisor.default_cwd

    async def start(self) -> None:
        """Start tmux, then adopt the agents a previous sidecar left running (core.recovery)."""
        await self.supervisor.start()
        await adopt_agents(self.supervisor, self)

    async def close(self) -> None:
        """Stop watching. Agents keep running in tmux: they outlive the sidecar (failed ones'
        windows are removed first). Warm workers of the pool are stopped: they serve no one."""
        if self.pool is not None:
            await self.pool.close()
        await self.supervisor.finish_cleanups()
        self.assigns.closing = True
        await self.supervisor.close()

    # ---- queries ------------------------------------------------------------------------------

    def get_agent(self, terminal_id: str) -> Agent:
        return self.supervisor.get_agent(terminal_id)

    def resolve_target(self, target: str, session: str | None, *, same_session: bool = False) -> Agent:
        return self.supervisor.resolve_target(target, session, same_session=same_session)

    def list_agents(self, session: str | None = None, *, include_pooled: bool = False) -> list[Agent]:
        return self.supervisor.list_agents(session, include_pooled=include_pooled)

    def new_worker(self, spec: WorkerSpec) -> tuple[Agent, bool]:
        """A worker for one task: a warm one from the pool if it has one that fits (True: it is
        started, or starting: `pool.until_started`), else a new one, registered but not
        launched yet (False)."""
        warm = self.pool.take(spec) if self.pool is not None else None
        if warm is not None:
            return warm, True
        return self.supervisor.create(spec), False

    async def get_output(self, terminal_id: str, mode: str = "last") -> str:
        agent = self.get_agent(terminal_id)
        if mode == "full":
            if agent.alive and agent.pane_id is not None:
                try:
                    return await self.supervisor.tmux.capture(agent.pane_id, history=True)
                except TmuxError:
                    pass
            return agent.screen
        if agent.last_answer is not None:
            return agent.last_answer
        return await self.supervisor.read_answer(agent) or ""

    # ---- spawn and tasks ----------------------------------------------------------------------

    async def spawn(
        self,
        profile_name: str,
        *,
        provider: str | None = None,
        working_directory: str | None = None,
        session: str | None = None,
        name: str | None = None,
        ready_timeout: float = READY_TIMEOUT,
        worktree: bool | None = None,
        base_ref: str | None = None,
    ) -> Agent:
        spec = WorkerSpec(profile_name, provider, working_directory, session, name, worktree=worktree, base_ref=base_ref)
        return await self.supervisor.spawn(spec, ready_timeout=ready_timeout)

    async def terminate(self, terminal_id: str) -> None:
        await self.supervisor.terminate(terminal_id)

    async def run_turn(self, agent: Agent, text: str, timeout: float, task_id: str | None = None) -> str:
        """Give `agent` one task (through its inbox) and return its final answer. `task_id`: the
        task is in the message store already (an assign's, stored when it was acknowledged)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        inbox = self.supervisor.inbox_of(agent.terminal_id)
        if inbox is None:
            raise AgentExited("agent has exited", terminalId=agent.terminal_id, screenTail=agent.screen_tail())
        if task_id is not None:
            delivery = inbox.put_stored(task_id, text, first=True)
        else:
            with refusing_when_full(self.supervisor.state_dir):
                delivery = inbox.put(text)
        try:
            turn = await asyncio.wait_for(asyncio.shield(delivery.sent), timeout)
            result = await asyncio.wait_for(asyncio.shield(turn.done), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            delivery.sent.cancel()
            raise AgentTimeout(
                f"agent '{agent.profile.name}' did not finish within {timeout:g}s (status {agent.status.value})",
                terminalId=agent.terminal_id,
                screenTail=agent.screen_tail(),
            ) from None
        except asyncio.CancelledError:
            delivery.sent.cancel()
            raise
        if result.status is AgentStatus.EXITED:
            raise AgentExited(
                f"agent '{agent.profile.name}' exited during the task",
                terminalId=agent.terminal_id,
                screenTail=agent.screen_tail(),
            )
        if result.status is AgentStatus.ERROR:
            raise AgentFailed(
                f"agent '{agent.profile.name}' reported an error",
                terminalId=agent.terminal_id,
                screenTail=agent.screen_tail(),
            )
        answer = result.answer if result.answer is not None else await self.supervisor.read_answer(agent, result.screen)
        agent.last_answer = answer
        self.supervisor.stores.agents.set_last_answer(agent.terminal_id, answer)
        self.supervisor.stores.logs.event("answer", agent.terminal_id, text=answer)
        return answer

    async def handoff(
        self,
        message: str,
        *,
        profile: str | None = None,
        terminal_id: str | None = None,
        provider: str | None = None,
        working_directory: str | None = None,
        session: str | None = None,
        timeout: float = HANDOFF_TIMEOUT,
        keep: bool = False,
        on_agent: Callable[[Agent], None] | None = None,
        caller: Caller | None = None,
        worktree: bool | None = None,
        base_ref: str | None = None,
        model: str | None = None,
    ) -> tuple[Agent, str]:
        """Run one task to completion on a new worker (profile) or an existing agent (terminal_id).

        A worker started for an agent (`caller`) joins the caller's session and working directory.
        """
        if (profile is None) == (terminal_id is None):
            raise InvalidRequest("give exactly one of 'profile' or 'terminalId'", field="profile")
        if not message.strip():
            raise InvalidRequest("field 'message' must not be empty", field="message")
        check_agent_text(message, "message")
        if timeout <= 0:
            raise InvalidRequest("field 'timeoutSeconds' must be positive", field="timeoutSeconds")
        check_room(self.supervisor.state_dir)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        warm = False
        if profile is not None:
            new_worker = True
            spec = WorkerSpec(profile, provider, working_directory, session, worktree=worktree, base_ref=base_ref, model=model)
            agent, warm = self.new_worker(spec.joining(caller))
        else:
            assert terminal_id is not None
            new_worker = False
            agent = self.get_agent(terminal_id)
            if caller is agent:
                raise InvalidRequest("an agent cannot hand a task to itself", field="terminalId")
            if not agent.alive:
                raise AgentExited("agent has exited", terminalId=agent.terminal_id, screenTail=agent.screen_tail())
        if on_agent is not None:
            on_agent(agent)
        self.supervisor.stores.logs.event(
            "handoff.start",
            agent.terminal_id,
            profile=agent.profile.name,
            newWorker=new_worker,
            caller=caller.terminal_id if caller else None,
            message=message,
            warm=warm,
        )
        task_id: str | None = None
        if new_worker:
            # Recorded like an assign: if the sidecar dies mid-handoff, its successor still runs
            # the task, reports the answer (editor notification, caller's inbox) and tears the
            # worker down.
            try:
                task_id = self.assigns.record_task(
                    agent.terminal_id, agent.profile.name, message, caller.terminal_id if caller else None, keep, timeout
                )
            except BaseException:
                self.supervisor.spawn_background(self.supervisor.discard(agent))
                raise
        try:
            text_for_agent(agent.provider, message, "message")  # refused before anything starts
            if new_worker:
                try:
                    if warm and self.pool is not None:  # taken from the pool, perhaps still starting
                        await asyncio.wait_for(self.pool.until_started(agent), timeout)
                    else:
                        await asyncio.wait_for(self.supervisor.launch(agent, ready_timeout=min(READY_TIMEOUT, timeout)), timeout)
                except asyncio.TimeoutError:
                    raise AgentTimeout(
                        f"agent '{agent.profile.name}' was not ready within {timeout:g}s",
                        terminalId=agent.terminal_id,
                        screenTail=agent.screen_tail(),
                    ) from None
            answer = await self.run_turn(agent, message, max(0.001, deadline - loop.time()), task_id=task_id)
        except BaseException as exc:
            if self.supervisor.closing and isinstance(exc, asyncio.CancelledError):
                raise  # the sidecar stops: its successor follows the worker and reports it
            self.supervisor.stores.logs.event(
                "handoff.end",
                agent.terminal_id,
                ok=False,
                error=exc.message if isinstance(exc, CaoError) else type(exc).__name__,
            )
            if isinstance(exc, (asyncio.CancelledError, AgentTimeout)) and agent.alive and agent.turn is not None:
                await self.supervisor.interrupt(agent)
            if new_worker:
                await self.assigns.close_handoff(agent.terminal_id)  # the caller hears it as the answer
                if not keep and isinstance(exc, (asyncio.CancelledError, AgentTimeout)):
                    self.supervisor.spawn_cleanup(self.supervisor.teardown(agent))  # answered at once
                elif not keep:
                    await self.supervisor.clean_up(self.supervisor.teardown(agent))  # as a success is
            raise
        self.supervisor.stores.logs.event("handoff.end", agent.terminal_id, ok=True)
        await self.supervisor.worktrees.finish(agent.terminal_id)  # its work committed and summarised
        if new_worker:
            await self.assigns.close_handoff(agent.terminal_id)  # the caller gets the answer itself
        if new_worker and not keep and warm:
            # A warm worker's handoff is about speed: the answer goes now, the CLI's exit (a
            # moment more) follows in the background.
            self.supervisor.spawn_cleanup(self.supervisor.teardown(agent))
        elif new_worker and not keep:
            await self.supervisor.teardown(agent)
        return agent, answer

    def assign(
        self,
        message: str,
        *,
        profile: str,
        provider: str | None = None,
        working_directory: str | None = None,
        session: str | None = None,
        timeout: float = ASSIGN_TIMEOUT,
        keep: bool = True,
        caller: Caller | None = None,
        worktree: bool | None = None,
        base_ref: str | None = None,
        model: str | None = None,
    ) -> Agent:
        """Start a worker on `message` in the background; completion goes to the WorkerCompleted
        subscribers and, for an agent's assign, to that agent's inbox."""
        if not message.strip():
            raise InvalidRequest("field 'message' must not be empty", field="message")
        check_agent_text(message, "message")
        spec = WorkerSpec(profile, provider, working_directory, session, worktree=worktree, base_ref=base_ref, model=model)
        agent, warm = self.new_worker(spec.joining(caller))
        try:
            task_id = self.assigns.record_task(
                agent.terminal_id, agent.profile.name, message, caller.terminal_id if caller else None, keep, timeout
            )
        except BaseException:
            self.supervisor.spawn_background(self.supervisor.discard(agent))
            raise
        self.supervisor.stores.logs.event(
            "assign.start",
            agent.terminal_id,
            profile=profile,
            caller=caller.terminal_id if caller else None,
            message=message,
            warm=warm,
        )
        self.supervisor.spawn_background(
            self.run_assigned(
                agent, task_id, message, time.time() + timeout, keep, caller.terminal_id if caller else None, warm=warm
            )
        )
        return agent

    async def run_assigned(
        self,
        agent: Agent,
        task_id: str,
        message: str,
        deadline: float,
        keep: bool,
        caller_id: str | None,
        *,
        warm: bool = False,
    ) -> None:
        """Launch a new worker (unless `warm`: a ready one from the pool), give it its stored
        task, report how it ended. `deadline` is wall-clock."""
        outcome: WorkerOutcome
        try:
            text_for_agent(agent.provider, message, "message")  # refused before anything starts
            remaining = deadline - time.time()
            if remaining <= 0:
                raise AgentTimeout("the assigned task did not start in time", terminalId=agent.terminal_id)
            if warm and self.pool is not None:  # taken from the pool, perhaps still starting
                try:
                    await asyncio.wait_for(self.pool.until_started(agent), remaining)
                except asyncio.TimeoutError:
                    raise AgentTimeout("the assigned task did not start in time", terminalId=agent.terminal_id) from None
            else:
                await self.supervisor.launch(agent, ready_timeout=min(READY_TIMEOUT, remaining))
            answer = await self.run_turn(agent, message, max(0.001, deadline - time.time()), task_id=task_id)
            outcome = WorkerOutcome(agent, AgentStatus.COMPLETED, answer)
        except CaoError as exc:
            status = agent.status if agent.status in (AgentStatus.ERROR, AgentStatus.EXITED) else AgentStatus.ERROR
            outcome = WorkerOutcome(agent, status, agent.screen_tail(), exc)
        except Exception as exc:  # an acknowledged assign is reported whatever failed
            log.exception("assign on %s failed unexpectedly", agent.terminal_id)
            outcome = WorkerOutcome(
                agent,
                AgentStatus.ERROR,
                agent.screen_tail(),
                AgentFailed(f"the worker could not run the task: {exc}", terminalId=agent.terminal_id),
            )
        await self.report_assigned(outcome, caller_id, keep)

    async def report_assigned(self, outcome: WorkerOutcome, caller_id: str | None, keep: bool) -> None:
        """Report how an assign ended, exactly once (core.reporting); then tear the worker down
        unless it is kept."""
        await self.supervisor.worktrees.finish(outcome.agent.terminal_id)  # its work committed and summarised
        if await self.assigns.report(outcome, caller_id) and not keep and outcome.agent.terminal_id in self.supervisor.agents:
            await self.supervisor.teardown(outcome.agent)

    async def send_message(
        self,
        terminal_id: str,
        message: str,
        sender: str | None = None,
        sender_agent: Caller | None = None,
        *,
        relay: bool = False,
    ) -> tuple[str, str]:
        """Queue `message` for an agent; returns (message id, 'delivered' | 'queued').

        If it can never be delivered (the receiver exits first) the store marks it failed and a
        sending agent is told so in its own inbox, once (MessageStore.mark_failed), after a
        restart too.
        """
        agent = self.get_agent(terminal_id)
        if not agent.alive:
            raise AgentExited("agent has exited", terminalId=terminal_id, screenTail=agent.screen_tail())
        if not message:
            raise InvalidRequest("field 'message' must not be empty", field="message")
        text = f"[message from {sender}] {message}" if sender else message
        check_agent_text(text, "message")
        text = text_for_agent(agent.provider, text, "message", strict=not relay)
        check_room(self.supervisor.state_dir)
        inbox = self.supervisor.inbox_of(terminal_id)
        if inbox is None:  # discarded while we checked the text
            raise AgentExited("agent has exited", terminalId=terminal_id, screenTail=agent.screen_tail())
        immediate = inbox.can_deliver_now()
        with refusing_when_full(self.supervisor.state_dir):
            delivery = inbox.put(text, sender, sender_agent.terminal_id if sender_agent else None)
        self.supervisor.stores.logs.event("message", terminal_id, messageId=delivery.message_id, sender=sender, text=message)
        if immediate:
            await asyncio.shield(delivery.sent)  # raises if typing failed
            return delivery.message_id, "delivered"
        return delivery.message_id, "queued"

    async def answer(self, terminal_id: str, answer: str, prompt_id: Optional[str] = None) -> tuple[str, str]:
        """Answer the question an agent waits on (status waiting_user_answer), as its CLI expects:
        a choice's key (menu digit, shortcut letter) or its text and Enter; free text and Enter
        for a question without choices. Each question is answered once (prompt_id, when given,
        must still be the question shown). Returns (prompt id, what was typed, readable)."""
        agent = self.get_agent(terminal_id)
        if not agent.alive or agent.pane_id is None:
            raise AgentExited("agent has exited", terminalId=terminal_id, screenTail=agent.screen_tail())
        check_agent_text(answer, "answer")
        if "\n" in answer or "\r" in answer:
            raise InvalidRequest("an answer is one line (no line breaks)", field="answer")
        text_for_agent(agent.provider, answer, "answer")
        pending, choice = prompts.take(agent, answer, prompt_id)
        key = choice.key if choice is not None else None
        text = choice.text if choice is not None else answer
        typed = f"key {key}" if key is not None else f"{text!r} + Enter"
        self.supervisor.stores.logs.event("input", terminal_id, text=answer, answer=True, promptId=pending.id, typed=typed)
        try:
            if key is not None:
                await self.supervisor.tmux.send_keys(agent.pane_id, key)
            else:
                if text:
                    await self.supervisor.tmux.paste_text(agent.pane_id, text)
                await self.supervisor.tmux.send_keys(agent.pane_id, "Enter")
        except PaneGone as exc:
            raise AgentExited("agent has exited", terminalId=terminal_id, screenTail=agent.screen_tail()) from exc
        except ValueError as exc:
            pending.answered = False
            raise InvalidRequest(str(exc), field="answer") from exc
        except TmuxError as exc:
            pending.answered = False
            raise TerminalError(f"could not type into the agent: {exc}", terminalId=terminal_id) from exc
        return pending.id, typed

    async def report_lost(self, assign: AssignRecord, reason: str) -> None:
        """Report an assign whose worker is not known any more (its record is gone) as failed."""
        await self.assigns.report_lost(assign, reason)
