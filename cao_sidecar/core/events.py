"""One typed event source for what the core reports: status changes, prompts, finished assigns.

Faces subscribe per event type (an editor connection, the ACP face, the agent face, the flow
scheduler) and get a handle that unsubscribes them again: a daemon serving many connections drops
a connection's subscriptions when it closes. A subscriber that raises is logged; the others still
get the event.
"""

from __future__ import annotations

import logging
from typing import Callable, Generic, Optional, TypeVar

import attrs

from cao_sidecar.core.agent import Agent, PendingPrompt
from cao_sidecar.core.errors import CaoError
from cao_sidecar.core.status import AgentStatus

log = logging.getLogger(__name__)


@attrs.define
class WorkerOutcome:
    """How an assigned worker's task ended (its answer, or its screen's tail and the error)."""

    agent: Agent
    status: AgentStatus
    output: str
    error: Optional[CaoError] = None


@attrs.frozen
class StatusChanged:
    agent: Agent
    previous: Optional[AgentStatus]  # None: a new agent
    status: AgentStatus


@attrs.frozen
class PromptChanged:
    """A waiting agent's question changed on screen (a new status brings its prompt with StatusChanged)."""

    agent: Agent
    prompt: PendingPrompt


@attrs.frozen
class WorkerCompleted:
    """An assign ended (in this process; not again after a restart)."""

    outcome: WorkerOutcome


CoreEvent = StatusChanged | PromptChanged | WorkerCompleted
E = TypeVar("E", StatusChanged, PromptChanged, WorkerCompleted)


class Subscription(Generic[E]):
    """The handle `subscribe` returns: call it (or `close()`) to stop getting events; idempotent."""

    def __init__(self, source: "EventSource", kind: type[E], handler: Callable[[E], None]) -> None:
        self._source = source
        self.kind: type[E] = kind
        self.handler: Callable[[E], None] = handler
        self.active = True

    def close(self) -> None:
        if self.active:
            self.active = False
            self._source.unsubscribe(self)

    __call__ = close


class EventSource:
    def __init__(self) -> None:
        self._subscriptions: list[Subscription[StatusChanged] | Subscription[PromptChanged] | Subscription[WorkerCompleted]] = []

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Subscription[E]:
        subscription = Subscription(self, kind, handler)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[E]) -> None:
        subscription.active = False
        try:
            self._subscriptions.remove(subscription)
        except ValueError:
            pass

    def subscribers(self, kind: type[CoreEvent]) -> int:
        return sum(1 for s in self._subscriptions if s.kind is kind)

    def emit(self, event: CoreEvent) -> None:
        """Deliver `event` to its type's subscribers in subscription order. One that unsubscribes
        during delivery (its own or another's) is not called afterwards."""
        for subscription in list(self._subscriptions):
            if subscription.kind is not type(event) or not subscription.active:
                continue
            try:
                subscription.handler(event)  # type: ignore[arg-type]
            except Exception:  # one subscriber's bug must not silence the others
                log.exception("%s subscriber %r failed", type(event).__name__, subscription.handler)
