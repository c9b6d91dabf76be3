"""Per-agent inbox: input for an agent waits until it can take it, then goes in, in order, once.

Every task and message for an existing agent goes through its inbox, so two callers can never
type into the same prompt at the same time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Awaitable, Callable, Optional

import attrs

from cao_sidecar.core.agent import Agent, Turn
from cao_sidecar.storage.messages import MessageStore, StoredMessage

log = logging.getLogger(__name__)

FULL_DISK_RETRY_SECONDS = 0.5  # a message waits this long between tries to record its typing


@attrs.define(eq=False)
class Delivery:
    text: str
    message_id: str
    sender: Optional[str] = None
    # Resolved with the Turn the text started once it has been typed in, or with an exception.
    sent: "asyncio.Future[Turn]" = attrs.field(factory=lambda: asyncio.get_running_loop().create_future())


SendInput = Callable[[Agent, str], Awaitable[Turn]]
# Gets the notice stored for the sending agent when a message of its fails (MessageStore.mark_failed).
OnFailed = Callable[[StoredMessage], None]


class Inbox:
    def __init__(self, agent: Agent, send_input: SendInput, store: MessageStore, on_failed: OnFailed) -> None:
        self._agent = agent
        self._send_input = send_input
        self._store = store
        self._on_failed = on_failed
        self._queue: deque[Delivery] = deque()
        self._worker: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def can_deliver_now(self) -> bool:
        return not self._queue and self._worker is None and not self._agent.busy and self._agent.alive

    def put(self, text: str, sender: Optional[str] = None, sender_id: Optional[str] = None) -> Delivery:
        """Store the text durably, then queue it. Returns once stored (not delivered)."""
        delivery = Delivery(text, self._store.add(self._agent.terminal_id, text, sender, sender_id), sender)
        self._queue.append(delivery)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())
        return delivery

    def put_stored(self, message_id: str, text: str, sender: Optional[str] = None, *, first: bool = False) -> Delivery:
        """Queue a message already in the store (a worker's task: `first`, before anything sent
        to the worker while it started)."""
        delivery = Delivery(text, message_id, sender)
        if first:
            self._queue.appendleft(delivery)
        else:
            self._queue.append(delivery)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())
        return delivery

    def restore(self, stored: list[StoredMessage]) -> None:
        """Queue messages a previous sidecar stored but never delivered, keeping their ids."""
        for message in stored:
            self._queue.append(Delivery(message.text, message.message_id, message.sender))
        if self._queue and self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def fail_all(self, exc: BaseException) -> None:
        while self._queue:
            delivery = self._queue.popleft()
            self._fail(delivery.message_id, str(exc))
            if not delivery.sent.done():
                delivery.sent.set_exception(exc)
                delivery.sent.exception()  # mark retrieved: nobody may be waiting
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None

    def _fail(self, message_id: str, error: str) -> None:
        notice = self._store.mark_failed(message_id, error)
        if notice is not None:
            self._on_failed(notice)

    async def _record_typing(self, message_id: str) -> None:
        """Record that `message_id` is being typed; while a full disk refuses, wait (nothing
        tells us when there is room again). An agent that exits meanwhile gets nothing."""
        while True:
            if self._store.mark_typing(message_id) or not self._agent.alive:
                return
            await asyncio.sleep(FULL_DISK_RETRY_SECONDS)

    async def _run(self) -> None:
        agent = self._agent
        try:
            while self._queue:
                while agent.alive and agent.busy:
                    if agent.turn is not None:
                        await asyncio.wait({agent.turn.done})
                    else:
                        await agent.wait_change(None)
                if not self._queue:
                    break
                delivery = self._queue.popleft()
                if delivery.sent.cancelled():
                    self._fail(delivery.message_id, "cancelled before delivery")
                    continue
                # Durable before the first key: a restart then checks the screen before typing
                # it again (recovery.settle_typing), so a crash mid-typing types nothing twice.
                # A full disk refuses the record: the message waits at the head of the queue.
                await self._record_typing(delivery.message_id)
                try:
                    turn = await self._send_input(agent, delivery.text)
                except Exception as exc:  # noqa: BLE001 - the caller gets it through the future
                    self._fail(delivery.message_id, str(exc))
                    if not delivery.sent.done():
                        delivery.sent.set_exception(exc)
                        delivery.sent.exception()
                    continue
                self._store.mark_delivered(delivery.message_id)
                if not delivery.sent.done():
                    delivery.sent.set_result(turn)
                await asyncio.wait({turn.done})
                self._store.flush_pending()
        finally:
            if self._worker is asyncio.current_task():
                self._worker = None
