"""Reading the question an agent waits on (status `waiting_user_answer`) from its screen.

Agent CLIs ask in a few shapes: a numbered menu ("❯ 1. Yes" / "2. No"), a shortcut menu
("→ Run (once) (y)" / "Skip (esc or n)"), or a question line ending in a marker such as "[y/n]",
"[y/n/t]" or "(Y)es/(N)o [Yes]:". `read_prompt` finds the question and its choices, and for each
choice what to type so the CLI takes it: a key (a menu digit or shortcut letter, pressed alone) or a
text followed by Enter. A screen with a question but no recognisable choices gives a prompt without
choices: the answer is free text. Pure functions (no I/O); the providers' unit tests feed them
captured screens.
"""

from __future__ import annotations

import re
from typing import Optional

import attrs

# How far up from the bottom a question and its menu may be.
_BOTTOM_LINES = 30
_MAX_TEXT = 300
_MAX_DETAIL = 600

_BOX = "│┃║|╭╮╰╯─━"
_CURSOR = "❯›>●→▸▶*"
_MENU_LINE = re.compile(rf"^[{re.escape(_CURSOR)}]?\s*(\d{{1,2}})[.)]\s+(\S.*)$")
_CURSOR_LINE = re.compile(rf"^[{re.escape(_CURSOR)}]\s+(\S.*)$")
# "(y)", "(esc)", "(esc or n)", "(Esc)" at the end of a menu entry: its shortcut.
_SHORTCUT = re.compile(r"\s*\(((?:esc|[a-z])(?:\s+or\s+(?:esc|[a-z]))*)\)\s*$", re.IGNORECASE)
# Question-line markers: "[y/n]", "(y/n)", "[y/n/t]", "[Y/n]", "(Y)es/(N)o [Yes]", "(Y)es/(N)o/(A)ll".
_SLASH_MARKER = re.compile(r"[\[(]\s*([a-z](?:\s*/\s*[a-z])+)\s*[\])]\s*:?\s*[›>]?\s*$", re.IGNORECASE)
_WORD_MARKER = re.compile(r"((?:\([A-Z]\)[A-Za-z' ]*?/?)+)\s*(?:\[[^\]]*\])?\s*:?\s*$")
_WORD_PART = re.compile(r"\(([A-Z])\)([A-Za-z' ]*)")
_LETTER_NAMES = {"y": "Yes", "n": "No", "a": "Always", "t": "Trust", "s": "Skip", "q": "Quit", "d": "Don't ask again"}
# Key hints under a menu ("Esc to cancel · Tab to amend", "enter continue · esc back").
_FOOTER = re.compile(
    r"(?i)^(?:esc to cancel|press enter|enter to (?:confirm|select)|↑/↓|\(esc\)|tab to amend)|^(?=.*\b(?:esc|enter)\b).*·"
)


@attrs.frozen
class Choice:
    """One answer the user can pick, and how to give it to the CLI."""

    label: str
    key: Optional[str] = None  # a tmux key name pressed alone ("1", "y", "Escape")
    text: Optional[str] = None  # or a text typed and then Enter

    def __attrs_post_init__(self) -> None:
        if (self.key is None) == (self.text is None):
            raise ValueError("a choice is given by exactly one of key or text")


@attrs.frozen
class ScreenPrompt:
    """What the screen asks: the question, lines that explain it (a command, a file), the choices."""

    text: str
    choices: tuple[Choice, ...] = ()
    detail: str = ""

    def same_as(self, other: Optional["ScreenPrompt"]) -> bool:
        return other is not None and (self.text, self.choices, self.detail) == (other.text, other.choices, other.detail)


def _clean(line: str) -> str:
    """A screen line without box-drawing borders and padding."""
    line = line.strip()
    line = line.strip(_BOX).strip()
    return line


