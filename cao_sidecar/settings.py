"""The sidecar's settings: its CAO_* environment variables, typed and read once per process.

Each field names its variable (`env` metadata). A value that does not parse, or is out of range,
is ignored with a warning and the default applies: a typo in the environment never stops the
sidecar. Variables meant for the agents' processes (CAO_MCP_URL, CAO_MCP_TOKEN, ...) are not
settings of the sidecar and are not read here.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, Optional

import attrs

log = logging.getLogger(__name__)

_YEARS_100 = 100 * 365 * 86400.0


def _seconds(minimum: float = 0.0, *, above: bool = False) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise ValueError(raw)
        return value

    return parse


def _at_least_one_second(raw: str) -> float:
    return max(1.0, _seconds()(raw))


def _offset(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or abs(value) > _YEARS_100:
        raise ValueError(raw)
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _switch(raw: str) -> bool:
    return raw.strip().lower() not in ("off", "0", "false", "no")


def _text(raw: str) -> Optional[str]:
    return raw or None


def _setting(env: str, default: Any, parse: Callable[[str], Any]) -> Any:
    return attrs.field(default=default, metadata={"env": env, "parse": parse})


@attrs.frozen
class Settings:
    #: tmux server socket name (`--tmux-socket` wins)
    tmux_socket: Optional[str] = _setting("CAO_TMUX_SOCKET", None, _text)
    #: how long a starting agent may take to be ready for input
    ready_timeout: float = _setting("CAO_READY_TIMEOUT", 30.0, _seconds(above=True))
    #: a CLI that reports its turns by events: how long to wait for the event after the screen says done
    event_grace: float = _setting("CAO_EVENT_GRACE", 15.0, _seconds())
    #: a working agent whose screen and events did not change this long is `stalled` (0: never)
    stall_seconds: float = _setting("CAO_STALL_SECONDS", 300.0, _seconds())
    #: how long a question shown to the editor's user waits for a click
    ask_timeout: float = _setting("CAO_ASK_TIMEOUT", 600.0, _at_least_one_second)
    #: conversation logs older than this are removed
    log_retention_days: float = _setting("CAO_LOG_RETENTION_DAYS", 14.0, _seconds())
    #: below this much free space in the state dir new work is refused
    min_free_bytes: int = _setting("CAO_MIN_FREE_BYTES", 1024 * 1024, _count)
    #: ACP: how long a prompt turn of the supervisor may take
    acp_turn_timeout: float = _setting("CAO_ACP_TURN_TIMEOUT", 3600.0, _seconds(above=True))
    #: ACP: how long a permission request (an agent's question) waits for the user
    acp_permission_timeout: float = _setting("CAO_ACP_PERMISSION_TIMEOUT", 900.0, _seconds(above=True))
    #: ACP: the supervisor's profile when a session names none
    acp_default_profile: Optional[str] = _setting("CAO_ACP_DEFAULT_PROFILE", None, _text)
    #: flows run on their schedules (`off`: only cao/runFlow runs them)
    flows_scheduler: bool = _setting("CAO_FLOWS_SCHEDULER", True, _switch)
    #: added to the wall clock for flow schedules (tests)
    clock_offset_seconds: float = _setting("CAO_CLOCK_OFFSET_SECONDS", 0.0, _offset)
    #: the orchestrator ends this long after its last connection and agent are gone
    orchestrator_grace: float = _setting("CAO_ORCHESTRATOR_GRACE", 3.0, _seconds())
    #: warm workers (profiles' `pool: N`): at most this many across all profiles
    pool_max_workers: int = _setting("CAO_POOL_MAX_WORKERS", 4, _count)
    #: warm workers: no new one starts while the warm ones' processes use this much memory (RSS, MiB)
    pool_max_memory_mb: int = _setting("CAO_POOL_MAX_MEMORY_MB", 2048, _count)
    #: `host: auto` puts a new agent only on a machine with this much memory available (MiB)
    agent_memory_mb: int = _setting("CAO_AGENT_MEMORY_MB", 400, _count)
    #: "point:marker": the sidecar kills itself there (crash tests, core.crash_hooks)
    test_kill_at: str = _setting("CAO_TEST_KILL_AT", "", str)
    # -- long handoffs (cao_sidecar/handoff_tickets.py) --
    #: an agent's handoff still running after this long returns a ticket (wait_for_result collects it)
    handoff_reply_after: float = _setting("CAO_HANDOFF_REPLY_AFTER", 300.0, _seconds(above=True))
    #: while a handoff runs, an MCP progress notification this often (when the caller asked for progress)
    handoff_progress_every: float = _setting("CAO_HANDOFF_PROGRESS_EVERY", 10.0, _seconds(above=True))
    #: the variables that were set but ignored, one readable line each
    problems: tuple[str, ...] = attrs.field(default=(), metadata={})

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        values: dict[str, Any] = {}
        problems: list[str] = []
        for field in attrs.fields(cls):
            env = field.metadata.get("env")
            if env is None:
                continue
            raw = environ.get(env, "").strip()
            if not raw:
                continue
            try:
                values[field.name] = field.metadata["parse"](raw)
            except ValueError:
                problems.append(f"ignoring {env}={raw!r}: not a valid value; using {field.default!r}")
        return cls(**values, problems=tuple(problems))


@functools.cache
def settings() -> Settings:
    """This process's settings (the environment as the process started with it)."""
    current = Settings.from_environ(os.environ)
    for problem in current.problems:
        log.warning("%s", problem)
    return current
