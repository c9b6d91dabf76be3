"""The turn machine on an Agent: Turn.observe, Agent.apply / apply_event / mark_exited and the
Transition each returns. Pure: no tmux, no process, no store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fakes import BUSY, IDLE, completed, make_agent, typed

from cao_sidecar.core.agent import NO_CHANGE, Transition, Turn
from cao_sidecar.core.status import BUSY as BUSY_STATUSES
from cao_sidecar.core.status import SCREEN_END, TURN_END
from cao_sidecar.core.status import AgentStatus as S


def test_status_sets() -> None:
    assert TURN_END == {S.COMPLETED, S.ERROR, S.EXITED}
    assert SCREEN_END == {S.COMPLETED, S.ERROR, S.IDLE}
    assert BUSY_STATUSES == {S.PROCESSING, S.STALLED, S.WAITING_USER_ANSWER}
    assert all(s.accepts_input for s in SCREEN_END) and not S.EXITED.accepts_input


async def test_a_stale_end_screen_does_not_end_a_new_turn(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    agent.apply(S.COMPLETED, completed("old answer"))
    turn = agent.begin_turn("task")
    # The screen still shows the previous answer: no change at all, and the turn goes on.
    assert agent.apply(S.COMPLETED, completed("old answer")) == NO_CHANGE
    assert agent.turn is turn and agent.status is S.COMPLETED
    # Busy, then done: the turn ends with the new screen.
    assert agent.apply(S.PROCESSING, BUSY) == Transition(S.COMPLETED, None)
    transition = agent.apply(S.COMPLETED, completed("new answer"))
    assert transition.previous is S.PROCESSING
    assert transition.finished is not None and transition.finished.status is S.COMPLETED
    assert transition.finished.screen == completed("new answer")


async def test_a_changed_end_screen_ends_a_turn_never_seen_busy(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    agent.apply(S.IDLE, IDLE)
    agent.begin_turn("task")
    transition = agent.apply(S.COMPLETED, completed("fast"))  # faster than any busy screen
    assert transition.finished is not None and transition.previous is S.IDLE


async def test_the_turns_own_text_on_the_input_line_is_not_the_end(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    agent.apply(S.IDLE, IDLE)
    agent.begin_turn("task")
    assert agent.apply(S.IDLE, typed("task")) == NO_CHANGE  # pasted, Enter not taken yet
    agent.apply(S.PROCESSING, BUSY)
    # Back at an empty prompt after working, without an answer marker: over, as completed.
    transition = agent.apply(S.IDLE, IDLE)
    assert transition.finished is not None and transition.finished.status is S.COMPLETED
    assert agent.status is S.COMPLETED


def test_turn_shows_input_compares_words_and_last_line() -> None:
    turn = Turn.__new__(Turn)  # no future needed for the comparison
    turn.text = "first line\nsecond   line"
    assert turn.shows_input("second line")
    assert turn.shows_input("first line second line")
    assert not turn.shows_input("first line")
    assert not turn.shows_input("   ")
    assert not turn.shows_input(None)


async def test_an_event_ends_the_turn_and_a_later_screen_does_not_end_it_again(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, provider="claude_code")
    agent.apply(S.IDLE, "❯ ")
    agent.begin_turn("task")
    assert agent.apply_event(S.PROCESSING) == Transition(S.IDLE, None)
    ended = agent.apply_event(S.COMPLETED, answer="exact answer")
    assert ended.finished is not None and ended.finished.answer == "exact answer"
    agent.turn = None  # what the supervisor's commit does with a finished turn
    # The hook's Stop comes again (a duplicate) and the screen follows: nothing ends twice.
    assert agent.apply_event(S.COMPLETED, answer="exact answer").finished is None
    assert agent.apply(S.COMPLETED, "done").finished is None


async def test_a_late_event_of_an_earlier_turn_is_ignored(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, provider="claude_code")
    agent.apply(S.COMPLETED, "earlier")
    turn = agent.begin_turn("task")
    assert agent.apply_event(S.COMPLETED, answer="earlier answer") == NO_CHANGE
    assert agent.turn is turn and not turn.seen_busy
    # Unless the event names this turn's input.
    confirmed = agent.apply_event(S.COMPLETED, answer="this answer", confirmed=True)
    assert confirmed.finished is not None and confirmed.finished.answer == "this answer"


async def test_an_event_outside_a_turn_keeps_the_users_answer(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, provider="claude_code")
    agent.apply(S.IDLE, "❯ ")
    assert agent.apply_event(S.COMPLETED, answer="typed by the user") == Transition(S.IDLE, None)
    assert agent.last_answer == "typed by the user"


async def test_events_overrule_the_screen_during_a_turn_and_shortly_after(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, provider="claude_code")
    covered = agent.provider.event_statuses
    assert S.COMPLETED in covered
    assert not agent.overruled_by_events(S.COMPLETED)  # no event yet: the screen decides
    agent.apply_event(S.IDLE)
    assert agent.overruled_by_events(S.COMPLETED)  # just after an event
    assert agent.overruled_by_events(S.IDLE)  # idle counts as completed
    assert not agent.overruled_by_events(S.WAITING_USER_ANSWER)  # dialogs always count
    assert not agent.overruled_by_events(S.EXITED)
    agent.event_at -= 60  # long after the event, outside a turn: the screen counts again
    assert not agent.overruled_by_events(S.COMPLETED)
    agent.begin_turn("task")
    assert agent.overruled_by_events(S.COMPLETED)  # during a turn, events own the end


async def test_a_provider_without_events_is_never_overruled(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)  # mock: event_statuses is empty
    agent.events_active = True
    agent.begin_turn("task")
    assert not agent.overruled_by_events(S.COMPLETED)


async def test_exit_ends_the_turn_once_and_wakes_waiters(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    agent.apply(S.IDLE, IDLE)
    agent.begin_turn("task")
    waiter = asyncio.ensure_future(agent.wait_change(5))
    await asyncio.sleep(0)
    exited = agent.mark_exited()
    await asyncio.wait_for(waiter, 1)  # woken by the change, not by the timeout
    assert exited.previous is S.IDLE and exited.finished is not None and exited.finished.status is S.EXITED
    agent.turn = None
    assert agent.mark_exited() == NO_CHANGE
    assert agent.apply(S.COMPLETED, "after exit") == NO_CHANGE and agent.status is S.EXITED


async def test_interrupted_ends_only_an_open_turn(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    assert agent.interrupted() == NO_CHANGE
    agent.apply(S.PROCESSING, BUSY)
    agent.begin_turn("task")
    transition = agent.interrupted()
    assert transition.previous is None and transition.finished is not None
    assert transition.finished.status is S.ERROR
