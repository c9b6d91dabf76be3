"""Room in the state dir: new work is refused with StateDirFull when the disk is full.

Agent records, messages and tasks are written to the state dir before a request is
acknowledged; without room they cannot be, so the request is refused with a clear error
instead. Work already running goes on (its bookkeeping writes are skipped, see
storage.messages.write_quietly) and new work is taken again once there is room.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cao_sidecar.core.errors import StateDirFull
from cao_sidecar.settings import settings
from cao_sidecar.storage.messages import is_full

# Below this much free space new work is refused before anything is written.
MIN_FREE_BYTES = settings().min_free_bytes


def _full(state_dir: Path, free: int | None = None) -> StateDirFull:
    room = f" ({free} bytes free)" if free is not None else ""
    return StateDirFull(
        f"the state dir {state_dir} is full{room}: new work is refused until there is room on its disk; running agents go on",
        stateDir=str(state_dir),
    )


def check_room(state_dir: Path) -> None:
    """Raise StateDirFull if the state dir's disk has less than MIN_FREE_BYTES free."""
    try:
        st = os.statvfs(state_dir)
    except OSError:
        return  # cannot tell: the writes themselves will say
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        raise _full(state_dir, free)


@contextmanager
def refusing_when_full(state_dir: Path) -> Iterator[None]:
    """Turn a 'disk full' from SQLite or the file system into StateDirFull."""
    try:
        yield
    except Exception as exc:
        if is_full(exc):
            raise _full(state_dir) from exc
        raise
