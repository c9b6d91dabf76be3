"""The sidecar's CAO_* settings (cao_sidecar.settings): typed, defaults, bad values ignored."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from cao_sidecar.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_without_environment():
    settings = Settings.from_environ({})
    assert settings == Settings()
    assert settings.ready_timeout == 30.0 and settings.flows_scheduler is True and settings.problems == ()


def test_values_are_typed():
    settings = Settings.from_environ(
        {
            "CAO_TMUX_SOCKET": "mine",
            "CAO_READY_TIMEOUT": "3",
            "CAO_MIN_FREE_BYTES": "0",
            "CAO_FLOWS_SCHEDULER": "off",
            "CAO_CLOCK_OFFSET_SECONDS": "-3600",
            "CAO_ASK_TIMEOUT": "0.2",
            "CAO_ACP_DEFAULT_PROFILE": "lead",
        }
    )
    assert settings.tmux_socket == "mine"
    assert settings.ready_timeout == 3.0
    assert settings.min_free_bytes == 0
    assert settings.flows_scheduler is False
    assert settings.clock_offset_seconds == -3600.0
    assert settings.ask_timeout == 1.0  # at least one second
    assert settings.acp_default_profile == "lead"
    assert settings.problems == ()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CAO_READY_TIMEOUT", "soon"),
        ("CAO_READY_TIMEOUT", "0"),
        ("CAO_READY_TIMEOUT", "nan"),
        ("CAO_EVENT_GRACE", "-1"),
        ("CAO_MIN_FREE_BYTES", "1.5"),
        ("CAO_MIN_FREE_BYTES", "-1"),
        ("CAO_CLOCK_OFFSET_SECONDS", "inf"),
        ("CAO_CLOCK_OFFSET_SECONDS", "1e12"),
        ("CAO_ACP_TURN_TIMEOUT", "x"),
    ],
)
def test_a_bad_value_is_ignored_and_named(variable: str, value: str):
    settings = Settings.from_environ({variable: value})
    field = next(f for f in attrs.fields(Settings) if f.metadata.get("env") == variable)
    assert getattr(settings, field.name) == field.default
    assert len(settings.problems) == 1 and variable in settings.problems[0] and repr(value) in settings.problems[0]


def test_empty_means_unset():
    assert Settings.from_environ({"CAO_READY_TIMEOUT": "  ", "CAO_TMUX_SOCKET": ""}) == Settings()


# paths.py is what the --stdio/--acp forwarders call, and they import only the standard library
# (tests/test_forwarder_imports.py): it reads this one setting itself, blank meaning unset too.
READ_OUTSIDE_SETTINGS = {("cao_sidecar/paths.py", "CAO_TMUX_SOCKET")}


def test_the_sidecar_reads_cao_variables_only_through_settings():
    """No module outside settings.py reads a sidecar setting from the environment itself (but the
    forwarders' one, above)."""
    names = {f.metadata["env"] for f in attrs.fields(Settings) if "env" in f.metadata}
    pattern = re.compile(r"environ(?:\.get\(|\[)\s*[\"'](CAO_[A-Z_]+)")
    readers = {
        (path.relative_to(ROOT).as_posix(), name)
        for path in (ROOT / "cao_sidecar").rglob("*.py")
        if path.name != "settings.py"
        for name in pattern.findall(path.read_text())
        if name in names
    }
    assert readers == READ_OUTSIDE_SETTINGS
