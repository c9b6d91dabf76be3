"""Markdown files with YAML frontmatter, read defensively, and the problems found in them.

Shared by agent profiles and flows. Everything here is a pure function of the bytes on disk:
no event loop, so a catalog may scan in a worker thread.

Safety rules (a profile or flow file may come from a cloned repository):
- YAML is loaded with the safe loader only; anchors and aliases are refused outright (no
  "billion laughs"), so are explicit tags that name Python objects; nesting is limited.
- Files are read only if they are regular files inside their directory (a link that leads out
  is refused), at most MAX_FILE_BYTES, and must be UTF-8.
- Names are 1-64 letters, digits, '_' or '-'; strings in fields may not hold control characters.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Optional

import attrs
import yaml

NAME_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
NAME_RULE = "1-64 letters, digits, '_' or '-'"
MAX_FILE_BYTES = 256 * 1024
MAX_FRONTMATTER_CHARS = 64 * 1024
MAX_DEPTH = 16
MAX_DIAGNOSTICS = 50
MAX_FILES_PER_DIR = 500
# C0 controls (tab and newline included), DEL and C1 controls.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_OPEN = re.compile(r"\A---[ \t]*\r?\n")
_CLOSE = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$\n?", re.M)

Severity = Literal["error", "warning"]


@attrs.define(frozen=True)
class Diagnostic:
    """One problem in a file. `line` is 1-based, `column` 0-based (characters)."""

    severity: Severity
    message: str
    line: int = 1
    column: int = 0
    end_column: Optional[int] = None  # None: to the end of the line
    held_back: Optional[str] = None  # what an untrusted folder's file does not get (TrustInfo.heldBack)

    def render(self, path: Path | str) -> str:
        """`path:line:column: severity: message`, one line whatever the path holds."""
        shown = CONTROL.sub(lambda m: repr(m.group())[1:-1], str(path))
        return f"{shown}:{self.line}:{self.column + 1}: {self.severity}: {self.message}"


def show(value: Any, limit: int = 60) -> str:
    """A value for a message: quoted, control characters escaped, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def yaml_type(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ---- reading a file --------------------------------------------------------------------------


class FileRefused(Exception):
    """The file is not read at all (wrong kind, too big, not UTF-8, leads outside)."""


def read_text(path: Path, directory: Path) -> str:
    """The text of `path`, a file directly in `directory`, read defensively."""
    if CONTROL.search(path.name):
        raise FileRefused("the file name contains control characters; rename the file")
    try:
        real = path.resolve(strict=True)
        real_dir = directory.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise FileRefused(f"cannot read the file: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    if real.parent != real_dir and real_dir not in real.parents:
        raise FileRefused(f"refused: the file is a link that leads outside {directory}")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileRefused(f"cannot read the file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused("not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise FileRefused(f"the file is larger than {MAX_FILE_BYTES // 1024} KiB")
        chunks = []
        size = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise FileRefused(f"the file is larger than {MAX_FILE_BYTES // 1024} KiB")
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileRefused(f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})") from None


def candidate_files(directory: Path) -> list[Path]:
    """The *.md files of a directory, in name order, without editors' temp and backup files."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = [directory / n for n in names if n.endswith(".md") and not n.startswith((".", "#", "~")) and len(n) > 3]
    return found[:MAX_FILES_PER_DIR]


# ---- frontmatter -----------------------------------------------------------------------------


# libyaml's parser when PyYAML has it (its wheels do): the same safe subset, several times
# faster than the pure-Python one (every profile and flow is read at start and on each change).
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):
    """The safe loader, with the key positions of the top-level mapping kept."""


@attrs.define
class Frontmatter:
    fields: dict[str, Any]
    key_marks: dict[str, tuple[int, int, int]]  # key -> (line, column, end column) in the file
    body: str
    body_line: int  # 1-based line where the body starts
    end_line: int  # 1-based line of the closing '---'

    def where(self, key: str) -> tuple[int, int, Optional[int]]:
        return self.key_marks.get(key, (2, 0, None))


class FrontmatterError(Exception):
    def __init__(self, message: str, line: int = 1, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def split_frontmatter(text: str) -> Frontmatter:
    """Parse `---` YAML `---` body. Raises FrontmatterError with a 1-based line."""
    if text.startswith("\ufeff"):
        text = text[1:]
    opening = _OPEN.match(text)
    if not opening:
        raise FrontmatterError(
            "missing YAML frontmatter: the file must start with a '---' line, then the fields, then a closing '---' line"
        )
    closing = _CLOSE.search(text, opening.end())
    if not closing:
        raise FrontmatterError("the frontmatter is not closed: add a '---' line after the fields", line=1)
    source = text[opening.end() : closing.start()]
    end_line = text.count("\n", 0, closing.start()) + 1
    body = text[closing.end() :]
    body_line = end_line + 1
    if len(source) > MAX_FRONTMATTER_CHARS:
        raise FrontmatterError(f"the frontmatter is longer than {MAX_FRONTMATTER_CHARS // 1024} KiB", line=2)
    fields, marks = _load_mapping(source)
    return Frontmatter(fields, marks, body, body_line, end_line)


def _file_line(mark: Any) -> int:
    return (mark.line + 2) if mark is not None else 2  # the frontmatter starts on line 2


def _file_column(mark: Any) -> int:
    return mark.column if mark is not None else 0


def _load_mapping(source: str) -> tuple[dict[str, Any], dict[str, tuple[int, int, int]]]:
    # First pass over the events: refuse aliases, Python tags and deep nesting before anything
    # is built (the safe loader would build an alias bomb as shared references, but whoever
    # walks the result later would not survive it).
    depth = 0
    try:
        for event in yaml.parse(source, Loader=_SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise FrontmatterError(
                    "YAML anchors and aliases (&name, *name) are not allowed in these files",
                    _file_line(event.start_mark),
                    _file_column(event.start_mark),
                )
            tag = getattr(event, "tag", None)
            if tag and (not tag.startswith("tag:yaml.org,2002:") or "python" in tag):
                shown = "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag
                raise FrontmatterError(
                    f"YAML tag '{shown}' is not allowed (files are loaded with YAML's safe subset)",
                    _file_line(event.start_mark),
                    _file_column(event.start_mark),
                )
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise FrontmatterError(
                        f"the fields are nested more than {MAX_DEPTH} levels deep", _file_line(event.start_mark)
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, source) from None
    except yaml.YAMLError as exc:
        raise FrontmatterError(f"bad YAML: {exc}", 2) from None

    loader = _Loader(source)
    try:
        node = loader.get_single_node()
        if node is None:
            raise FrontmatterError("the frontmatter is empty: it needs at least 'name'", 2)
        if not isinstance(node, yaml.MappingNode):
            raise FrontmatterError(
                "the frontmatter must be fields ('key: value' lines), not " + _node_kind(node),
                _file_line(node.start_mark),
            )
        marks: dict[str, tuple[int, int, int]] = {}
        for key_node, _value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise FrontmatterError(
                    "field names must be plain words", _file_line(key_node.start_mark), key_node.start_mark.column
                )
            key = key_node.value
            if key in marks:
                raise FrontmatterError(
                    f"field '{key}' is given twice (first on line {marks[key][0]})",
                    _file_line(key_node.start_mark),
                    key_node.start_mark.column,
                )
            end = key_node.end_mark.column if key_node.end_mark.line == key_node.start_mark.line else None
            marks[key] = (_file_line(key_node.start_mark), key_node.start_mark.column, end or 0)
        fields = loader.construct_document(node)
    except FrontmatterError:
        raise
    except yaml.constructor.ConstructorError as exc:
        raise _yaml_error(exc, source) from None
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, source) from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise FrontmatterError(f"bad YAML: {exc}", 2) from None
    finally:
        loader.dispose()
    return fields, marks


def _node_kind(node: Any) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a single value"


def _yaml_error(exc: yaml.MarkedYAMLError, source: str) -> FrontmatterError:
    mark = exc.problem_mark or exc.context_mark
    lines = source.splitlines()
    line_index = mark.line if mark is not None else 0
    column = mark.column if mark is not None else 0
    if line_index >= len(lines):
        # "found end of stream": point at the last line that says something instead.
        line_index = max((i for i, text in enumerate(lines) if text.strip()), default=0)
        column = 0
    problem = exc.problem or str(exc)
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        problem = f"{problem} (files are loaded with YAML's safe subset)"
    message = f"bad YAML: {problem}"
    if exc.context and exc.context not in problem:
        message = f"bad YAML: {exc.context}: {problem}"
    text = lines[line_index] if line_index < len(lines) else ""
    if re.match(r"\s*schedule\s*:\s*[*@]", text):
        message += '; quote the cron expression, e.g. schedule: "*/5 * * * *"'
    elif re.match(r"\s*[\w-]+\s*:\s*\*", text):
        message += "; a value that starts with '*' must be quoted"
    return FrontmatterError(message, line_index + 2, column)


# ---- checking fields -------------------------------------------------------------------------


class Checker:
    """Collects diagnostics while a file's fields are checked; each check returns a clean value."""

    def __init__(self, fm: Frontmatter) -> None:
        self.fm = fm
        self.diagnostics: list[Diagnostic] = []

    def add(self, severity: Severity, message: str, key: str | None = None, line: int | None = None) -> None:
        if len(self.diagnostics) >= MAX_DIAGNOSTICS:
            return
        if line is not None:
            self.diagnostics.append(Diagnostic(severity, message, line))
            return
        key_line, column, end = self.fm.where(key) if key else (2, 0, None)
        self.diagnostics.append(Diagnostic(severity, message, key_line, column, end or None))

    def error(self, message: str, key: str | None = None, line: int | None = None) -> None:
        self.add("error", message, key, line)

    def warning(self, message: str, key: str | None = None, line: int | None = None) -> None:
        self.add("warning", message, key, line)

    @property
    def failed(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def unknown_fields(self, known: Iterable[str], aliases: dict[str, str] | None = None, passed_on: str | None = None) -> None:
        """Warn about fields the format does not define. `passed_on`: where they go instead
        (e.g. profiles hand them to the provider as provider-specific options)."""
        known = list(known)
        for key in self.fm.fields:
            if key in known:
                continue
            hint = f" (did you mean '{aliases[key]}'?)" if aliases and key in aliases else suggest(key, known)
            fate = f"; {passed_on}" if passed_on else " and is ignored"
            self.warning(f"unknown field '{key}'{hint}{fate}", key)

    # Each getter reports a problem and returns None (or the default) when the value is unusable.

    def name(self, key: str = "name", required: bool = True) -> Optional[str]:
        value = self.fm.fields.get(key)
        if value is None:
            if required:
                self.error(f"missing required field '{key}' ({NAME_RULE})", key if key in self.fm.fields else None)
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.error(f"'{key}' must be a name ({NAME_RULE}), got {yaml_type(value)}", key)
            return None
        value = str(value)
        if not NAME_PATTERN.match(value):
            self.error(f"'{key}' must be {NAME_RULE}, got {show(value)}", key)
            return None
        return value

    def string(self, key: str, *, required: bool = False, max_len: int = 4096, fold: bool = False) -> Optional[str]:
        value = self.fm.fields.get(key)
        if value is None:
            if required:
                self.error(f"missing required field '{key}'", key if key in self.fm.fields else None)
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.error(f"'{key}' must be a string, got {yaml_type(value)}", key)
            return None
        value = str(value)
        if fold:
            value = " ".join(value.split())
        if CONTROL.search(value):
            self.error(f"'{key}' must not contain newlines or control characters", key)
            return None
        if len(value) > max_len:
            self.error(f"'{key}' is longer than {max_len} characters", key)
            return None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.fm.fields.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(f"'{key}' must be true or false, got {show(value) if isinstance(value, str) else yaml_type(value)}", key)
            return default
        return value

    def number(self, key: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self.fm.fields.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            self.error(f"'{key}' must be a number of seconds, got {yaml_type(value)}", key)
            return default
        if not minimum <= value <= maximum:
            self.error(f"'{key}' must be between {minimum:g} and {maximum:g}", key)
            return default
        return float(value)

    def string_list(self, key: str, *, comma_string: bool = True, max_items: int = 200) -> Optional[list[str]]:
        value = self.fm.fields.get(key)
        if value is None:
            return None
        if isinstance(value, str) and comma_string:
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            self.error(f"'{key}' must be a list of strings, got {yaml_type(value)}", key)
            return None
        if len(value) > max_items:
            self.error(f"'{key}' has more than {max_items} entries", key)
            return None
        out: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)) or str(item) == "":
                self.error(f"'{key}' item {index + 1} must be a non-empty string, got {yaml_type(item)}", key)
                return None
            item = str(item)
            if CONTROL.search(item) or len(item) > 512:
                self.error(f"'{key}' item {index + 1} must be one line of at most 512 characters", key)
                return None
            out.append(item)
        return out

    def string_map(
        self, key: str, value: Any, *, key_pattern: re.Pattern[str], key_rule: str, allow_newlines: bool = False
    ) -> Optional[dict[str, str]]:
        """A mapping of names to scalar values (numbers and booleans become strings)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(f"'{key}' must be a mapping of names to values, got {yaml_type(value)}", key)
            return None
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or not key_pattern.match(k):
                self.error(f"'{key}': {show(k)} is not a valid name ({key_rule})", key)
                return None
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, (int, float)):
                v = str(v)
            if not isinstance(v, str):
                self.error(f"'{key}': the value of '{k}' must be a string, got {yaml_type(v)}", key)
                return None
            bad = re.compile(r"[\x00]") if allow_newlines else CONTROL
            if bad.search(v):
                self.error(f"'{key}': the value of '{k}' must not contain control characters", key)
                return None
            out[k] = v
        return out


def check_file(
    path: Path,
    directory: Path,
    parse: Callable[[Frontmatter], tuple[Any, list[Diagnostic]]],
    text: str | None = None,
) -> tuple[Any, list[Diagnostic]]:
    """Read and parse one file; never raises for anything the file contains."""
    try:
        if text is None:
            text = read_text(path, directory)
        fm = split_frontmatter(text)
    except FileRefused as exc:
        return None, [Diagnostic("error", str(exc), 1)]
    except FrontmatterError as exc:
        return None, [Diagnostic("error", exc.message, exc.line, exc.column)]
    except RecursionError:
        return None, [Diagnostic("error", "the file is nested too deeply to read", 1)]
    return parse(fm)


def checked_working_directory(
    c: "Checker", base_dir: Optional[Path], failure: str, default: Optional[str] = None
) -> Optional[str]:
    """The file's `workingDirectory`, made absolute (relative to `base_dir`, `~` expanded);
    `default` when absent. A directory that does not exist is a warning: `failure` says what fails."""
    raw = c.string("workingDirectory", max_len=4096)
    if raw is None:
        return default
    expanded = os.path.expanduser(raw)
    if not os.path.isabs(expanded):
        if base_dir is None:
            c.error("'workingDirectory' must be an absolute path (or start with ~) in this file", "workingDirectory")
            return None
        expanded = str(base_dir / expanded)
    resolved = os.path.normpath(expanded)
    if not os.path.isdir(resolved):
        c.warning(f"workingDirectory {resolved} does not exist (yet); {failure} until it does", "workingDirectory")
    return resolved
