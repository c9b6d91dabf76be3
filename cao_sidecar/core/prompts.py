"""The question an agent waits on, kept on the agent while its status is `waiting_user_answer`.

A prompt gets an id when the agent starts waiting (`<terminalId>:<n>`). While the agent keeps
waiting, each new screen is read again: a question still being drawn (the event came before the
screen) refines the same prompt; a different question after an answer is a new prompt. An answer is
accepted once per prompt, so an editor's late click cannot type into the next question.
"""

from __future__ import annotations

import logging
from typing import Optional

from cao_sidecar.core.agent import Agent, PendingPrompt
from cao_sidecar.core.errors import InvalidRequest, PromptGone
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import prompt as screen_prompts
from cao_sidecar.providers.prompt import Choice, ScreenPrompt

log = logging.getLogger(__name__)

# Faces ask the user about a question only if it is still there this long after it appeared: a
# question the sidecar answers itself (a CLI's start-up dialog) is gone by then, and a menu the CLI
# was still drawing (its event came before its screen) has its choices.
ASK_AFTER = 0.3


def read(agent: Agent) -> ScreenPrompt:
    """What the agent's screen asks, by its provider's reader (or the generic one)."""
    try:
        return agent.provider.read_prompt(agent.screen)
    except Exception:  # a reader bug must not stop status reporting
        log.exception("reading the prompt of %s failed", agent.terminal_id)
        return ScreenPrompt(text="needs your answer")


def on_status(agent: Agent, status: AgentStatus) -> None:
    """Start a prompt when the agent starts waiting; drop it when it stops."""
    if status is AgentStatus.WAITING_USER_ANSWER:
        _new(agent, read(agent))
    else:
        agent.prompt = None


def refresh(agent: Agent) -> bool:
    """Read the screen again while the agent waits. True when the prompt changed (its content, or
    a new prompt because the shown question changed after an answer)."""
    if agent.status is not AgentStatus.WAITING_USER_ANSWER:
        return False
    current = agent.prompt
    seen = read(agent)
    if current is None:
        _new(agent, seen)
        return True
    if seen.same_as(current.prompt):
        return False
    if current.answered:
        _new(agent, seen)
    else:
        current.prompt = seen
    return True


def _new(agent: Agent, seen: ScreenPrompt) -> None:
    agent.prompts_seen += 1
    agent.prompt = PendingPrompt(id=f"{agent.terminal_id}:{agent.prompts_seen}", prompt=seen)


def still_open(agent: Agent, prompt_id: str) -> Optional[PendingPrompt]:
    """The agent's prompt if it is still `prompt_id`, unanswered, and the agent still waits."""
    pending = agent.prompt
    if agent.status is not AgentStatus.WAITING_USER_ANSWER or pending is None:
        return None
    if pending.id != prompt_id or pending.answered:
        return None
    return pending


def take(agent: Agent, answer: str, prompt_id: Optional[str]) -> tuple[PendingPrompt, Optional[Choice]]:
    """Check an answer for the agent's current prompt and mark the prompt answered. Returns the
    prompt and the choice the answer names (None: free text, for a prompt without choices)."""
    pending = agent.prompt
    if agent.status is not AgentStatus.WAITING_USER_ANSWER or pending is None:
        if prompt_id is not None:
            raise PromptGone("that question is no longer waiting for an answer", terminalId=agent.terminal_id, promptId=prompt_id)
        raise InvalidRequest(f"agent is not waiting for an answer (status {agent.status.value})", field="terminalId")
    if prompt_id is not None and prompt_id != pending.id:
        raise PromptGone(
            "that question is no longer waiting for an answer (the agent now asks another one)",
            terminalId=agent.terminal_id,
            promptId=prompt_id,
            currentPromptId=pending.id,
        )
    if pending.answered:
        raise PromptGone("that question was already answered", terminalId=agent.terminal_id, promptId=pending.id)
    choice = screen_prompts.match_choice(pending.prompt, answer)
    if choice is None and pending.prompt.choices:
        labels = ", ".join(repr(c.label) for c in pending.prompt.choices)
        raise InvalidRequest(f"answer must be one of the choices: {labels}", field="answer")
    pending.answered = True
    return pending, choice
