"""Handoffs that outlive the lead's MCP tool-call timeout.

A lead CLI gives up on a tool call after its own timeout (Codex: 600 s by default) and the answer
of a long handoff would be lost. So an agent's handoff runs as a task held here: the tool call
waits for it up to a configured time (settings: CAO_HANDOFF_REPLY_AFTER), sending progress while
it waits (a no-op unless the caller gave a progressToken), and then answers with a ticket. The
lead collects the answer with `wait_for_result(ticket)`; if nobody is waiting when it arrives, it
is also delivered into the lead's inbox, so it is never lost.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from typing import Awaitable, Callable, Generic, Optional, TypeVar

import attrs

log = logging.getLogger(__name__)

R = TypeVar("R")
Progress = Callable[[float, str], Awaitable[None]]
KEEP_DONE = 200  # collected or delivered tickets kept for late collects, per server


@attrs.define(eq=False)
class Ticket(Generic[R]):
    id: str
    lead_id: str
    task: "asyncio.Task[R]"
    worker: Optional[str] = None  # the worker's terminal id, once started
    handed_out: bool = False  # the lead got the ticket instead of the answer
    waiters: int = 0
    delivered: bool = False


class HandoffTickets(Generic[R]):
    """The running and finished handoffs of one MCP server, by ticket id.

    `deliver(ticket, result_or_error)` is called once for a handed-out ticket whose work finishes
    while nobody waits for it (the answer goes to the lead's inbox)."""

    def __init__(self, deliver: Callable[["Ticket[R]", "R | BaseException"], Awaitable[None]]) -> None:
        self._deliver = deliver
        self._tickets: dict[str, Ticket[R]] = {}
        self._order = itertools.count()
        self._deliveries: set[asyncio.Future[None]] = set()  # held so a running delivery is not collected

    def start(self, lead_id: str, work: Awaitable[R]) -> Ticket[R]:
        ticket_id = f"h-{next(self._order)}-{secrets.token_hex(3)}"
        task = asyncio.ensure_future(work)
        ticket: Ticket[R] = Ticket(ticket_id, lead_id, task)
        self._tickets[ticket_id] = ticket
        task.add_done_callback(lambda _t: self._finished(ticket))
        return ticket

    def find(self, ticket_id: str, lead_id: str) -> Optional[Ticket[R]]:
        """A ticket of this lead (another lead's ticket is not found)."""
        ticket = self._tickets.get(ticket_id)
        return ticket if ticket is not None and ticket.lead_id == lead_id else None

    async def wait(self, ticket: Ticket[R], seconds: float, progress: Progress, every: float) -> Optional[R]:
        """The work's result (or its exception raised) within `seconds`, else None (still running);
        `progress(elapsed, text)` every `every` seconds meanwhile. A cancelled caller does not
        cancel the work."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        ticket.waiters += 1
        try:
            while not ticket.task.done():
                left = seconds - (loop.time() - start)
                if left <= 0:
                    ticket.handed_out = True
                    return None
                await asyncio.wait({ticket.task}, timeout=min(every, left))
                if not ticket.task.done():
                    elapsed = loop.time() - start
                    worker = f" (worker {ticket.worker})" if ticket.worker else ""
                    try:
                        await progress(elapsed, f"handoff {ticket.id}{worker} still running after {elapsed:.0f} s")
                    except Exception:  # a caller gone away: the work goes on
                        log.debug("progress for %s not sent", ticket.id, exc_info=True)
        except asyncio.CancelledError:
            # The caller gave up (its own tool timeout, a dropped stream): nobody got the
            # answer from this call, so it goes to the lead's inbox when it comes.
            ticket.handed_out = True
            raise
        finally:
            ticket.waiters -= 1
        ticket.delivered = True  # the lead got the answer from this call
        return ticket.task.result()

    def _finished(self, ticket: Ticket[R]) -> None:
        if ticket.task.cancelled() or not ticket.handed_out or ticket.waiters or ticket.delivered:
            self._forget_old()
            return
        ticket.delivered = True
        outcome: R | BaseException = ticket.task.exception() or ticket.task.result()
        delivery = asyncio.ensure_future(self._deliver_logged(ticket, outcome))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)
        self._forget_old()

    async def _deliver_logged(self, ticket: Ticket[R], outcome: "R | BaseException") -> None:
        try:
            await self._deliver(ticket, outcome)
        except Exception:  # the lead has gone: the answer stays collectable here
            log.warning("the answer of handoff %s could not be delivered to %s", ticket.id, ticket.lead_id, exc_info=True)

    def _forget_old(self) -> None:
        done = [t for t in self._tickets.values() if t.task.done()]
        for ticket in done[: max(0, len(done) - KEEP_DONE)]:
            self._tickets.pop(ticket.id, None)
