"""Quote arguments for tmux's command parser (tmux 3.3a), and decode ``%output`` data.

A control-mode command is one line of text parsed by tmux's command parser
(``cmd-parse.y``), so every argument we build from outside data (argv of an agent,
environment values, directories, window and session names) must come out of that
parser exactly as we meant it. Measured on tmux 3.3a, inside a double-quoted string:

* ``\\\\``, ``\\"`` and ``\\$`` give a literal backslash, quote and dollar sign;
  an unescaped ``$NAME`` / ``${NAME}`` is replaced by an environment variable.
* ``~`` at the start of a double-quoted string is replaced by ``$HOME`` (even
  ``"~"``), so we always write it as the octal escape ``\\176``.
* ``\\NNN`` (octal, first digit 0-3), ``\\uXXXX``, ``\\UXXXXXXXX`` and ``\\a \\b \\e
  \\f \\n \\r \\s \\t \\v`` are understood; ``\\xNN`` is not. We write every control
  character (and DEL) as octal, so the command stays on one line.
* ``#``, ``;``, ``{``, ``}``, ``'`` and a leading ``-`` are literal inside quotes.
* Arguments that tmux later *format-expands* (``new-window -c`` and ``-n``,
  ``rename-session``) additionally need ``#`` doubled: use :func:`quote_format`.
* Raw UTF-8 passes through; the bytes of a ``surrogateescape``-decoded string (a
  file name that is not UTF-8) are written as octal escapes, so they round-trip.

NUL cannot be represented (tmux strings are C strings): :class:`ValueError`.
"""

from __future__ import annotations

import re

__all__ = ["quote", "quote_format", "format_escape", "unescape_output", "command_line"]

_TABLE: dict[int, str] = {c: f"\\{c:03o}" for c in range(1, 0x20)}
_TABLE[0x7F] = "\\177"
_TABLE[ord("\\")] = "\\\\"
_TABLE[ord('"')] = '\\"'
_TABLE[ord("$")] = "\\$"
_TABLE[ord("~")] = "\\176"
# surrogateescape'd bytes (U+DC80..U+DCFF) -> octal escape of the original byte
for _b in range(0x80, 0x100):
    _TABLE[0xDC00 + _b] = f"\\{_b:03o}"

_BAD = re.compile("[\x00\ud800-\udc7f\udd00-\udfff]")


def quote(value: str) -> str:
    """Return ``value`` as one tmux command-parser token that is taken literally."""
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    bad = _BAD.search(value)
    if bad is not None:
        if bad.group() == "\x00":
            raise ValueError("tmux arguments cannot contain NUL")
        raise ValueError(f"unencodable lone surrogate {bad.group()!r} in tmux argument")
    return '"' + value.translate(_TABLE) + '"'


def format_escape(value: str) -> str:
    """Escape ``value`` for an argument tmux format-expands (``#`` -> ``##``)."""
    return value.replace("#", "##")


def quote_format(value: str) -> str:
    """Quote an argument that tmux also format-expands (``-c``, ``-n``, session names)."""
    return quote(format_escape(value))


def command_line(*parts: str) -> str:
    """Join already-quoted/trusted parts into one control-mode command line."""
    line = " ".join(parts)
    if "\n" in line or "\r" in line:
        raise ValueError("a control-mode command must be a single line")
    return line


_OCTAL = re.compile(rb"\\([0-7]{3})")


def unescape_output(data: bytes) -> bytes:
    """Decode the DATA of a ``%output %PANE DATA`` line (tmux escapes bytes < 0x20 and ``\\`` as octal)."""
    if b"\\" not in data:
        return data
    return _OCTAL.sub(lambda m: bytes((int(m.group(1), 8) & 0xFF,)), data)
