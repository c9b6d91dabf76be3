"""Asking the editor's user when an agent waits for an answer.

When an agent starts waiting (status `waiting_user_answer`) the sidecar sends the client a
`window/showMessageRequest` with the agent's question, one button per choice and "Open terminal".
A click on a choice is typed into the agent (Orchestrator.answer, with the prompt's id, so a
question answered meanwhile in the terminal or through cao/answer is not answered twice); "Open
terminal" becomes a `cao/openTerminal` notification. Clients with their own UI opt out with
`initializationOptions: {"askUser": false}`. Every request has a timeout: some clients never answer
(a headless Neovim waits for keys forever), some answer with an error; both mean "no answer".

Several clients may be asked about the same question (one asker per connection): the first
answer wins (the prompt's id), and once the question is no longer open (answered anywhere, or the
agent moved on) the requests still out are withdrawn with `$/cancelRequest`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any, Optional

from lsprotocol import types

from cao_sidecar import wire
from cao_sidecar.core import prompts
from cao_sidecar.core.agent import Agent, PendingPrompt
from cao_sidecar.core.errors import CaoError
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.settings import settings
from cao_sidecar.views import attach_command

if TYPE_CHECKING:
    from cao_sidecar.core.orchestrator import Orchestrator
    from cao_sidecar.editor.server import CaoLanguageServer

log = logging.getLogger(__name__)

OPEN_TERMINAL = "Open terminal"


def ask_timeout() -> float:
    return settings().ask_timeout


def ask_user_enabled(initialize_params: Any) -> bool:
    """False when the client's initializationOptions say `"askUser": false`."""
    if not isinstance(initialize_params, dict):
        return True
    options = initialize_params.get("initializationOptions")
    return not (isinstance(options, dict) and options.get("askUser") is False)


class UserAsker:
    """Asks the user about each new question of any agent, once."""

    def __init__(self, server: "CaoLanguageServer", core: "Orchestrator") -> None:
        self._server = server
        self._core = core
        self._asked: dict[str, str] = {}  # terminal id → id of the last prompt asked about
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: dict[str, tuple[str, asyncio.Task[None]]] = {}  # terminal id → (prompt id, its ask)

    def on_status(self, agent: Agent, previous: Optional[AgentStatus], status: AgentStatus) -> None:
        if status is not AgentStatus.WAITING_USER_ANSWER or agent.prompt is None:
            self._withdraw(agent.terminal_id, None)  # answered (here or elsewhere), or moved on
        if status is AgentStatus.WAITING_USER_ANSWER and agent.prompt is not None:
            self._ask_soon(agent, agent.prompt)
        elif status is AgentStatus.EXITED:
            self._asked.pop(agent.terminal_id, None)

    def on_prompt(self, agent: Agent, pending: PendingPrompt) -> None:
        self._withdraw(agent.terminal_id, pending.id)
        self._ask_soon(agent, pending)

    def _withdraw(self, terminal_id: str, unless_prompt: Optional[str]) -> None:
        """Cancel the ask still out about `terminal_id`'s question (unless it is about that prompt)."""
        open_ask = self._open.get(terminal_id)
        if open_ask is not None and open_ask[0] != unless_prompt:
            del self._open[terminal_id]
            open_ask[1].cancel()

    def _ask_soon(self, agent: Agent, pending: PendingPrompt) -> None:
        if self._asked.get(agent.terminal_id) == pending.id or pending.answered:
            return
        self._asked[agent.terminal_id] = pending.id
        task = asyncio.get_running_loop().create_task(self._ask(agent, pending.id))
        self._tasks.add(task)
        self._open[agent.terminal_id] = (pending.id, task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda done: self._forget(agent.terminal_id, done))

    def _forget(self, terminal_id: str, task: asyncio.Task[None]) -> None:
        if self._open.get(terminal_id, (None, None))[1] is task:
            del self._open[terminal_id]

    async def _ask(self, agent: Agent, prompt_id: str) -> None:
        await asyncio.sleep(prompts.ASK_AFTER)
        pending = prompts.still_open(agent, prompt_id)
        if pending is None:
            return
        question = pending.prompt
        message = f"{agent.profile.name} ({agent.terminal_id}) asks: {question.text}"
        if question.detail:
            message += f"\n{question.detail}"
        if not question.choices:
            message += "\n(answer in its terminal, or with cao/answer)"
        actions = [types.MessageActionItem(title=c.label) for c in question.choices]
        actions.append(types.MessageActionItem(title=OPEN_TERMINAL))
        params = types.ShowMessageRequestParams(type=types.MessageType.Info, message=message, actions=actions)
        msg_id = f"cao-ask-{uuid.uuid4().hex[:12]}"
        try:
            result = await asyncio.wait_for(
                self._server.protocol.send_request_async(types.WINDOW_SHOW_MESSAGE_REQUEST, params, msg_id=msg_id),
                ask_timeout(),
            )
        except asyncio.CancelledError:
            # Answered elsewhere (another client, the terminal, cao/answer): the client drops it.
            self._server.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
            raise
        except Exception as exc:  # noqa: BLE001 - timeout, client error, no support: no answer
            log.info("asking about %s's question got no answer: %s", agent.terminal_id, exc or type(exc).__name__)
            return
        title = getattr(result, "title", None)
        if not isinstance(title, str):
            return  # dismissed
        if title == OPEN_TERMINAL:
            self._server.notify(
                "cao/openTerminal",
                wire.OpenTerminalNotification(terminal_id=agent.terminal_id, attach_command=attach_command(self._core, agent)),
            )
            return
        try:
            await self._core.answer(agent.terminal_id, title, prompt_id)
        except CaoError as exc:
            log.info("the editor's answer to %s was not typed: %s", agent.terminal_id, exc.message)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
