"""core.events: typed subscriptions, isolation of failing subscribers, unsubscribe handles."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fakes import make_agent

from cao_sidecar.core.events import EventSource, PromptChanged, StatusChanged, WorkerCompleted, WorkerOutcome
from cao_sidecar.core.status import AgentStatus as S


def test_subscribers_get_only_their_event_type_in_order(tmp_path: Path) -> None:
    source, seen = EventSource(), []
    agent = make_agent(tmp_path)
    source.subscribe(StatusChanged, lambda e: seen.append(("first", e.status)))
    source.subscribe(WorkerCompleted, lambda e: seen.append(("completed", e.outcome.output)))
    source.subscribe(StatusChanged, lambda e: seen.append(("second", e.status)))
    source.emit(StatusChanged(agent, None, S.STARTING))
    source.emit(WorkerCompleted(WorkerOutcome(agent, S.COMPLETED, "done")))
    assert seen == [("first", S.STARTING), ("second", S.STARTING), ("completed", "done")]


def test_a_failing_subscriber_is_logged_and_the_others_still_hear(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source, seen = EventSource(), []

    def broken(event: StatusChanged) -> None:
        raise RuntimeError("subscriber bug")

    source.subscribe(StatusChanged, broken)
    source.subscribe(StatusChanged, lambda e: seen.append(e.status))
    with caplog.at_level(logging.ERROR, logger="cao_sidecar.core.events"):
        source.emit(StatusChanged(make_agent(tmp_path), S.IDLE, S.PROCESSING))
        source.emit(StatusChanged(make_agent(tmp_path), S.PROCESSING, S.COMPLETED))
    assert seen == [S.PROCESSING, S.COMPLETED]
    assert sum("subscriber bug" in (r.exc_text or str(r.exc_info)) for r in caplog.records) == 2


def test_unsubscribe_handle_stops_delivery_and_is_idempotent(tmp_path: Path) -> None:
    source, seen = EventSource(), []
    agent = make_agent(tmp_path)
    handle = source.subscribe(StatusChanged, lambda e: seen.append(e.status))
    other = source.subscribe(StatusChanged, lambda e: seen.append("other"))
    source.emit(StatusChanged(agent, None, S.IDLE))
    handle()  # as a callable
    handle.close()  # twice: nothing happens
    source.emit(StatusChanged(agent, S.IDLE, S.PROCESSING))
    assert seen == [S.IDLE, "other", "other"]
    assert source.subscribers(StatusChanged) == 1
    other.close()
    assert source.subscribers(StatusChanged) == 0


def test_unsubscribing_during_delivery_skips_the_removed_subscriber(tmp_path: Path) -> None:
    """A connection that closes while an event is delivered (its handler unsubscribes another
    connection's subscription) must not have the removed one called for that event."""
    source, seen = EventSource(), []
    later = None

    def first(event: PromptChanged) -> None:
        seen.append("first")
        assert later is not None
        later.close()

    source.subscribe(PromptChanged, first)
    later = source.subscribe(PromptChanged, lambda e: seen.append("later"))
    agent = make_agent(tmp_path)
    from cao_sidecar.core.agent import PendingPrompt
    from cao_sidecar.providers.prompt import ScreenPrompt

    source.emit(PromptChanged(agent, PendingPrompt("x:1", ScreenPrompt(text="?"))))
    assert seen == ["first"]
