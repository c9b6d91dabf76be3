"""Start-up milestones on stderr when CAO_STARTUP_TRACE=1 (bench/bench_first_spawn.py reads them).

Standard library only: the forwarder uses it too, and it must not pull anything in.
"""

from __future__ import annotations

import os
import sys
import time

ENABLED = os.environ.get("CAO_STARTUP_TRACE") == "1"


def mark(name: str) -> None:
    """`startup-trace NAME at WALLCLOCK` on stderr (wall clock: the bench compares processes)."""
    if ENABLED:
        sys.stderr.write(f"startup-trace {name} at {time.time():.6f}\n")
        sys.stderr.flush()
