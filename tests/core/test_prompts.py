"""core.prompts: a question's id, its refresh while drawn, and one answer per question."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import WAITING, make_agent

from cao_sidecar.core import prompts
from cao_sidecar.core.errors import InvalidRequest, PromptGone
from cao_sidecar.core.status import AgentStatus as S
from cao_sidecar.mock_agent import screen as glyphs

OTHER = f"{glyphs.PROMPT} task\n{glyphs.QUESTION_HEAD} Delete the branch?\n{glyphs.ASK_PROMPT} "


def waiting_agent(tmp_path: Path, screen: str = WAITING):
    agent = make_agent(tmp_path)
    agent.apply(S.WAITING_USER_ANSWER, screen)
    prompts.on_status(agent, S.WAITING_USER_ANSWER)
    return agent


def test_a_question_gets_an_id_and_its_choices(tmp_path: Path) -> None:
    agent = waiting_agent(tmp_path)
    assert agent.prompt is not None and agent.prompt.id == "aaaa0001:1"
    assert agent.prompt.prompt.text == "Proceed?"
    assert [c.label for c in agent.prompt.prompt.choices] == ["Yes", "No"]
    assert not prompts.refresh(agent)  # same question, same screen: no change


def test_one_answer_per_question(tmp_path: Path) -> None:
    agent = waiting_agent(tmp_path)
    pending, choice = prompts.take(agent, "yes", "aaaa0001:1")
    assert pending.answered and choice is not None and choice.text == "y"
    with pytest.raises(PromptGone):
        prompts.take(agent, "no", "aaaa0001:1")
    with pytest.raises(PromptGone):
        prompts.take(agent, "no", None)


def test_a_new_question_after_an_answer_is_a_new_prompt(tmp_path: Path) -> None:
    agent = waiting_agent(tmp_path)
    prompts.take(agent, "yes", None)
    agent.screen = OTHER
    assert prompts.refresh(agent)
    assert agent.prompt is not None and agent.prompt.id == "aaaa0001:2" and not agent.prompt.answered
    with pytest.raises(PromptGone) as caught:
        prompts.take(agent, "yes", "aaaa0001:1")  # a late click on the old question
    assert caught.value.data.get("currentPromptId") == "aaaa0001:2"


def test_an_unanswered_question_redrawn_keeps_its_id(tmp_path: Path) -> None:
    agent = waiting_agent(tmp_path)
    agent.screen = OTHER
    assert prompts.refresh(agent)  # its content changed (still drawn), the same prompt
    assert agent.prompt is not None and agent.prompt.id == "aaaa0001:1" and agent.prompt.prompt.text == "Delete the branch?"


def test_answers_outside_the_choices_and_without_a_question_are_refused(tmp_path: Path) -> None:
    agent = waiting_agent(tmp_path)
    with pytest.raises(InvalidRequest):
        prompts.take(agent, "maybe", None)
    assert agent.prompt is not None and not agent.prompt.answered  # a refused answer uses nothing up
    prompts.on_status(agent, S.PROCESSING)
    assert agent.prompt is None and prompts.still_open(agent, "aaaa0001:1") is None
    with pytest.raises(InvalidRequest):
        prompts.take(agent, "yes", None)


def test_a_reader_bug_does_not_stop_status_reporting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = make_agent(tmp_path)
    agent.apply(S.WAITING_USER_ANSWER, WAITING)

    def broken(screen: str):
        raise ValueError("reader bug")

    monkeypatch.setattr(agent.provider, "read_prompt", broken)
    prompts.on_status(agent, S.WAITING_USER_ANSWER)
    assert agent.prompt is not None and agent.prompt.prompt.text == "needs your answer"
