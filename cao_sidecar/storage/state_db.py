"""Opening the state database (state.db) so that the sidecar always starts.

A file that is corrupt, or locked by another program for longer than the busy timeout, is set
aside next to it (renamed with its -wal and -shm files, never deleted) and a fresh database is
started; the caller gets a notice to show the user. The set-aside file can be inspected or
restored by hand (stop the sidecar, rename it back).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Optional

from cao_sidecar.storage.messages import connect, is_full

log = logging.getLogger(__name__)


def _check(db: sqlite3.Connection) -> None:
    """Raise sqlite3.DatabaseError unless the database reads whole and takes writes."""
    row = db.execute("PRAGMA quick_check").fetchone()
    if row is None or row[0] != "ok":
        raise sqlite3.DatabaseError(f"integrity check failed: {row[0] if row else 'no answer'}")
    db.execute("BEGIN IMMEDIATE")  # waits busy_timeout for another writer, then 'database is locked'
    db.execute("ROLLBACK")


def set_aside(path: Path, why: str) -> Path:
    """Rename `path` (and its -wal/-shm companions) to `<name>.<why>-<time>`; returns the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.{why}-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.{why}-{stamp}-{n}")
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(aside.with_name(aside.name + suffix))
    path.rename(aside)
    return aside


def open_state_db(path: Path) -> tuple[sqlite3.Connection, Optional[str]]:
    """The state database at `path`, and a notice for the user if the old one had to be set aside."""
    db: Optional[sqlite3.Connection] = None
    try:
        db = connect(path)
        _check(db)
        return db, None
    except sqlite3.DatabaseError as exc:
        if is_full(exc) and db is not None:
            # A full disk is no fault of the file: keep it, and serve what can be read.
            log.warning("the state dir is full: %s opened, writes wait for room", path)
            return db, None
        if db is not None:
            db.close()
        if is_full(exc):
            raise
        why = "locked" if "locked" in str(exc) else "corrupt"
        aside = set_aside(path, why)
        notice = (
            f"the state database {path} could not be used ({exc}); it was set aside as {aside} and a new one "
            "was started: agents, assigns and messages recorded in it are not recovered"
        )
        log.warning("%s", notice)
        return connect(path), notice
