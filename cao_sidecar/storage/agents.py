"""The agent store: what a restarted sidecar needs to find its agents again.

One row per agent (its tmux pane and process, profile, provider, working directory, session) and
one per assign whose result has not been reported yet. Written on spawn, on every status change
and on teardown, in the same SQLite file as the messages.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Optional

import attrs

from cao_sidecar.storage.messages import write_quietly

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    terminal_id TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    profile TEXT NOT NULL,
    provider TEXT NOT NULL,
    name TEXT,
    working_directory TEXT NOT NULL,
    agent_dir TEXT NOT NULL,
    created_at TEXT NOT NULL,
    pane_id TEXT,
    pid INTEGER,
    status TEXT NOT NULL,
    last_answer TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assigns (
    worker_id TEXT PRIMARY KEY,
    caller_id TEXT,
    message TEXT NOT NULL,
    keep INTEGER NOT NULL,
    deadline REAL NOT NULL
);
"""
# Columns added after the first release; a state db from before gets them on open.
ASSIGN_COLUMNS = (("profile", "TEXT"), ("task_id", "TEXT"))


# Columns a caller may change (update): never a name taken from input.
UPDATABLE = frozenset({"status", "pane_id", "pid", "last_answer"})


@attrs.define(frozen=True)
class AgentRecord:
    terminal_id: str
    session: str
    profile: str
    provider: str
    name: Optional[str]
    working_directory: str
    agent_dir: str
    created_at: str
    pane_id: Optional[str]
    pid: Optional[int]
    status: str
    last_answer: Optional[str]


@attrs.define(frozen=True)
class AssignRecord:
    worker_id: str
    caller_id: Optional[str]
    message: str
    keep: bool
    deadline: float  # wall-clock time (time.time()) after which the assign has timed out
    profile: Optional[str] = None  # the worker's profile (to report it if its record is gone)
    task_id: Optional[str] = None  # the task's message id: 'queued' until typed into the worker


class AgentStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(assigns)")}
        for column, kind in ASSIGN_COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE assigns ADD COLUMN {column} {kind}")  # names are ours

    @classmethod
    def open(cls, path: Path) -> "AgentStore":
        from cao_sidecar.storage.messages import connect

        return cls(connect(path))

    def has_assign(self, worker_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM assigns WHERE worker_id=?", (worker_id,)).fetchone() is not None

    def save(self, record: AgentRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO agents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*attrs.astuple(record), time.time()),
        )

    def set_status(self, terminal_id: str, status: str) -> None:
        self._update(terminal_id, "status=?", status)

    def set_pane(self, terminal_id: str, pane_id: Optional[str], pid: Optional[int]) -> None:
        self._update(terminal_id, "pane_id=?, pid=?", pane_id, pid)

    def set_last_answer(self, terminal_id: str, answer: str) -> None:
        self._update(terminal_id, "last_answer=?", answer)

    def set_working_directory(self, terminal_id: str, working_directory: str) -> None:
        """The agent works in its own git worktree (core.worktree_manager) instead."""
        self._update(terminal_id, "working_directory=?", working_directory)

    def set_relaunching(self, terminal_id: str, status: str) -> None:
        """A worker started again (recovery): its status, and no pane until it is launched."""
        self._update(terminal_id, "status=?, pane_id=NULL, pid=NULL", status)

    def update(self, terminal_id: str, **fields: object) -> None:
        """Kept for callers from before the named setters: columns of UPDATABLE only."""
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"not an updatable agent column: {', '.join(sorted(unknown))}")
        if fields:
            self._update(terminal_id, ", ".join(f"{name}=?" for name in fields), *fields.values())

    def _update(self, terminal_id: str, assignments: str, *values: object) -> None:
        write_quietly(  # a status change must not stop a running agent when the disk is full
            self._db,
            f"UPDATE agents SET {assignments}, updated_at=? WHERE terminal_id=?",  # constant columns
            (*values, time.time(), terminal_id),
        )

    def remove(self, terminal_id: str) -> None:
        """Forget an agent. Its assign, if any, stays until it is reported (claim_assign)."""
        write_quietly(self._db, "DELETE FROM agents WHERE terminal_id=?", (terminal_id,))

    def all(self) -> list[AgentRecord]:
        rows = self._db.execute(
            "SELECT terminal_id, session, profile, provider, name, working_directory, agent_dir, created_at,"
            " pane_id, pid, status, last_answer FROM agents ORDER BY created_at, rowid"
        ).fetchall()
        return [AgentRecord(*row) for row in rows]

    def add_assign(self, record: AssignRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO assigns (worker_id, caller_id, message, keep, deadline, profile, task_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.worker_id, record.caller_id, record.message, int(record.keep), record.deadline,
             record.profile, record.task_id),
        )  # fmt: skip

    def claim_assign(self, worker_id: str) -> bool:
        """Take an assign off the pending list. True for the one caller that may report it: run
        in the same transaction as the report, so an assign is reported once, crash or not."""
        return self._db.execute("DELETE FROM assigns WHERE worker_id=?", (worker_id,)).rowcount > 0

    def pending_assigns(self) -> list[AssignRecord]:
        rows = self._db.execute(
            "SELECT worker_id, caller_id, message, keep, deadline, profile, task_id FROM assigns ORDER BY rowid"
        ).fetchall()
        return [AssignRecord(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6]) for r in rows]
