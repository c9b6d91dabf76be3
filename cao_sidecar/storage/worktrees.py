"""The worktree store: every worker worktree that is not merged or discarded yet.

One row per worktree (its repository, folder, branch, base, the files copied in, the last summary
of its work). A row outlives its agent: terminating a worker with unmerged work keeps its branch
and folder, and a restarted sidecar lists them again from here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Optional

import attrs

from cao_sidecar.storage.messages import write_quietly

SCHEMA = """
CREATE TABLE IF NOT EXISTS worktrees (
    terminal_id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    session TEXT NOT NULL,
    repository TEXT NOT NULL,
    path TEXT NOT NULL,
    subdirectory TEXT NOT NULL,
    branch TEXT NOT NULL,
    base TEXT NOT NULL,
    base_commit TEXT NOT NULL,
    copied TEXT NOT NULL,
    notes TEXT NOT NULL,
    summary TEXT,
    committed_leftovers INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS worktree_plans (
    terminal_id TEXT PRIMARY KEY,
    plan TEXT NOT NULL
);
"""


@attrs.define
class WorktreeRecord:
    terminal_id: str
    profile: str
    session: str
    repository: str  # the repository's top folder
    path: str  # the worktree's folder
    subdirectory: str  # where in the repository the worker works ("" = its top)
    branch: str
    base: str  # a branch name, or a commit when the folder's HEAD was detached
    base_commit: str
    copied: list[str] = attrs.Factory(list)  # untracked files copied in (never committed)
    notes: list[str] = attrs.Factory(list)  # files listed but not copied, and why
    summary: Optional[dict[str, Any]] = None  # the last WorkSummary, as a dict
    committed_leftovers: bool = False  # the sidecar committed changes the worker left
    created_at: float = attrs.Factory(time.time)


class WorktreeStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(SCHEMA)

    def add(self, record: WorktreeRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO worktrees (terminal_id, profile, session, repository, path, subdirectory, branch,"
            " base, base_commit, copied, notes, summary, committed_leftovers, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.terminal_id, record.profile, record.session, record.repository, record.path,
                record.subdirectory, record.branch, record.base, record.base_commit, json.dumps(record.copied),
                json.dumps(record.notes), json.dumps(record.summary) if record.summary is not None else None,
                int(record.committed_leftovers), record.created_at,
            ),
        )  # fmt: skip

    def set_summary(self, terminal_id: str, summary: dict[str, Any], committed_leftovers: bool) -> None:
        write_quietly(
            self._db,
            "UPDATE worktrees SET summary=?, committed_leftovers=MAX(committed_leftovers, ?) WHERE terminal_id=?",
            (json.dumps(summary), int(committed_leftovers), terminal_id),
        )

    def get(self, terminal_id: str) -> Optional[WorktreeRecord]:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM worktrees WHERE terminal_id=?", (terminal_id,)).fetchone()
        return _record(row) if row else None

    def all(self) -> list[WorktreeRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM worktrees ORDER BY created_at").fetchall()
        return [_record(row) for row in rows]

    def remove(self, terminal_id: str) -> None:
        write_quietly(self._db, "DELETE FROM worktrees WHERE terminal_id=?", (terminal_id,))

    # A worktree decided for an agent that has not been made yet: a restarted sidecar that
    # launches the agent again must make it too (never start it in the user's own folder).

    def add_plan(self, terminal_id: str, plan: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO worktree_plans (terminal_id, plan) VALUES (?, ?)", (terminal_id, json.dumps(plan))
        )

    def plan(self, terminal_id: str) -> Optional[dict[str, Any]]:
        row = self._db.execute("SELECT plan FROM worktree_plans WHERE terminal_id=?", (terminal_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def remove_plan(self, terminal_id: str) -> None:
        write_quietly(self._db, "DELETE FROM worktree_plans WHERE terminal_id=?", (terminal_id,))


_COLUMNS = (
    "terminal_id, profile, session, repository, path, subdirectory, branch, base, base_commit, copied, notes,"
    " summary, committed_leftovers, created_at"
)


def _record(row: tuple[Any, ...]) -> WorktreeRecord:
    (terminal_id, profile, session, repository, path, subdirectory, branch, base, base_commit, copied, notes,
     summary, committed, created_at) = row  # fmt: skip
    return WorktreeRecord(
        terminal_id, profile, session, repository, path, subdirectory, branch, base, base_commit,
        json.loads(copied), json.loads(notes), json.loads(summary) if summary else None, bool(committed), created_at,
    )  # fmt: skip
