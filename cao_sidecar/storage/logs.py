"""Conversation logs under the state dir: what every agent's terminal showed, and what happened.

- `logs/<terminal id>.log`: the agent's terminal output as readable text. Escape sequences are
  stripped and a carriage return starts the line again (so a spinner redrawn in place leaves
  only its last frame), as the screen would have shown it.
- `logs/events.jsonl`: one JSON object per orchestration event (spawn, task sent, status change,
  answer, message, handoff/assign start and end, errors), with a timestamp.

Retention: files older than CAO_LOG_RETENTION_DAYS (default 14) are removed at start; the event
log is rotated once past 16 MB (one previous file kept). Credentials are never passed here.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Optional, TextIO

from cao_sidecar import paths

log = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"
ROTATE_BYTES = 16 * 1024 * 1024

# CSI, OSC (ended by BEL or ST), DCS/SOS/PM/APC strings, and two-byte ESC sequences.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-OQ-WYZ\\`a-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_INCOMPLETE_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|[PX^_][^\x1b]*|[ -/]*)?\Z")
_TERMINAL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTROLS = re.compile(r"[\x00-\x07\x0b\x0c\x0e-\x1f\x7f]")


def retention_days() -> float:
    from cao_sidecar.settings import settings

    return settings().log_retention_days


def _open_append(path: Path) -> TextIO:
    """A log file for appending: 0600, never through a symlink."""
    return os.fdopen(paths.open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "a", encoding="utf-8")


class _PaneText:
    """Turns one agent's raw terminal bytes into readable lines."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = _open_append(path)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._line = ""
        self._pending_escape = ""

    def feed(self, data: bytes) -> None:
        text = self._pending_escape + self._decoder.decode(data)
        # An escape sequence cut at the end of a chunk waits for the rest.
        cut = text.rfind("\x1b")
        if cut >= 0 and len(text) - cut < 4096 and _INCOMPLETE_ESCAPE.match(text, cut):
            text, self._pending_escape = text[:cut], text[cut:]
        else:
            self._pending_escape = ""
        text = _ESCAPES.sub("", text)
        out = []
        for part in re.split(r"(\r\n|\n|\r|\x08)", text):
            if part in ("\r\n", "\n"):
                out.append(self._line.rstrip() + "\n")
                self._line = ""
            elif part == "\r":
                self._line = ""
            elif part == "\x08":
                self._line = self._line[:-1]
            elif part:
                self._line += _CONTROLS.sub("", part)
        if out:
            self._file.write("".join(out))
            self._file.flush()

    def close(self) -> None:
        if self._line.strip():
            self._file.write(self._line.rstrip() + "\n")
        self._file.close()


class ConversationLogs:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._panes: dict[str, _PaneText] = {}
        self._last_write_warning = -1e9
        self._events_path = directory / EVENTS_FILE
        self._prune()
        self._events = _open_append(self._events_path)

    def _prune(self) -> None:
        cutoff = time.time() - retention_days() * 86400
        for path in self.directory.glob("*"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass

    # ---- terminal output ----------------------------------------------------------------------

    def output_path(self, terminal_id: str) -> Path:
        return self.directory / f"{terminal_id}.log"

    def output(self, terminal_id: str, data: bytes) -> None:
        try:
            pane = self._panes.get(terminal_id)
            if pane is None:
                pane = self._panes[terminal_id] = _PaneText(self.output_path(terminal_id))
            pane.feed(data)
        except OSError as exc:  # a full disk must not stop the agent's output being watched
            self._write_failed(exc)

    def close_output(self, terminal_id: str) -> None:
        pane = self._panes.pop(terminal_id, None)
        if pane is not None:
            try:
                pane.close()
            except OSError as exc:
                self._write_failed(exc)

    # ---- events -------------------------------------------------------------------------------

    def event(self, kind: str, terminal_id: Optional[str] = None, **fields: Any) -> None:
        record = {"at": round(time.time(), 6), "event": kind}
        if terminal_id is not None:
            record["terminalId"] = terminal_id
        record.update({k: v for k, v in fields.items() if v is not None})
        try:
            self._events.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            self._events.flush()
            if self._events.tell() > ROTATE_BYTES:
                self._events.close()
                os.replace(self._events_path, self._events_path.with_suffix(".jsonl.1"))
                self._events = _open_append(self._events_path)
        except OSError as exc:  # a full disk loses log lines, never the work they describe
            self._write_failed(exc)

    def _write_failed(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._last_write_warning > 60:
            self._last_write_warning = now
            log.warning("could not write the conversation logs in %s: %s", self.directory, exc)

    def close(self) -> None:
        for terminal_id in list(self._panes):
            self.close_output(terminal_id)
        try:
            self._events.close()
        except OSError as exc:
            self._write_failed(exc)


def read_events(
    directory: Path, terminal_id: Optional[str] = None, since: Optional[float] = None, limit: Optional[int] = None
) -> list[dict[str, Any]]:
    """Events, oldest first, optionally of one agent and/or after `since` (epoch seconds); the
    last `limit` of them."""
    events = [
        e
        for e in _iter_events(directory)
        if (terminal_id is None or e.get("terminalId") == terminal_id) and (since is None or e.get("at", 0) > since)
    ]
    return events[-limit:] if limit else events


def _iter_events(directory: Path) -> Iterator[dict[str, Any]]:
    for path in (directory / (EVENTS_FILE + ".1"), directory / EVENTS_FILE):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue  # a line cut by a crash
                    if isinstance(event, dict):
                        yield event
        except FileNotFoundError:
            continue


OUTPUT_TAIL_BYTES = 1024 * 1024


def read_output(directory: Path, terminal_id: str, tail_bytes: int = OUTPUT_TAIL_BYTES) -> str:
    """The agent's readable terminal log (its last `tail_bytes`), or "" if it has none."""
    if not _TERMINAL_ID.fullmatch(terminal_id):
        return ""  # never a path outside the log directory
    path = directory / f"{terminal_id}.log"
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - tail_bytes))
            data = handle.read()
    except OSError:
        return ""
    if size > tail_bytes:
        data = data[data.find(b"\n") + 1 :]  # start at a whole line
    return data.decode("utf-8", "replace")
