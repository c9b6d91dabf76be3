"""tmux format strings built from field names, and their output rows read back by name.

The idiom of libtmux's ``neo.get_output_format`` / ``parse_output``: a ``Fields`` tuple names the
tmux format variables (``pane_id``, ``@cao-view`` for a user option) once; the ``-F`` string and
the parsing of each reply row both come from it, so no code indexes a row by position.

Fields are joined with the unit separator (0x1f), which tmux prints as is and which never occurs
in our session or window names (they refuse control characters). Put a field that may hold free
text (a window name) last: the last field keeps any separator found in its value.
"""

from __future__ import annotations

from collections.abc import Iterable

SEPARATOR = "\x1f"

Row = dict[str, str]


class Fields(tuple[str, ...]):
    """The names of a format's fields, in order."""

    def __new__(cls, *names: str) -> Fields:
        if not names or len(set(names)) != len(names):
            raise ValueError(f"format fields must be distinct and at least one: {names!r}")
        return super().__new__(cls, names)

    @property
    def format(self) -> str:
        """The tmux format string (``-F``, ``display-message -p``) that prints these fields."""
        return SEPARATOR.join("#{" + name + "}" for name in self)

    def parse(self, line: str | bytes) -> Row | None:
        """One output row as {field name: value}; None if it does not have every field."""
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        values = text.split(SEPARATOR, len(self) - 1)
        if len(values) != len(self):
            return None
        return dict(zip(self, values, strict=True))

    def parse_rows(self, lines: Iterable[str | bytes]) -> list[Row]:
        """Every complete row of a reply (others are skipped)."""
        return [row for row in map(self.parse, lines) if row is not None]


def dead_status(row: Row) -> int | None:
    """Exit status of a dead pane from its ``pane_dead_status`` / ``pane_dead_signal`` fields;
    a signal death is reported as 128 + signal (shell style); None if tmux does not know."""
    status, signal = row.get("pane_dead_status", "").strip(), row.get("pane_dead_signal", "").strip()
    try:
        if status:
            return int(status)
        if signal:
            return 128 + int(signal)
    except ValueError:
        return None
    return None


def integer(row: Row, name: str, default: int = 0) -> int:
    """A numeric field (a pid), or `default` when tmux printed something else."""
    value = row.get(name, "")
    return int(value) if value.isdigit() else default


# ---- the formats the sidecar uses ----------------------------------------------------------

#: A pane of ours, as list_panes reports it.
PANE = Fields(
    "pane_id",
    "window_id",
    "pane_pid",
    "pane_dead",
    "pane_dead_status",
    "pane_dead_signal",
    "session_name",
    "@cao-view",
    "window_name",
)
#: What new-window -P prints about the window it made.
NEW_WINDOW = Fields("pane_id", "pane_pid", "window_id")
#: Where a fresh control client is attached, and the server's pid.
CLIENT = Fields("session_id", "session_name", "window_id", "pid", "window_name")
#: Whether a pane's process has exited, and how.
DEAD = Fields("pane_dead", "pane_dead_status", "pane_dead_signal")
#: The same for every pane (the slow exit check).
PANE_DEAD = Fields("pane_id", "pane_dead", "pane_dead_status", "pane_dead_signal")
SESSION = Fields("session_id", "session_name")
WINDOW = Fields("window_id", "window_name")
SESSION_WINDOW = Fields("session_id", "window_name")
SERVER = Fields("socket_path", "version", "pid")
CURSOR = Fields("cursor_x", "cursor_y")
