"""Flow run records and flow settings, in the state store (state.db, tables of their own).

Every run of a flow is a row: when it started and ended, how it went, the worker's answer or why
it was skipped. Scheduled runs are unique per (flow file, scheduled time): when two sidecars
share a state dir (two editor windows), only the one that claims a slot first runs it.

SQLite in WAL mode like the message store; each write is a short transaction on the event loop.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import attrs

SCHEMA = """
CREATE TABLE IF NOT EXISTS flow_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow TEXT NOT NULL,
    path TEXT NOT NULL,
    trigger TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    scheduled_at TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'skipped', 'gate_failed')),
    terminal_id TEXT,
    task TEXT,
    output TEXT,
    reason TEXT,
    pid INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS flow_runs_slot ON flow_runs (path, scheduled_at) WHERE trigger = 'schedule';
CREATE INDEX IF NOT EXISTS flow_runs_by_path ON flow_runs (path, id);
CREATE INDEX IF NOT EXISTS flow_runs_running ON flow_runs (status) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS flow_settings (
    path TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    file_enabled INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
"""

KEEP_RUNS_PER_FLOW = 200
FINAL = ("completed", "failed", "skipped", "gate_failed")


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


@attrs.define(frozen=True)
class FlowRun:
    run_id: str
    flow: str
    path: str
    trigger: str
    scheduled_at: Optional[str]
    started_at: str
    ended_at: Optional[str]
    status: str
    terminal_id: Optional[str]
    task: Optional[str]
    output: Optional[str]
    reason: Optional[str]
    pid: int


_COLUMNS = "id, flow, path, trigger, scheduled_at, started_at, ended_at, status, terminal_id, task, output, reason, pid"


def _row(row: tuple) -> FlowRun:
    return FlowRun(str(row[0]), *row[1:])


def _pid_alive(pid: int) -> bool:
    """Whether a sidecar with this pid still runs (a pid reused by another program is not one)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid
    return b"cao_sidecar" in cmdline or b"cao-sidecar" in cmdline


class FlowRunStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=2.0)
        try:
            path.chmod(0o600)
        except OSError:
            pass
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=2000")
        self._db.executescript(SCHEMA)
        self.pid = os.getpid()

    # ---- runs -----------------------------------------------------------------------------

    def start(
        self, *, flow: str, path: str, trigger: str, scheduled_at: Optional[str], task: Optional[str] = None
    ) -> Optional[FlowRun]:
        """Record a run as running. None: a scheduled slot another sidecar already claimed."""
        try:
            cur = self._db.execute(
                "INSERT INTO flow_runs (flow, path, trigger, scheduled_at, started_at, status, task, pid) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                (flow, path, trigger, scheduled_at, now_iso(), task, self.pid),
            )
        except sqlite3.IntegrityError:
            return None
        run_id = int(cur.lastrowid or 0)
        self._prune(path)
        return self.get(str(run_id))

    def record_final(
        self,
        *,
        flow: str,
        path: str,
        trigger: str,
        scheduled_at: Optional[str],
        status: str,
        reason: str,
    ) -> Optional[FlowRun]:
        """A run that ended before it began (skipped because the previous one still works)."""
        assert status in FINAL
        stamp = now_iso()
        try:
            cur = self._db.execute(
                "INSERT INTO flow_runs (flow, path, trigger, scheduled_at, started_at, ended_at, status, reason, pid) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (flow, path, trigger, scheduled_at, stamp, stamp, status, reason, self.pid),
            )
        except sqlite3.IntegrityError:
            return None
        self._prune(path)
        return self.get(str(cur.lastrowid))

    def update(self, run_id: str, **fields: Optional[str]) -> Optional[FlowRun]:
        allowed = {"status", "terminal_id", "task", "output", "reason"}
        assert set(fields) <= allowed, fields
        if not fields:
            return self.get(run_id)
        assignments = ", ".join(f"{k}=?" for k in fields)
        values = list(fields.values())
        if fields.get("status") in FINAL:
            assignments += ", ended_at=?"
            values.append(now_iso())
        self._db.execute(f"UPDATE flow_runs SET {assignments} WHERE id=?", (*values, int(run_id)))
        return self.get(run_id)

    def get(self, run_id: str) -> Optional[FlowRun]:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM flow_runs WHERE id=?", (int(run_id),)).fetchone()
        return _row(row) if row else None

    def last(self, path: str) -> Optional[FlowRun]:
        """The run to show as a flow's last result: one still running, else the one that ended
        last (a run skipped while another worked must not hide that one's answer)."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM flow_runs WHERE path=? ORDER BY status = 'running' DESC, "
            "julianday(COALESCE(ended_at, started_at)) DESC, id DESC LIMIT 1",
            (path,),
        ).fetchone()
        return _row(row) if row else None

    def history(self, path: str, limit: int = 20) -> list[FlowRun]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM flow_runs WHERE path=? ORDER BY id DESC LIMIT ?", (path, limit)
        ).fetchall()
        return [_row(r) for r in rows]

    def running(self, path: str) -> Optional[FlowRun]:
        """A run of this flow still working, in this sidecar or another live one."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM flow_runs WHERE path=? AND status='running' ORDER BY id DESC", (path,)
        ).fetchall()
        for row in rows:
            run = _row(row)
            if _pid_alive(run.pid):
                return run
        return None

    def fail_orphans(self) -> int:
        """Runs left 'running' by sidecars that are gone: mark them failed."""
        rows = self._db.execute("SELECT id, pid FROM flow_runs WHERE status='running'").fetchall()
        count = 0
        for run_id, pid in rows:
            if pid != self.pid and not _pid_alive(pid):
                self.update(
                    str(run_id),
                    status="failed",
                    reason="the sidecar stopped before the run finished (its worker may still be in tmux)",
                )
                count += 1
        return count

    def fail_mine(self, reason: str) -> None:
        rows = self._db.execute("SELECT id FROM flow_runs WHERE status='running' AND pid=?", (self.pid,)).fetchall()
        for (run_id,) in rows:
            self.update(str(run_id), status="failed", reason=reason)

    def _prune(self, path: str) -> None:
        self._db.execute(
            "DELETE FROM flow_runs WHERE path=? AND status != 'running' AND id NOT IN "
            "(SELECT id FROM flow_runs WHERE path=? ORDER BY id DESC LIMIT ?)",
            (path, path, KEEP_RUNS_PER_FLOW),
        )

    # ---- settings -------------------------------------------------------------------------

    def set_enabled(self, path: str, enabled: bool, file_enabled: bool) -> None:
        """Override the file's `enabled`; the override lasts until the file's own value changes."""
        self._db.execute(
            "INSERT INTO flow_settings (path, enabled, file_enabled, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET enabled=excluded.enabled, file_enabled=excluded.file_enabled, "
            "updated_at=excluded.updated_at",
            (path, int(enabled), int(file_enabled), now_iso()),
        )

    def effective_enabled(self, path: str, file_enabled: bool) -> bool:
        row = self._db.execute("SELECT enabled, file_enabled FROM flow_settings WHERE path=?", (path,)).fetchone()
        if row is None:
            return file_enabled
        if bool(row[1]) != file_enabled:
            # The file's `enabled` was edited since the override: the file wins.
            self._db.execute("DELETE FROM flow_settings WHERE path=?", (path,))
            return file_enabled
        return bool(row[0])

    def close(self) -> None:
        self._db.close()
