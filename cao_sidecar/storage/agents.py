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


class AgentStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(SCHEMA)

    @classmethod
    def open(cls, path: Path) -> "AgentStore":
        from cao_sidecar.storage.messages import connect

        return cls(connect(path))

    def save(self, record: AgentRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO agents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*attrs.astuple(record), time.time()),
        )

    def update(self, terminal_id: str, **fields: object) -> None:
        if not fields:
            return
        columns = ", ".join(f"{name}=?" for name in fields)
        self._db.execute(
            f"UPDATE agents SET {columns}, updated_at=? WHERE terminal_id=?",  # names are ours, not input
            (*fields.values(), time.time(), terminal_id),
        )

    def remove(self, terminal_id: str) -> None:
        self._db.execute("DELETE FROM agents WHERE terminal_id=?", (terminal_id,))
        self._db.execute("DELETE FROM assigns WHERE worker_id=?", (terminal_id,))

    def all(self) -> list[AgentRecord]:
        rows = self._db.execute(
            "SELECT terminal_id, session, profile, provider, name, working_directory, agent_dir, created_at,"
            " pane_id, pid, status, last_answer FROM agents ORDER BY created_at, rowid"
        ).fetchall()
        return [AgentRecord(*row) for row in rows]

    def add_assign(self, record: AssignRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO assigns VALUES (?, ?, ?, ?, ?)",
            (record.worker_id, record.caller_id, record.message, int(record.keep), record.deadline),
        )

    def assign_done(self, worker_id: str) -> None:
        self._db.execute("DELETE FROM assigns WHERE worker_id=?", (worker_id,))

    def pending_assigns(self) -> list[AssignRecord]:
        rows = self._db.execute("SELECT worker_id, caller_id, message, keep, deadline FROM assigns").fetchall()
        return [AssignRecord(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]
