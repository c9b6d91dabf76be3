"""Team activity of an ACP session as `session/update`s, and questions as permission requests.

Each worker a session's supervisor starts shows up as a tool call (`cao-<terminalId>`): pending
when it starts, in progress while it works (every status change is listed), completed or failed
when it is done, with its answer (a handoff's result, an assign's outcome) and, for a worker with a
git worktree, where its work is (branch, base, commits, files; raw output `worktree`). When any agent of the
session waits for an answer (status `waiting_user_answer`), the editor is asked with
`session/request_permission`; the chosen option is typed into the agent (Orchestrator.answer).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any, Callable, Optional

from acp import start_tool_call, text_block, tool_content, update_agent_thought_text, update_tool_call
from acp.schema import PermissionOption, PermissionOptionKind, ToolCallUpdate

from cao_sidecar.core import prompts
from cao_sidecar.core.errors import CaoError
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.settings import settings

if TYPE_CHECKING:
    from cao_sidecar.core.agent import Agent
    from cao_sidecar.core.orchestrator import Orchestrator, WorkerOutcome
    from cao_sidecar.acp_face.sessions import AcpSession

log = logging.getLogger(__name__)

PERMISSION_TIMEOUT = settings().acp_permission_timeout
# A question without choices on screen is asked as yes/no, typed as text.
FREE_TEXT_OPTIONS = (("yes", "Yes"), ("no", "No"))
_REJECTING = re.compile(r"(?i)^(no|skip|reject|deny|don't|do not|cancel|exit|back)\b")


STALLED_NOTE = "({who} is stalled: no output or events for a while; it goes on by itself when its CLI moves)"


def permission_options(choices: list[str]) -> list[tuple[str, str, PermissionOptionKind]]:
    """(option id, name, kind) for each choice of an agent's question (its menu, in order)."""
    if not choices:
        return [(oid, name, "allow_once" if oid == "yes" else "reject_once") for oid, name in FREE_TEXT_OPTIONS]
    return [
        (f"choice-{i}", label, "reject_once" if _REJECTING.match(label) else "allow_once") for i, label in enumerate(choices, 1)
    ]


class Updates:
    """One ordered stream of `session/update`s (a single pump task sends them in order)."""

    def __init__(self, send: Callable[[str, Any], Any]) -> None:
        self._send = send
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task: Optional[asyncio.Task[None]] = None

    def put(self, session_id: str, update: Any) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pump())
        self._queue.put_nowait((session_id, update))

    async def drain(self) -> None:
        """Wait until everything put so far was sent."""
        if self._task is not None:
            await self._queue.join()

    async def _pump(self) -> None:
        while True:
            session_id, update = await self._queue.get()
            try:
                await self._send(session_id, update)
            except Exception as exc:  # noqa: BLE001 - a gone client must not stop the pump
                log.debug("session/update not sent: %s", exc)
            finally:
                self._queue.task_done()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


