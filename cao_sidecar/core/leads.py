"""Leads that are not agents: an MCP host's own agent leading a team from outside tmux.

An agent lead gets what is sent to it typed into its terminal (its Inbox). A host has no terminal:
what its workers send back (an assign's result, a message, a notice that its message failed) waits
in the message store under the host's lead id until the host reads it. Durable like every message:
a host that reconnects under the same id (its name) finds what arrived while it was away.
"""

from __future__ import annotations

import asyncio
import re
from typing import Callable, Optional, Protocol

import attrs

from cao_sidecar.storage.messages import MessageStore, StoredMessage

LEAD_PREFIX = "host-"  # agents' terminal ids are 8 hex digits: never taken for a lead's id
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")
MAX_NAME = 40


class Caller(Protocol):
    """Who asks the core for work (an Agent, or a HostLead): its work joins its session and
    directory, and results are reported to its id."""

    @property
    def terminal_id(self) -> str: ...
    @property
    def session(self) -> str: ...
    @property
    def working_directory(self) -> str: ...


@attrs.define(frozen=True)
class HostLead:
    """An MCP host connection leading a session. `terminal_id` is its lead id (the receiver of
    its messages): named so the core treats it like an assigning agent."""

    terminal_id: str
    session: str
    working_directory: str
    host_name: str

    @property
    def label(self) -> str:
        """How the host signs the messages it sends."""
        return f"lead {self.terminal_id}"


def lead_id_for(host_name: str) -> str:
    """A lead id from a host's name (its MCP clientInfo name, or what the user configured)."""
    slug = _NOT_NAME.sub("-", host_name.strip()).strip("-_").lower()[:MAX_NAME] or "mcp"
    return LEAD_PREFIX + slug


def is_lead_id(receiver: str) -> bool:
    return receiver.startswith(LEAD_PREFIX)


Listener = Callable[[StoredMessage], None]


class LeadMailboxes:
    """The message boxes of host leads. A connected host registers a listener (to hear of new
    messages at once); unread messages stay queued in the store either way."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store
        self._leads: dict[str, HostLead] = {}  # every lead seen by this process, connected or not
        self._listeners: dict[str, Listener] = {}
        self._arrived: dict[str, asyncio.Event] = {}

    def connect(self, lead: HostLead, listener: Listener) -> HostLead:
        """Register a connected lead; a taken id gets a suffix (two hosts of the same name)."""
        lead_id, n = lead.terminal_id, 2
        while lead_id in self._listeners:
            lead_id, n = f"{lead.terminal_id}-{n}", n + 1
        lead = attrs.evolve(lead, terminal_id=lead_id)
        self._leads[lead_id] = lead
        self._listeners[lead_id] = listener
        return lead

    def disconnect(self, lead_id: str) -> None:
        self._listeners.pop(lead_id, None)

    def connected(self, lead_id: str) -> bool:
        return lead_id in self._listeners

    def leads(self, session: Optional[str] = None) -> list[HostLead]:
        return [lead for lead in self._leads.values() if session is None or lead.session == session]

    def find(self, lead_id: str, session: str) -> Optional[HostLead]:
        lead = self._leads.get(lead_id)
        return lead if lead is not None and lead.session == session else None

    def accept(self, message: StoredMessage) -> bool:
        """Take a stored message for a lead (the core's queue_stored): it stays queued until read.
        False if the receiver is not a lead."""
        if not is_lead_id(message.receiver):
            return False
        self._announce(message)
        return True

    def put(self, lead_id: str, text: str, sender: Optional[str], sender_id: Optional[str]) -> StoredMessage:
        """Store a message for a lead (sent by an agent or another lead)."""
        message_id = self._store.add(lead_id, text, sender, sender_id)
        message = StoredMessage(message_id, lead_id, sender, text, "queued", None)
        self._announce(message)
        return message

    def read(self, lead_id: str, limit: int) -> list[StoredMessage]:
        """The lead's unread messages, oldest first, marked read (delivered) as they are handed over."""
        messages = self._store.queued_for(lead_id)[:limit]
        for message in messages:
            self._store.mark_delivered(message.message_id)
        if not self._store.queued_for(lead_id):
            self._event(lead_id).clear()
        return messages

    def unread(self, lead_id: str) -> int:
        return len(self._store.queued_for(lead_id))

    async def wait(self, lead_id: str, timeout: float) -> bool:
        """Wait until the lead has an unread message (True) or `timeout` passed (False)."""
        if self.unread(lead_id):
            return True
        event = self._event(lead_id)
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return bool(self.unread(lead_id))
        return True

    def _event(self, lead_id: str) -> asyncio.Event:
        return self._arrived.setdefault(lead_id, asyncio.Event())

    def _announce(self, message: StoredMessage) -> None:
        self._event(message.receiver).set()
        listener = self._listeners.get(message.receiver)
        if listener is not None:
            listener(message)
