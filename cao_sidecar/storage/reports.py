"""Reports for the editor: how each assign ended, kept until an editor has been sent it.

A report is written in the same transaction that takes its assign off the pending list
(AgentStore.claim_assign), so an assign is reported exactly once whatever crashes: before the
commit nothing is reported and the assign is still pending (a restarted sidecar reports it);
after it the report waits here until an editor is connected. It is marked sent right before the
notification is written (editor.server), in the same step of the event loop.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Optional

import attrs

from cao_sidecar.storage.messages import write_quietly

SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    terminal_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT,
    created_at REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS reports_unsent ON reports (id) WHERE sent_at IS NULL;
CREATE TABLE IF NOT EXISTS reports_taken (
    key TEXT PRIMARY KEY,
    taken_at REAL NOT NULL
);
"""
KEEP_TAKEN_SECONDS = 30 * 86400  # a node re-sends a report within this (it keeps it until answered)
KEEP_SENT_SECONDS = 7 * 86400
KEEP_UNSENT = 1000  # reports nobody collects (no editor ever connects) are kept up to this many


@attrs.define(frozen=True)
class Report:
    report_id: int
    terminal_id: str
    profile: str
    status: str
    output: str
    error: Optional[str]
    worktree: Optional[str] = None  # a host's worker: its worktree as its node described it (JSON)


COLUMNS = "id, terminal_id, profile, status, output, error, worktree"


class ReportStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(SCHEMA)
        if "worktree" not in {row[1] for row in self._db.execute("PRAGMA table_info(reports)")}:
            self._db.execute("ALTER TABLE reports ADD COLUMN worktree TEXT")  # state dbs from before

    def add(
        self, terminal_id: str, profile: str, status: str, output: str, error: Optional[str], worktree: Optional[str] = None
    ) -> Report:
        cur = self._db.execute(
            "INSERT INTO reports (terminal_id, profile, status, output, error, worktree, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (terminal_id, profile, status, output, error, worktree, time.time()),
        )
        return Report(int(cur.lastrowid or 0), terminal_id, profile, status, output, error, worktree)

    def take(self, key: str) -> bool:
        """Record that the report `key` (a node's, for one of its workers) has been taken: True the
        first time, False for a re-send. Part of the transaction that stores what it brings."""
        cur = self._db.execute("INSERT OR IGNORE INTO reports_taken (key, taken_at) VALUES (?, ?)", (key, time.time()))
        return cur.rowcount > 0

    def unsent(self) -> list[Report]:
        rows = self._db.execute(f"SELECT {COLUMNS} FROM reports WHERE sent_at IS NULL ORDER BY id").fetchall()
        return [Report(*row) for row in rows]

    def latest(self, terminal_id: str) -> Optional[Report]:
        """How the assign of worker `terminal_id` ended, if it has been reported (workflows' journal
        reads it when the sidecar died between the report and the journal's own record)."""
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM reports WHERE terminal_id=? ORDER BY id DESC LIMIT 1",
            (terminal_id,),
        ).fetchone()
        return Report(*row) if row else None

    def mark_sent(self, report_id: int) -> bool:
        """True if this call marked it: a report is sent by whoever marks it first, and not
        while the disk is full (it waits, see core.reporting)."""
        marked = write_quietly(self._db, "UPDATE reports SET sent_at=? WHERE id=? AND sent_at IS NULL", (time.time(), report_id))
        return marked > 0

    def is_sent(self, report_id: int) -> bool:
        row = self._db.execute("SELECT sent_at FROM reports WHERE id=?", (report_id,)).fetchone()
        return row is None or row[0] is not None

    def prune(self) -> None:
        write_quietly(
            self._db, "DELETE FROM reports WHERE sent_at IS NOT NULL AND sent_at < ?", (time.time() - KEEP_SENT_SECONDS,)
        )
        write_quietly(
            self._db,
            "DELETE FROM reports WHERE sent_at IS NULL AND id NOT IN"
            " (SELECT id FROM reports WHERE sent_at IS NULL ORDER BY id DESC LIMIT ?)",
            (KEEP_UNSENT,),
        )
        write_quietly(self._db, "DELETE FROM reports_taken WHERE taken_at < ?", (time.time() - KEEP_TAKEN_SECONDS,))
