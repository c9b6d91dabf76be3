"""What the mock agent draws: the glyphs (a contract shared with providers/mock.py) and the helpers
that turn arbitrary text into safe, line-oriented screen output.

Stdlib only and import-light: the agent imports this at startup.
"""

from __future__ import annotations

# ---- the screen contract (providers/mock.py reads screens by these) -------------------------------

BANNER_PREFIX = "cao mock agent · "
PROMPT = "›"  # the input line: "› " + typed text
ANSWER_HEAD = "●"  # first line of an answer: "● " + text
CONTINUATION = "  "  # following lines of an answer or a question
ERROR_HEAD = "✗ Error:"  # "✗ Error: " + text (one logical line)
QUESTION_HEAD = "?"  # "? " + question
ASK_PROMPT = "  [y/n] ›"  # the answer input line of a question: "  [y/n] › " + typed text
INTERRUPTED_LINE = "■ interrupted by user"
SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPINNER_TEXT = " working (esc to interrupt)"
SPINNER_INTERVAL = 0.08  # seconds between spinner frames
INPUT_LINE_MAX = 200  # characters of the first input line kept on a finalised prompt line


def banner(profile: str) -> str:
    return f"{BANNER_PREFIX}profile {profile or '(none)'} · ready"


def goodbye(profile: str) -> str:
    return f"{BANNER_PREFIX}profile {profile or '(none)'} · bye"


def is_spinner_line(line: str) -> bool:
    return len(line) >= 2 and line[0] in SPINNER_FRAMES and line[1:] == SPINNER_TEXT


# ---- sanitising ------------------------------------------------------------------------------------


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x20):
        table[code] = "^" + chr(0x40 + code)  # ^@ .. ^_ (BEL is ^G, CR is ^M)
    table[0x1B] = "␛"
    table[0x09] = "    "  # a tab is harmless, but spaces keep the capture predictable
    table[0x7F] = "^?"
    for code in range(0x80, 0xA0):
        table[code] = f"\\x{code:02x}"  # C1 controls (CSI 0x9b, OSC 0x9d ...) as text
    return table


_SANITIZE = _build_table()


def sanitize(text: str) -> str:
    """`text` (one line: no LF) with every control character made visible, so that nothing pasted
    (escape sequences, BEL, C1 controls) can change the real terminal's title, colours or screen."""
    return text.translate(_SANITIZE)


def char_cells(text: str) -> int:
    """Terminal cells `text` takes (wide East Asian characters count 2, combining marks 0)."""
    if text.isascii():
        return len(text)
    import unicodedata  # only for non-ASCII text; keeps startup lean

    cells = 0
    for ch in text:
        if ord(ch) < 0x300:
            cells += 1
        elif unicodedata.combining(ch) or ch in "\u200b\u200c\u200d\ufe0f":
            continue
        elif unicodedata.east_asian_width(ch) in ("W", "F"):
            cells += 2
        else:
            cells += 1
    return cells


def clip_cells(text: str, cells: int) -> str:
    """`text` cut so that it fits in `cells` terminal cells (an ellipsis marks the cut)."""
    if char_cells(text) <= cells:
        return text
    out = []
    used = 0
    for ch in text:
        width = char_cells(ch)
        if used + width > cells - 1:
            break
        out.append(ch)
        used += width
    return "".join(out) + "…"


def input_summary(text: str) -> str:
    """How an input shows on its prompt line: first line, sanitised, cut to 200 characters, plus
    " [+N lines]" when the input has more lines. Cheap for megabyte inputs."""
    end = text.find("\n")
    first = text if end < 0 else text[:end]
    line = sanitize(first[:INPUT_LINE_MAX])[:INPUT_LINE_MAX]
    if end >= 0:
        line += f" [+{text.count(chr(10))} lines]"
    return line


def block(head: str, text: str) -> str:
    """A multi-line block: `head` + first line, then CONTINUATION + each following line (CRLF line
    ends, since the terminal is in raw mode)."""
    lines = text.split("\n")
    out = [f"{head} {sanitize(lines[0])}" if lines[0] else head]
    out.extend(CONTINUATION + sanitize(line) for line in lines[1:])
    return "\r\n".join(out) + "\r\n"
