"""Crash points for tests only: make the sidecar SIGKILL itself at a chosen moment.

`CAO_TEST_KILL_AT=POINT:MARKER` kills the sidecar at POINT while it types a text that contains
MARKER into an agent. Points: `before_paste` (typing recorded, nothing typed), `after_paste`
(text in the input line, no Enter), `after_enter` (Enter pressed, delivery not recorded). Tests
use it to prove that a restart finishes what the crash cut off (tests/test_crash_typing.py).
Unset (always, outside tests), it does nothing.
"""

from __future__ import annotations

import os
import signal

from cao_sidecar.settings import settings


def crash_point(point: str, text: str) -> None:
    point_set, _, marker = settings().test_kill_at.partition(":")
    if point_set == point and marker and marker in text:
        os.kill(os.getpid(), signal.SIGKILL)
