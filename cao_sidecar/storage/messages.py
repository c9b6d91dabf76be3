"""The message store: every message to an agent is written here before it is acknowledged.

SQLite in WAL mode with synchronous=NORMAL: a commit is tens of microseconds and survives a crash
of the sidecar process, so it runs on the event loop without a thread hop.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import attrs

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    sender TEXT,
    text TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'failed')),
    error TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS messages_by_receiver ON messages (receiver, state, id);
"""
NOTICE_SENDER = "cao-sidecar"


log = logging.getLogger(__name__)


SQLITE_FULL = 13  # sqlite3.SQLITE_FULL, which Python 3.10 (supported) does not have


def is_full(exc: BaseException) -> bool:
    """Whether a storage error means the disk (or quota) is full."""
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


_last_full_warning = [-1e9]


def write_quietly(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> int:
    """A bookkeeping write that must not stop running work when the disk is full: skipped, and
    logged once a minute at most."""
    try:
        return db.execute(sql, params).rowcount
    except sqlite3.OperationalError as exc:
        if not is_full(exc):
            raise
        warn_full()
        return 0


def warn_full() -> None:
    """Say that the state dir is full, once a minute at most."""
    if time.monotonic() - _last_full_warning[0] > 60:
        _last_full_warning[0] = time.monotonic()
        log.warning("state dir full: status and delivery records are skipped until there is room")


@attrs.define(frozen=True)
class StoredMessage:
    message_id: str
    receiver: str
    sender: Optional[str]
    text: str
    state: str
    error: Optional[str]
    # Set (wall-clock time) just before it was typed in: a queued message with it may sit in the
    # agent's input line, or have been taken, when the sidecar died before recording delivery.
    typing_at: Optional[float] = None


def _message_id(rowid: int) -> str:
    return f"m{rowid}"


def _rowid(message_id: str) -> int:
    if not message_id.startswith("m") or not message_id[1:].isdigit():
        raise KeyError(message_id)
    return int(message_id[1:])


def connect(path: Path) -> sqlite3.Connection:
    """The state database: WAL, autocommit (each statement is its own transaction), 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    path.chmod(0o600)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=2000")
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """Several writes that land together or not at all (the connection is in autocommit). Inside
    another transaction it is part of that one."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (a full disk does that): never leave one open.
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class MessageStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(SCHEMA)
        if "sender_id" not in {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}:
            self._db.execute("ALTER TABLE messages ADD COLUMN sender_id TEXT")  # state dbs from before
        if "typing_at" not in {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}:
            self._db.execute("ALTER TABLE messages ADD COLUMN typing_at REAL")
        self._pending_delivered: dict[int, float] = {}  # row id -> when: the full disk refused it

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    def add(self, receiver: str, text: str, sender: Optional[str], sender_id: Optional[str] = None) -> str:
        """Store a queued message; `sender_id`: the agent that sent it, told if it fails."""
        cur = self._db.execute(
            "INSERT INTO messages (receiver, sender, text, state, created_at, sender_id) VALUES (?, ?, ?, 'queued', ?, ?)",
            (receiver, sender, text, time.time(), sender_id),
        )
        return _message_id(int(cur.lastrowid or 0))

    def mark_typing(self, message_id: str) -> bool:
        """Record, before typing a queued message in, that it is being typed (see recovery).
        False when the disk is full: then it must not be typed yet, or a crash before the next
        write would leave nothing saying it was, and a restart would type it again."""
        self.flush_pending()
        try:
            self._db.execute("UPDATE messages SET typing_at=? WHERE id=? AND state='queued'", (time.time(), _rowid(message_id)))
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            warn_full()
            return False
        return True

    def mark_delivered(self, message_id: str) -> None:
        """Record a delivery. One the full disk refuses is kept and written with the next write
        that gets through (flush_pending); until then a restart settles it from the screen."""
        self._pending_delivered[_rowid(message_id)] = time.time()
        self.flush_pending()

    def flush_pending(self) -> None:
        """Write the deliveries a full disk refused, as far as there is room now."""
        for rowid, at in list(self._pending_delivered.items()):
            try:
                self._db.execute(
                    "UPDATE messages SET state='delivered', delivered_at=? WHERE id=? AND state='queued'", (at, rowid)
                )
            except sqlite3.OperationalError as exc:
                if not is_full(exc):
                    raise
                warn_full()
                return
            del self._pending_delivered[rowid]

    def mark_failed(self, message_id: str, error: str) -> Optional[StoredMessage]:
        """Mark a queued message failed. If an agent sent it, a notice for that agent is stored in
        the same transaction (so it is told exactly once, crash or not) and returned."""
        try:
            with transaction(self._db):
                cur = self._db.execute(
                    "UPDATE messages SET state='failed', error=? WHERE id=? AND state='queued'", (error, _rowid(message_id))
                )
                row = self._db.execute("SELECT receiver, sender_id FROM messages WHERE id=?", (_rowid(message_id),)).fetchone()
                if cur.rowcount == 0 or row is None or not row[1]:
                    return None
                text = f"[message from {NOTICE_SENDER}] your message {message_id} to {row[0]} was not delivered: {error}"
                notice_id = self.add(row[1], text, NOTICE_SENDER)
            return StoredMessage(notice_id, row[1], NOTICE_SENDER, text, "queued", None)
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            log.warning("state dir full: message %s could not be marked failed", message_id)
            return None

    def is_queued(self, message_id: str) -> bool:
        """Whether a stored message still waits to be typed in (False if unknown)."""
        try:
            return self.get(message_id).state == "queued"
        except KeyError:
            return False

    def get(self, message_id: str) -> StoredMessage:
        row = self._db.execute(
            "SELECT id, receiver, sender, text, state, error, typing_at FROM messages WHERE id=?", (_rowid(message_id),)
        ).fetchone()
        if row is None:
            raise KeyError(message_id)
        return StoredMessage(_message_id(row[0]), *row[1:])

    def queued_for(self, receiver: str) -> list[StoredMessage]:
        rows = self._db.execute(
            "SELECT id, receiver, sender, text, state, error, typing_at FROM messages WHERE receiver=? AND state='queued' ORDER BY id",
            (receiver,),
        ).fetchall()
        return [StoredMessage(_message_id(r[0]), *r[1:]) for r in rows]

    def queued_on_host(self, host: str) -> list[StoredMessage]:
        """Messages queued for agents of another host (receivers `host:id`), oldest first."""
        prefix = f"{host}:"
        rows = self._db.execute(
            "SELECT id, receiver, sender, text, state, error, typing_at FROM messages"
            " WHERE substr(receiver, 1, ?) = ? AND state='queued' ORDER BY id",
            (len(prefix), prefix),
        ).fetchall()
        return [StoredMessage(_message_id(r[0]), *r[1:]) for r in rows]

    def close(self) -> None:
        self._db.close()
