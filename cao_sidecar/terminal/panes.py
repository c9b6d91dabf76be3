"""The panes of our tmux server as we know them: names checked before they reach tmux, the
panes we started or adopted (session, window, pid), and their exits, each reported once.

A restarted tmux server numbers panes from ``%0`` again, so a pane id alone does not name a
process: the pid we saw decides whether an event is about the pane we know.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable

import attrs

from . import formats
from .errors import TmuxError
from .quoting import quote, quote_format

log = logging.getLogger("cao_sidecar.terminal")

CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_PANE_ID = re.compile(r"%[0-9]+\Z")


@attrs.define
class PaneInfo:
    """One agent window (one pane per window)."""

    pane_id: str  # "%12"
    window_id: str  # "@7"
    session: str
    window_name: str
    pid: int
    dead: bool
    dead_status: int | None


def pane_info(row: formats.Row) -> PaneInfo:
    """A PaneInfo from a ``formats.PANE`` row."""
    dead = row["pane_dead"] == "1"
    return PaneInfo(
        pane_id=row["pane_id"],
        window_id=row["window_id"],
        session=row["session_name"],
        window_name=row["window_name"],
        pid=formats.integer(row, "pane_pid"),
        dead=dead,
        dead_status=formats.dead_status(row) if dead else None,
    )


@attrs.define
class TrackedPane:
    session: str
    window_id: str
    pid: int


def check_pane_id(pane_id: str) -> None:
    if not isinstance(pane_id, str) or not _PANE_ID.match(pane_id):
        raise ValueError(f"not a tmux pane id: {pane_id!r}")


def check_name(kind: str, name: str, *, session: bool = False) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} must be a non-empty string")
    if CONTROL_CHARS.search(name):
        raise ValueError(f"{kind} must not contain control characters: {name!r}")
    if session and (":" in name or "." in name):
        # tmux silently replaces them with "_" and uses them as target separators
        raise ValueError(f"{kind} must not contain ':' or '.': {name!r}")


class PaneBook:
    """What we know about each pane, and its exit reporting: to the exit listeners once, never
    for a pane we killed, and as part of the answer (not an event) while ``new_window`` runs."""

    def __init__(self, *, unwatch: Callable[[str], None], closing: Callable[[], bool]) -> None:
        self._unwatch = unwatch
        self._closing = closing
        self._exit_listeners: list[Callable[[str, int | None], None]] = []
        self._tracked: dict[str, TrackedPane] = {}  # pane id -> what we know
        self._window_pane: dict[str, str] = {}  # window id -> pane id
        self._reported: set[str] = set()  # pane ids whose exit was reported (dead)
        self._suppressed: set[str] = set()  # pane ids we killed: no exit event
        self._creating: dict[str, tuple[int | None] | None] = {}  # new_window in progress

    def add_exit_listener(self, callback: Callable[[str, int | None], None]) -> None:
        self._exit_listeners.append(callback)

    def session_of(self, pane_id: str) -> str | None:
        tracked = self._tracked.get(pane_id)
        return tracked.session if tracked else None

    def pane_of_window(self, window_id: str) -> str | None:
        return self._window_pane.get(window_id)

    def exited(self, pane_id: str) -> bool:
        """Whether this pane's exit was reported."""
        return pane_id in self._reported

    def replaced(self, pane_id: str, pid: int) -> bool:
        """Whether ``pane_id`` names another process's pane now than ``pid``'s."""
        tracked = self._tracked.get(pane_id)
        return tracked is not None and tracked.pid != pid

    def settled(self, pane_id: str) -> bool:
        """Nothing more to report about this pane: closing, killed by us, or reported."""
        return self._closing() or pane_id in self._suppressed or pane_id in self._reported

    def report_exit(self, pane_id: str, status: int | None, pid: int | None = None) -> None:
        if pid is not None and self.replaced(pane_id, pid):
            # The exit of a pane that went with an earlier tmux server, whose id a new pane has
            # now: that pane did not exit. (Its agent learns from `new_window`'s id: core.)
            log.debug("pane %s: exit of pid %s, an earlier pane with this id; ignored", pane_id, pid)
            return
        if self.settled(pane_id):
            return
        self._reported.add(pane_id)
        self._unwatch(pane_id)
        if pane_id in self._creating:  # new_window is still running: it answers dead=True
            self._creating[pane_id] = (status,)
            return
        self.emit_exit(pane_id, status)

    def emit_exit(self, pane_id: str, status: int | None) -> None:
        log.debug("pane %s exited, status %s", pane_id, status)
        for callback in self._exit_listeners:
            try:
                callback(pane_id, status)
            except Exception:
                log.exception("exit listener failed for %s", pane_id)

    def created(self, pane_id: str, session: str, window_id: str, pid: int) -> None:
        """A pane ``new_window`` just made; until ``answered``, its exit is part of the answer."""
        # A restarted tmux server numbers panes from %0 again: whatever we remember about an
        # earlier pane with this id (exit reported, killed by us, its watcher) is not this pane.
        self._unwatch(pane_id)
        self._reported.discard(pane_id)
        self._suppressed.discard(pane_id)
        self._tracked[pane_id] = TrackedPane(session, window_id, pid)
        self._window_pane[window_id] = pane_id
        self._creating[pane_id] = None

    def answered(self, pane_id: str) -> tuple[int | None] | None:
        """``new_window`` answers now: the exit status it is to answer with, if the pane exited."""
        return self._creating.pop(pane_id, None)

    def not_answered(self, pane_id: str) -> None:
        """``new_window`` failed: nobody will see its answer, so an exit becomes an event."""
        pending = self._creating.pop(pane_id, None)
        if pending is not None:
            self.emit_exit(pane_id, pending[0])

    def adopt(self, pane: PaneInfo) -> bool:
        """A pane found on the server (``list_panes``); False for one we killed."""
        if pane.pane_id in self._suppressed:
            return False
        tracked = self._tracked.get(pane.pane_id)
        if tracked is None or tracked.pid != pane.pid:  # new, or its id was an earlier server's pane's
            self._tracked[pane.pane_id] = TrackedPane(pane.session, pane.window_id, pane.pid)
            self._window_pane[pane.window_id] = pane.pane_id
        return True

    def killing(self, pane_id: str) -> None:
        """We kill this pane: no exit event for it."""
        self._suppressed.add(pane_id)
        self._unwatch(pane_id)
        tracked = self._tracked.pop(pane_id, None)
        if tracked is not None:
            self._window_pane.pop(tracked.window_id, None)

    def window_gone(self, window_id: str, pane_id: str) -> None:
        """The window of ``pane_id`` is gone from the server."""
        if self._window_pane.get(window_id) != pane_id:
            return
        self._window_pane.pop(window_id, None)
        self._tracked.pop(pane_id, None)
        if pane_id in self._suppressed or pane_id in self._reported:
            self._unwatch(pane_id)
            return
        # Closed by someone else while its process may still run: the pane is gone.
        self.report_exit(pane_id, None)

    def forget_windows(self) -> None:
        self._tracked.clear()
        self._window_pane.clear()


