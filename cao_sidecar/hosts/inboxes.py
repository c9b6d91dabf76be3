"""Messages for agents of other hosts: an assign's report for the agent on a host that asked.

An agent on box1 that assigns work to a worker on this machine (or on a third host) is its
caller `box1:ab12cd34`; the worker's report is stored for that receiver here, in the same
transaction that settles the assign (core.reporting), and stays queued in this machine's store
until the host's node took it (`cao/sendMessage` over the link, keyed by the message's id: a
re-send after a dropped link or a restart joins the first, so it is typed in once). A link that
is down keeps it waiting; each (re)connect sends what waits for that host. An agent that is
gone on the host fails the message, as a local receiver that exited does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Awaitable, Callable

from cao_sidecar import paths
from cao_sidecar.core.errors import CaoError
from cao_sidecar.hosts.config import split_terminal_id
from cao_sidecar.hosts.link import HostUnavailable
from cao_sidecar.storage.messages import MessageStore, StoredMessage

log = logging.getLogger(__name__)

# (host, method, params, key) -> the node's result
Call = Callable[[str, str, dict[str, Any], str], Awaitable[Any]]
# Keys a CLI would take as key presses (the message is typed in on the host); line breaks stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class RemoteInboxes:
    def __init__(self, messages: MessageStore, call: Call, background: Callable[[Awaitable[Any]], None]) -> None:
        self._messages = messages
        self._call = call
        self._background = background
        self._sending: set[str] = set()  # message ids on their way (one send each at a time)

    def accept(self, message: StoredMessage) -> None:
        """Send a stored message for `host:id` to its host (the core's queue_stored)."""
        if message.message_id not in self._sending:
            self._sending.add(message.message_id)
            self._background(self._send(message))

    def resend(self, host: str) -> None:
        """After a (re)connect to `host`: send what waits for its agents."""
        for message in self._messages.queued_on_host(host):
            self.accept(message)

    async def _send(self, message: StoredMessage) -> None:
        host, local_id = split_terminal_id(message.receiver)
        try:
            if host is None:
                raise CaoError(f"no host in the receiver {message.receiver!r}")
            params = {"terminalId": local_id, "message": _CONTROL.sub(" ", message.text)}
            await self._call(host, "cao/sendMessage", params, _key(message))
        except HostUnavailable as exc:  # kept queued: the next connect to the host sends it
            log.info("message %s for %s waits for its host: %s", message.message_id, message.receiver, exc.message)
            return
        except CaoError as exc:  # the agent is gone there (or the host is no longer configured)
            log.info("message %s for %s not delivered: %s", message.message_id, message.receiver, exc.message)
            self._messages.mark_failed(message.message_id, exc.message)
            return
        finally:
            self._sending.discard(message.message_id)
        self._messages.mark_delivered(message.message_id)


def _key(message: StoredMessage) -> str:
    """The send's key: the same for every re-send of this message, and not another
    orchestrator's (a node may serve two, each numbering its own messages)."""
    digest = hashlib.sha256(f"{message.receiver}\0{message.text}".encode()).hexdigest()[:16]
    return f"message-{message.message_id}-{digest}"


class ReportRoutes:
    """Which host agent a third host's worker reports to (box2:w -> box1:a), kept in a file of
    the state dir: the worker's report may come after an orchestrator restart (its node keeps
    it until a link takes it), and must still find its way to the agent that assigned it."""

    def __init__(self, path: Path, background: Callable[[Awaitable[Any]], None]) -> None:
        self._path = path
        self._background = background
        self._routes: dict[str, dict[str, str]] = {}  # worker -> {terminalId, session} of its caller
        self._lock = asyncio.Lock()

    def read(self) -> dict[str, dict[str, str]]:
        """The routes kept by an earlier run (blocking: run it off the loop)."""
        try:
            found = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(found, dict):
            return {}
        for worker, caller in found.items():
            if isinstance(caller, dict) and all(isinstance(caller.get(k), str) for k in ("terminalId", "session")):
                self._routes.setdefault(worker, {"terminalId": caller["terminalId"], "session": caller["session"]})
        return dict(self._routes)

    def add(self, worker: str, caller_id: str, session: str) -> None:
        self._routes[worker] = {"terminalId": caller_id, "session": session}
        self._background(self._write())

    def drop(self, worker: str) -> None:
        if self._routes.pop(worker, None) is not None:
            self._background(self._write())

    async def _write(self) -> None:
        async with self._lock:  # one write at a time, each of the routes as they are then
            text = json.dumps(self._routes)
            await asyncio.to_thread(paths.write_private_text, self._path, text)