def _shorten(text: str, limit: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _menu_choice(number: str, label: str) -> Choice:
    shortcut = _SHORTCUT.search(label)
    if shortcut:
        label = label[: shortcut.start()]
    return Choice(label=label.strip(), key=number)


def _shortcut_choice(label: str) -> Optional[Choice]:
    """A menu entry without a number: usable only if it names its shortcut key."""
    shortcut = _SHORTCUT.search(label)
    if not shortcut:
        return None
    keys = [k.strip() for k in re.split(r"\s+or\s+", shortcut.group(1))]
    letters = [k for k in keys if len(k) == 1]
    key = letters[0].lower() if letters else "Escape"
    return Choice(label=label[: shortcut.start()].strip(), key=key)


def _find_menu(lines: list[str]) -> Optional[tuple[int, int, list[Choice]]]:
    """The lowest menu on the screen: (first line index, last line index, choices)."""
    end = len(lines) - 1
    while end >= 0 and (not lines[end] or _FOOTER.match(lines[end])):
        end -= 1
    numbered: list[tuple[int, str, str]] = []
    i = end
    while i >= 0:
        m = _MENU_LINE.match(lines[i])
        if m:
            numbered.append((i, m.group(1), m.group(2)))
            i -= 1
            continue
        # A wrapped entry's second line sits between two numbered entries: skip it.
        if numbered and lines[i] and i - 1 >= 0 and _MENU_LINE.match(lines[i - 1]) and not lines[i].endswith("?"):
            i -= 1
            continue
        break
    if len(numbered) >= 2:
        numbered.reverse()
        numbers = [int(n) for _, n, _ in numbered]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            return numbered[0][0], numbered[-1][0], [_menu_choice(n, label) for _, n, label in numbered]
    # A shortcut menu: "→ Run (once) (y)" / "Skip (esc or n)".
    entries: list[tuple[int, Choice]] = []
    i = end
    while i >= 0 and lines[i]:
        m = _CURSOR_LINE.match(lines[i])
        choice = _shortcut_choice(m.group(1) if m else lines[i])
        if choice is None:
            break
        entries.append((i, choice))
        i -= 1
    if len(entries) >= 2:
        entries.reverse()
        return entries[0][0], entries[-1][0], [c for _, c in entries]
    return None


def _marker_choices(line: str) -> Optional[tuple[str, list[Choice]]]:
    """A question line ending in a y/n-style marker: (the line without it, choices)."""
    m = _SLASH_MARKER.search(line)
    if m:
        letters = [x.strip() for x in m.group(1).split("/")]
        choices = [Choice(label=_LETTER_NAMES.get(x.lower(), x.upper()), text=x.lower()) for x in letters]
        return line[: m.start()].rstrip(" :›>"), choices
    m = _WORD_MARKER.search(line)
    if m and len(_WORD_PART.findall(m.group(1))) >= 2:
        choices = [Choice(label=(letter + rest).strip(), text=letter.lower()) for letter, rest in _WORD_PART.findall(m.group(1))]
        return line[: m.start()].rstrip(" :›>"), choices
    return None


def _question_above(lines: list[str], start: int) -> tuple[str, str]:
    """The question above line `start` (the nearest line ending in '?', else one holding a '?',
    within a few lines) and the detail: the other lines of the block (a command, a path)."""
    window = range(start - 1, max(-1, start - 13), -1)
    q_index = next((i for i in window if len(lines[i]) > 1 and lines[i].endswith("?")), -1)
    if q_index < 0:
        q_index = next((i for i in window if "?" in lines[i]), -1)
    anchor = q_index if q_index >= 0 else start
    # The block: up to 6 lines above the anchor, across single blank lines, not across two.
    top = anchor
    i = anchor - 1
    while i >= 0 and anchor - i <= 6:
        if not lines[i] and (i == 0 or not lines[i - 1]):
            break
        top = i
        i -= 1
    detail_lines = [line for k, line in enumerate(lines[top:start], top) if line and k != q_index]
    question = lines[q_index] if q_index >= 0 else (detail_lines.pop() if detail_lines else "")
    return question, "\n".join(detail_lines)


def _strip_heads(text: str) -> str:
    return re.sub(r"^[?●◆◇△⚠!]\s*", "", text).strip()


def read_prompt(screen: str) -> ScreenPrompt:
    """The question at the bottom of `screen` and its choices (see the module's docstring)."""
    raw = screen.rstrip().splitlines()[-_BOTTOM_LINES:]
    lines = [_clean(line) for line in raw]
    menu = _find_menu(lines)
    if menu is not None:
        first, _last, choices = menu
        question, detail = _question_above(lines, first)
        return ScreenPrompt(
            text=_shorten(_strip_heads(question), _MAX_TEXT) or "choose an answer",
            choices=tuple(choices),
            detail=_shorten(detail, _MAX_DETAIL) if detail else "",
        )
    # The last non-empty line: a question with a marker, or the answer line under a question.
    end = len(lines) - 1
    while end >= 0 and not lines[end]:
        end -= 1
    if end >= 0:
        marked = _marker_choices(lines[end])
        if marked is not None:
            question, choices = marked
            if not _strip_heads(question):
                question, detail = _question_above(lines, end)
            else:
                # The block right above the question line (one blank line between at most), up
                # to 4 lines: what it is about (a file name, a command).
                bottom = end - 1 if end > 0 and lines[end - 1] else end - 2
                top = bottom + 1
                while top > 0 and lines[top - 1] and bottom - top < 3:
                    top -= 1
                detail = "\n".join(lines[top : bottom + 1]) if bottom >= 0 else ""
            return ScreenPrompt(
                text=_shorten(_strip_heads(question), _MAX_TEXT) or "yes or no?",
                choices=tuple(choices),
                detail=_shorten(detail, _MAX_DETAIL) if detail else "",
            )
    for line in reversed(lines):
        text = _strip_heads(line)
        if text.endswith("?") and len(text) > 1:
            return ScreenPrompt(text=_shorten(text, _MAX_TEXT))
    return ScreenPrompt(text="needs your answer")


def match_choice(prompt: ScreenPrompt, answer: str) -> Optional[Choice]:
    """The choice `answer` names: its label (any case, surrounding blanks ignored), or its number in
    the list (1 = the first). None when it names none."""
    wanted = answer.strip().casefold()
    for choice in prompt.choices:
        if choice.label.casefold() == wanted:
            return choice
    if wanted.isdigit() and 1 <= int(wanted) <= len(prompt.choices):
        return prompt.choices[int(wanted) - 1]
    return None
