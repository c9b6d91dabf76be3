"""tmux format strings built from field names and rows parsed by name (cao_sidecar.terminal.formats),
alone and against a real tmux server (its own ``-L cao-fmt-*`` socket)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from cao_sidecar.terminal import formats
from cao_sidecar.terminal.formats import SEPARATOR, Fields
from cao_sidecar.terminal.tmux import default_socket_path

TMUX = shutil.which("tmux") or "tmux"


def test_format_string_names_each_field_in_order():
    fields = Fields("pane_id", "@cao-view", "window_name")
    assert fields.format == "#{pane_id}\x1f#{@cao-view}\x1f#{window_name}"
    assert list(fields) == ["pane_id", "@cao-view", "window_name"]


def test_rows_are_read_by_name_from_text_and_bytes():
    fields = Fields("pane_id", "pane_pid", "window_name")
    assert fields.parse("%3\x1f1234\x1fagent") == {"pane_id": "%3", "pane_pid": "1234", "window_name": "agent"}
    assert fields.parse("%3\x1f1234\x1fünï".encode()) == {"pane_id": "%3", "pane_pid": "1234", "window_name": "ünï"}


def test_a_short_row_is_not_a_row():
    fields = Fields("pane_id", "pane_pid", "window_name")
    assert fields.parse("%3\x1f1234") is None
    assert fields.parse("") is None
    assert fields.parse_rows(["%1\x1f1\x1fa", "garbage", b"%2\x1f2\x1fb"]) == [
        {"pane_id": "%1", "pane_pid": "1", "window_name": "a"},
        {"pane_id": "%2", "pane_pid": "2", "window_name": "b"},
    ]


def test_the_last_field_keeps_separators_in_its_value():
    fields = Fields("pane_id", "window_name")
    assert fields.parse(f"%1{SEPARATOR}odd{SEPARATOR}name") == {"pane_id": "%1", "window_name": f"odd{SEPARATOR}name"}


def test_field_names_must_be_distinct():
    with pytest.raises(ValueError):
        Fields("pane_id", "pane_id")
    with pytest.raises(ValueError):
        Fields()


@pytest.mark.parametrize(
    ("status", "signal", "expected"),
    [("3", "", 3), ("0", "", 0), ("", "9", 137), ("", "", None), ("x", "", None), ("", "y", None), (" ", " ", None)],
)
def test_dead_status(status: str, signal: str, expected: int | None):
    assert formats.dead_status({"pane_dead_status": status, "pane_dead_signal": signal}) == expected


def test_integer_field():
    assert formats.integer({"pane_pid": "42"}, "pane_pid") == 42
    assert formats.integer({"pane_pid": ""}, "pane_pid") == 0
    assert formats.integer({}, "pane_pid", -1) == -1


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_every_format_of_the_sidecar_parses_what_tmux_prints():
    """Each named format, printed by a real tmux for a real pane, parses into every field."""
    socket = f"cao-fmt-{secrets.token_hex(4)}"

    def tmux(*args: str) -> str:
        return subprocess.run(
            [TMUX, "-L", socket, "-f", "/dev/null", *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    try:
        tmux("new-session", "-d", "-s", "fmt", "-n", "win #1 ✓", "sleep", "60")
        tmux("set-option", "-t", "fmt", "@cao-view", "1")
        for name in dir(formats):
            fields = getattr(formats, name)
            if not isinstance(fields, Fields):
                continue
            printed = tmux("display-message", "-p", "-t", "fmt:", fields.format).rstrip("\n")
            row = fields.parse(printed)
            assert row is not None and set(row) == set(fields), (name, printed)
        pane = formats.PANE.parse(tmux("list-panes", "-a", "-F", formats.PANE.format).rstrip("\n"))
        assert pane is not None
        assert pane["session_name"] == "fmt" and pane["window_name"] == "win #1 ✓" and pane["@cao-view"] == "1"
        assert pane["pane_id"].startswith("%") and pane["window_id"].startswith("@") and pane["pane_pid"].isdigit()
        assert pane["pane_dead"] == "0" and formats.dead_status(pane) is None
    finally:
        subprocess.run([TMUX, "-L", socket, "kill-server"], capture_output=True, timeout=10)
        Path(default_socket_path(socket)).unlink(missing_ok=True)  # tmux 3.3a leaves it