def new_window_line(session: str, window_name: str, argv: list[str], *, env: dict[str, str], cwd: str) -> str:
    """The control-mode `new-window` command that runs ``argv`` (no shell) in ``session``;
    every name and argument is checked and quoted. Raises ValueError or TmuxError."""
    check_name("session name", session, session=True)
    check_name("window name", window_name)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a non-empty list of strings")
    for key, value in env.items():
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise ValueError(f"bad environment variable {key!r}")
    cwd = os.path.abspath(cwd)
    # One stat of a local directory; a thread hop would queue every new window behind the executor.
    if not os.path.isdir(cwd):
        raise TmuxError(f"no such directory: {cwd}")
    # tmux runs a single-element command through `sh -c STRING`: keep it literal.
    args = list(argv) if len(argv) > 1 else ["/bin/sh", "-c", 'exec "$0"', argv[0]]
    parts = [
        "new-window",
        "-d",
        "-P",
        "-F",
        quote(formats.NEW_WINDOW.format),
        "-t",
        quote(f"={session}:"),
        "-n",
        quote_format(window_name),
        "-c",
        quote_format(cwd),
    ]
    for key, value in env.items():
        parts += ["-e", quote(f"{key}={value}")]
    parts.append("--")
    parts += [quote(a) for a in args]
    return " ".join(parts)
