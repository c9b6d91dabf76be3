"""Raw terminal input → key events, with bracketed paste.

The parser works on decoded text (the agent decodes UTF-8 incrementally before feeding it), so a
multi-byte character split across reads is never cut. Events are tuples:

    ("text", str)     literal text: a printable run typed, or (part of) a bracketed paste
    ("paste_start",)  ESC[200~ seen; everything up to ESC[201~ is literal text
    ("paste_end",)    ESC[201~ seen
    ("enter",)        CR outside a paste
    ("backspace",)    DEL or BS outside a paste
    ("ctrl_c",) ("ctrl_d",) ("esc",)

A lone ESC cannot be told from the start of an escape sequence until more input arrives or a short
time passes: the parser keeps it pending, and the agent calls `timeout()` once input has been quiet
for ESC_TIMEOUT seconds. Other escape sequences (arrows, function keys, focus events) are dropped.
"""

from __future__ import annotations

PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"
ESC_TIMEOUT = 0.05  # seconds of quiet after which a pending ESC is the Esc key

Event = tuple  # ("kind",) or ("text", str)


def _partial_suffix(data: str, marker: str) -> int:
    """Length of the longest suffix of `data` that is a proper prefix of `marker`."""
    for size in range(min(len(marker) - 1, len(data)), 0, -1):
        if data.endswith(marker[:size]):
            return size
    return 0


def _printable_run_end(data: str, start: int) -> int:
    end = start
    n = len(data)
    while end < n:
        ch = data[end]
        if ch < " " or ch == "\x7f" or "\x80" <= ch <= "\x9f":
            break
        end += 1
    return end


class InputParser:
    def __init__(self) -> None:
        self.in_paste = False
        self.pending = ""  # an incomplete escape sequence, or a partial paste-end marker

    @property
    def waiting_for_more(self) -> bool:
        """True when a pending ESC (outside a paste) will turn into the Esc key on `timeout()`."""
        return bool(self.pending) and not self.in_paste

    def timeout(self) -> list[Event]:
        if not self.waiting_for_more:
            return []
        pending, self.pending = self.pending, ""
        return [("esc",)] if pending == "\x1b" else []  # an unfinished sequence is dropped

    def feed(self, text: str) -> list[Event]:
        data = self.pending + text if self.pending else text
        self.pending = ""
        events: list[Event] = []
        i = 0
        n = len(data)
        while i < n:
            if self.in_paste:
                j = data.find(PASTE_END, i)
                if j < 0:
                    keep = _partial_suffix(data[max(i, n - len(PASTE_END)) :], PASTE_END)
                    if n - keep > i:
                        events.append(("text", data[i : n - keep]))
                    self.pending = data[n - keep :]
                    return events
                if j > i:
                    events.append(("text", data[i:j]))
                events.append(("paste_end",))
                self.in_paste = False
                i = j + len(PASTE_END)
                continue
            ch = data[i]
            if ch == "\x1b":
                if i + 1 >= n:
                    self.pending = data[i:]
                    break
                nxt = data[i + 1]
                if nxt == "[":
                    k = i + 2
                    while k < n and "0" <= data[k] <= "?":  # parameter bytes
                        k += 1
                    while k < n and " " <= data[k] <= "/":  # intermediate bytes
                        k += 1
                    if k >= n:
                        self.pending = data[i:]
                        break
                    if "@" <= data[k] <= "~":
                        if data[i : k + 1] == PASTE_START:
                            self.in_paste = True
                            events.append(("paste_start",))
                        i = k + 1  # any other CSI (arrows, focus ...) is dropped
                    else:
                        i += 2  # malformed: drop ESC [ and read on
                elif nxt == "O":  # SS3 (application-mode arrows, F1-F4)
                    if i + 2 >= n:
                        self.pending = data[i:]
                        break
                    i += 3
                elif nxt == "\x1b":
                    events.append(("esc",))  # ESC ESC: the first one was the Esc key
                    i += 1
                else:
                    i += 2  # Alt+key: dropped
            elif ch == "\r":
                events.append(("enter",))
                i += 1
            elif ch == "\n" or ch == "\t":
                events.append(("text", ch))  # Ctrl-J / Tab insert themselves
                i += 1
            elif ch == "\x7f" or ch == "\x08":
                events.append(("backspace",))
                i += 1
            elif ch == "\x03":
                events.append(("ctrl_c",))
                i += 1
            elif ch == "\x04":
                events.append(("ctrl_d",))
                i += 1
            elif ch < " " or "\x80" <= ch <= "\x9f":
                i += 1  # other controls typed outside a paste: ignored
            else:
                end = _printable_run_end(data, i)
                events.append(("text", data[i:end]))
                i = end
        return events
