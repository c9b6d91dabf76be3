"""The workflow journal: every run of a workflow and every step of it, in the state store.

A step is journaled `pending` before anything is sent, then `sent` (with its worker's id) in the
same transaction that stores the worker's task (core.reporting.record_task), then `completed` or
`failed` with the answer when the worker ends. A run that resumes reads its steps back by key
(the step's position in the script's call order): a finished step is answered from here, a sent
one is followed to its worker's end, a pending one was never sent and is sent now.

Same SQLite file and connection as the core's stores (stores.db); short writes on the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any, Optional

import attrs

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflow_runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    script_hash TEXT NOT NULL,
    inputs TEXT NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
    output TEXT,
    error TEXT,
    pid INTEGER,
    started_at REAL NOT NULL,
    ended_at REAL
);
CREATE INDEX IF NOT EXISTS workflow_runs_by_start ON workflow_runs (started_at);
CREATE TABLE IF NOT EXISTS workflow_steps (
    run_id TEXT NOT NULL,
    key INTEGER NOT NULL,
    profile TEXT NOT NULL,
    task_hash TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'completed', 'failed')),
    worker_id TEXT,
    answer TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    ended_at REAL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS workflow_steps_by_worker ON workflow_steps (worker_id);
"""

RUN_STATES = ("running", "completed", "failed", "interrupted")
KEEP_RUNS = 500


@attrs.define(frozen=True)
class WorkflowRun:
    run_id: str
    name: str
    path: str
    script_hash: str
    inputs: dict[str, str]
    trigger: str
    status: str
    output: Any  # the script's return value (JSON), once completed
    error: Optional[str]
    pid: Optional[int]
    started_at: float
    ended_at: Optional[float]


@attrs.define(frozen=True)
class WorkflowStep:
    run_id: str
    key: int
    profile: str
    task_hash: str
    task: str
    status: str
    worker_id: Optional[str]
    answer: Optional[str]
    error: Optional[str]
    attempts: int
    started_at: float
    ended_at: Optional[float]


_RUN_COLUMNS = "id, name, path, script_hash, inputs, trigger, status, output, error, pid, started_at, ended_at"
_STEP_COLUMNS = "run_id, key, profile, task_hash, task, status, worker_id, answer, error, attempts, started_at, ended_at"


def _run(row: tuple) -> WorkflowRun:
    values = list(row)
    values[4] = json.loads(values[4])
    values[7] = json.loads(values[7]) if values[7] is not None else None
    return WorkflowRun(*values)


class WorkflowStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(SCHEMA)

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    # ---- runs -------------------------------------------------------------------------------

    def add_run(self, *, name: str, path: str, script_hash: str, inputs: dict[str, str], trigger: str) -> WorkflowRun:
        run_id = uuid.uuid4().hex[:12]
        self._db.execute(
            f"INSERT INTO workflow_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'running', NULL, NULL, NULL, ?, NULL)",
            (run_id, name, path, script_hash, json.dumps(inputs), trigger, time.time()),
        )
        self._prune()
        run = self.run(run_id)
        assert run is not None
        return run

    def run(self, run_id: str) -> Optional[WorkflowRun]:
        row = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM workflow_runs WHERE id=?", (run_id,)).fetchone()
        return _run(row) if row else None

    def runs(self, limit: int = 50) -> list[WorkflowRun]:
        rows = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM workflow_runs ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        return [_run(r) for r in rows]

    def running(self) -> list[WorkflowRun]:
        rows = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM workflow_runs WHERE status='running' ORDER BY started_at").fetchall()
        return [_run(r) for r in rows]

    def set_pid(self, run_id: str, pid: Optional[int]) -> None:
        self._db.execute("UPDATE workflow_runs SET pid=? WHERE id=?", (pid, run_id))

    def set_status(self, run_id: str, status: str, *, output: Any = None, error: Optional[str] = None) -> None:
        assert status in RUN_STATES
        ended = time.time() if status != "running" else None
        self._db.execute(
            "UPDATE workflow_runs SET status=?, output=?, error=?, ended_at=? WHERE id=?",
            (status, json.dumps(output) if output is not None else None, error, ended, run_id),
        )

    def _prune(self) -> None:
        old = self._db.execute(
            "SELECT id FROM workflow_runs WHERE status IN ('completed', 'failed') AND id NOT IN "
            "(SELECT id FROM workflow_runs ORDER BY started_at DESC LIMIT ?)",
            (KEEP_RUNS,),
        ).fetchall()
        for (run_id,) in old:
            self._db.execute("DELETE FROM workflow_steps WHERE run_id=?", (run_id,))
            self._db.execute("DELETE FROM workflow_runs WHERE id=?", (run_id,))

    # ---- steps ------------------------------------------------------------------------------

    def step(self, run_id: str, key: int) -> Optional[WorkflowStep]:
        row = self._db.execute(f"SELECT {_STEP_COLUMNS} FROM workflow_steps WHERE run_id=? AND key=?", (run_id, key)).fetchone()
        return WorkflowStep(*row) if row else None

    def steps(self, run_id: str) -> list[WorkflowStep]:
        rows = self._db.execute(f"SELECT {_STEP_COLUMNS} FROM workflow_steps WHERE run_id=? ORDER BY key", (run_id,)).fetchall()
        return [WorkflowStep(*r) for r in rows]

    def step_of_worker(self, worker_id: str) -> Optional[WorkflowStep]:
        row = self._db.execute(f"SELECT {_STEP_COLUMNS} FROM workflow_steps WHERE worker_id=?", (worker_id,)).fetchone()
        return WorkflowStep(*row) if row else None

    def add_pending(self, run_id: str, key: int, profile: str, task_hash: str, task: str) -> WorkflowStep:
        """Journal a step before it is sent (a step that failed before is tried again: pending)."""
        self._db.execute(
            f"INSERT INTO workflow_steps ({_STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'pending', NULL, NULL, NULL, 0, ?, NULL) "
            "ON CONFLICT(run_id, key) DO UPDATE SET status='pending', worker_id=NULL, answer=NULL, error=NULL, ended_at=NULL",
            (run_id, key, profile, task_hash, task, time.time()),
        )
        step = self.step(run_id, key)
        assert step is not None
        return step

    def mark_sent(self, run_id: str, key: int, worker_id: str) -> None:
        """Call inside the transaction that stores the worker's task: both land, or neither."""
        self._db.execute(
            "UPDATE workflow_steps SET status='sent', worker_id=?, attempts=attempts+1 WHERE run_id=? AND key=?",
            (worker_id, run_id, key),
        )

    def finish(self, run_id: str, key: int, *, answer: Optional[str], error: Optional[str]) -> bool:
        """Record how a sent step ended; False if it had ended already (recorded once)."""
        status = "completed" if error is None else "failed"
        cur = self._db.execute(
            "UPDATE workflow_steps SET status=?, answer=?, error=?, ended_at=? WHERE run_id=? AND key=? AND status='sent'",
            (status, answer, error, time.time(), run_id, key),
        )
        return cur.rowcount > 0
