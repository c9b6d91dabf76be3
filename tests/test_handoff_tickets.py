"""Handoff tickets (cao_sidecar/handoff_tickets.py) in-process: a caller that gives up while the
work runs (its own tool timeout, a dropped SSE stream) does not lose the answer: it goes to the
lead's inbox when it comes. The end-to-end paths (ticket, wait_for_result, inbox, progress over
SSE) are in tests/test_long_handoff.py."""

from __future__ import annotations

import asyncio

import pytest

from cao_sidecar.handoff_tickets import HandoffTickets

pytestmark = pytest.mark.asyncio


async def test_a_cancelled_waiter_leaves_the_answer_to_the_inbox() -> None:
    delivered: list[tuple[str, object]] = []

    async def deliver(ticket, outcome) -> None:
        delivered.append((ticket.lead_id, outcome))

    async def no_progress(_elapsed: float, _text: str) -> None:
        return None

    tickets: HandoffTickets[str] = HandoffTickets(deliver)
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "late answer"

    ticket = tickets.start("lead-1", work())
    waiter = asyncio.ensure_future(tickets.wait(ticket, 30, no_progress, 0.05))
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    for _ in range(50):
        if delivered:
            break
        await asyncio.sleep(0.01)
    assert delivered == [("lead-1", "late answer")]
    assert tickets.find(ticket.id, "lead-1") is ticket  # still collectable
