"""What text may be typed into an agent's terminal, by how the CLI reads its input.

A CLI that takes bracketed paste receives a message as one paste: its line breaks and control
characters are text. A line-oriented CLI (one that does not take bracketed paste: Aider, Kiro and
Amazon Q, user-defined providers unless they say otherwise) reads the same bytes as keys: every
line break ends an input (the rest arrives as further inputs) and ^C interrupts it. For those the
text is made one line (line breaks and tabs become spaces) and any other control character is
refused with a clear error; text the sidecar relays (a worker's answer to its assigner) has them
shown instead (`^C`), so that nothing is lost.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cao_sidecar.core.errors import InvalidRequest

if TYPE_CHECKING:
    from cao_sidecar.providers.base import Provider

_LINE_BREAKS = re.compile(r"[ \t]*(?:\r\n|[\r\n\u2028\u2029\x85])[ \t]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def takes_bracketed_paste(provider: "Provider") -> bool:
    return provider.bracketed_paste


def text_for_agent(provider: "Provider", text: str, field: str, *, strict: bool = True) -> str:
    """`text` as it may be typed into an agent of `provider`: with `strict`, InvalidRequest if it
    holds a control character the CLI would take as a key; otherwise such characters are shown."""
    if takes_bracketed_paste(provider):
        return text
    flat = _LINE_BREAKS.sub(" ", text).replace("\t", " ")
    if not strict:
        return _CONTROL.sub(_visible, flat)
    bad = _CONTROL.search(flat)
    if bad is not None:
        raise InvalidRequest(
            f"field '{field}' contains the control character U+{ord(bad.group()):04X}; provider "
            f"'{provider.name}' reads its input as key presses (^C would interrupt it): remove it",
            field=field,
        )
    return flat


def _visible(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return "^" + chr(code + 64) if code < 0x20 else "^?" if code == 0x7F else f"<U+{code:04X}>"
