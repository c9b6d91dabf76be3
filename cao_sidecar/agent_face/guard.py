"""Connection hygiene for the MCP listener: half-open connections cannot lock agents out.

The TCP port is reachable by every local user. uvicorn holds a connection that sends half a
request forever, so about a thousand of them used to exhaust the process's file descriptors and
the listener stopped accepting: agents could no longer call their tools. Here:

* a request (head and body) must arrive within REQUEST_SECONDS of its first byte (or of the
  connection), or the connection is closed;
* at most MAX_PENDING connections may be waiting for their request at once: a new one beyond
  that closes the oldest waiting one (an agent sends its request at once, so it is never the
  oldest waiting for long);
* the soft limit on open files is raised to the hard limit at start.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from typing import Any, ClassVar, Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

REQUEST_SECONDS = 10.0
MAX_PENDING = 256


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on every request and a cap on waiting connections."""

    # Connections waiting for (the rest of) a request, oldest first (one listener per process).
    waiting: ClassVar["OrderedDict[GuardedH11Protocol, None]"] = OrderedDict()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: Optional[asyncio.TimerHandle] = None
        super().connection_made(transport)
        self._arm()
        while len(self.waiting) > MAX_PENDING:
            oldest = next(iter(self.waiting))
            oldest._expire("too many connections waiting for a request")

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm()  # a new request begins: it has REQUEST_SECONDS to arrive whole
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # received whole (or the connection is failing anyway)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(REQUEST_SECONDS, self._expire, "request not received in time")
            self.waiting[self] = None

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.waiting.pop(self, None)

    def _expire(self, why: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            log.debug("closing an MCP connection: %s", why)
            self.transport.close()


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: room for many agents' connections."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.info("could not raise the open files limit: %s", exc)


def protocol_options() -> dict[str, Any]:
    """uvicorn.Config arguments for the guarded protocol."""
    return {"http": GuardedH11Protocol, "timeout_keep_alive": 5}