class TeamReporter:
    """Listens to the core and reports each ACP session's agents into that session."""

    def __init__(
        self,
        core: "Orchestrator",
        updates: Updates,
        session_of: Callable[[str], Optional["AcpSession"]],
        request_permission: Callable[..., Any],
    ) -> None:
        self._core = core
        self._updates = updates
        self._session_of = session_of  # tmux session name → ACP session
        self._request_permission = request_permission
        self._lines: dict[str, list[str]] = {}  # worker terminal id → its status lines
        self._asking: dict[str, asyncio.Task[None]] = {}
        self._asked = 0
        core.add_status_listener(self.on_status)
        core.add_completed_listener(self.on_completed)

    # ---- core listeners ------------------------------------------------------------------------

    def on_status(self, agent: "Agent", previous: Optional[AgentStatus], status: AgentStatus) -> None:
        session = self._session_of(agent.session)
        if session is None:
            return
        if status is AgentStatus.WAITING_USER_ANSWER and agent.terminal_id not in self._asking:
            task = asyncio.get_running_loop().create_task(self._ask(session, agent))
            self._asking[agent.terminal_id] = task
            terminal_id = agent.terminal_id
            task.add_done_callback(lambda _t: self._asking.pop(terminal_id, None))
        if session.creating_supervisor and previous is None:
            session.supervisor_id = agent.terminal_id
        if agent.terminal_id == session.supervisor_id:
            if status is AgentStatus.STALLED:  # the prompt turn goes on: say why nothing comes
                self._updates.put(session.session_id, update_agent_thought_text(STALLED_NOTE.format(who="the supervisor")))
            return  # the supervisor's own turn is the prompt turn
        tool_id = f"cao-{agent.terminal_id}"
        lines = self._lines.setdefault(agent.terminal_id, [])
        lines.append(f"status: {status.value}")
        if status is AgentStatus.STALLED:
            lines.append(STALLED_NOTE.format(who="this worker"))
        title = f"{agent.profile.name} worker {agent.terminal_id}"
        if previous is None:
            self._updates.put(
                session.session_id,
                start_tool_call(
                    tool_id,
                    title,
                    kind="other",
                    status="pending",
                    content=self._content(lines),
                    raw_input={"terminalId": agent.terminal_id, "profile": agent.profile.name},
                ),
            )
            return
        if status is AgentStatus.EXITED:
            failed = previous in (AgentStatus.ERROR, AgentStatus.STARTING)
            if agent.last_answer:
                lines.append(f"result: {agent.last_answer}")
            worktree = self._work_lines(agent.terminal_id, lines)
            self._updates.put(
                session.session_id,
                update_tool_call(
                    tool_id,
                    status="failed" if failed else "completed",
                    content=self._content(lines),
                    raw_output={
                        "status": previous.value if previous else None,
                        "output": agent.last_answer,
                        "worktree": worktree,
                    },
                ),
            )
            self._lines.pop(agent.terminal_id, None)
            return
        self._updates.put(session.session_id, update_tool_call(tool_id, status="in_progress", content=self._content(lines)))

    def on_completed(self, outcome: "WorkerOutcome") -> None:
        """An assign ended: its worker's tool call gets the result."""
        agent = outcome.agent
        session = self._session_of(agent.session)
        if session is None or agent.terminal_id == session.supervisor_id:
            return
        lines = self._lines.setdefault(agent.terminal_id, [])
        ok = outcome.error is None
        lines.append(f"result: {outcome.output}" if ok else f"failed: {outcome.error.message}")  # type: ignore[union-attr]
        worktree = self._work_lines(agent.terminal_id, lines)
        self._updates.put(
            session.session_id,
            update_tool_call(
                f"cao-{agent.terminal_id}",
                status="completed" if ok else "failed",
                content=self._content(lines),
                raw_output={"status": outcome.status.value, "output": outcome.output, "worktree": worktree},
            ),
        )

    def _work_lines(self, terminal_id: str, lines: list[str]) -> Optional[dict[str, Any]]:
        """Where a worker with a worktree left its work: a line for people, the info for clients."""
        info = self._core.worktrees.stored_info(terminal_id)
        if info is not None:
            text = self._core.worktrees.describe(terminal_id) or ""
            lines.append(f"work: {text}")
        return info

    @staticmethod
    def _content(lines: list[str]) -> list[Any]:
        return [tool_content(text_block("\n".join(lines[-40:])))]

    # ---- questions -----------------------------------------------------------------------------

    async def _ask(self, session: "AcpSession", agent: "Agent") -> None:
        self._asked += 1
        if agent.prompt is None:
            return
        prompt_id = agent.prompt.id
        await asyncio.sleep(prompts.ASK_AFTER)
        pending = prompts.still_open(agent, prompt_id)
        if pending is None:
            return
        question = pending.prompt.text
        choices = [c.label for c in pending.prompt.choices]
        options = permission_options(choices)
        tool_call = ToolCallUpdate(
            tool_call_id=f"cao-ask-{agent.terminal_id}-{self._asked}",
            title=f"{agent.profile.name} ({agent.terminal_id}) asks: {question}",
            kind="other",
            status="pending",
            content=[tool_content(text_block(pending.prompt.detail or agent.screen_tail(12)))],
            raw_input={"terminalId": agent.terminal_id, "question": question, "choices": choices, "promptId": pending.id},
        )
        try:
            response = await asyncio.wait_for(
                self._request_permission(
                    session_id=session.session_id,
                    tool_call=tool_call,
                    options=[PermissionOption(option_id=oid, name=name, kind=kind) for oid, name, kind in options],
                ),
                PERMISSION_TIMEOUT,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - no answer: the agent keeps waiting (tmux window)
            log.info("permission request for %s got no answer: %s", agent.terminal_id, exc)
            return
        outcome = getattr(response, "outcome", None)
        if getattr(outcome, "outcome", None) != "selected":
            return  # cancelled: the prompt turn is being cancelled anyway
        answer = {oid: name for oid, name, _ in options}.get(outcome.option_id)  # type: ignore[union-attr]
        if answer is None:
            log.warning("permission answer with an unknown option %r", outcome.option_id)  # type: ignore[union-attr]
            return
        try:
            await self._core.answer(agent.terminal_id, answer, pending.id)
        except CaoError as exc:
            log.info("could not answer %s: %s", agent.terminal_id, exc.message)

    def close(self) -> None:
        for task in list(self._asking.values()):
            task.cancel()
