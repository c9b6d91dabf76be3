"""Layered directories of Markdown definitions (profiles, flows): scan, shadow, keep the last good.

A `LayeredCatalog` is given its directories highest priority first. `scan()` reads them (pure,
safe in a worker thread); `apply()` (on the event loop) merges a scan into the catalog:

- a name defined in a higher layer shadows the same name in lower layers;
- two files of one directory that define the same name: the later file (by file name) is an
  error and ignored;
- a file that turns bad keeps its last good definition in force (marked stale) and gets the
  diagnostics; a deleted file is forgotten;
- a layer of an untrusted folder (`trusted=False`) comes last, so it never shadows anything: a
  definition it loses is told so on its file.

`apply()` says what changed, so the caller can notify the editor and publish diagnostics.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, Callable, Generic, Optional, TypeVar

import attrs

from cao_sidecar.profiles.files import Diagnostic, Frontmatter, candidate_files, check_file, read_text, FileRefused

T = TypeVar("T")
SCOPES = ("workspace", "user", "builtin")


@attrs.define(frozen=True)
class Layer:
    scope: str  # workspace | user | builtin
    directory: Path
    base_dir: Optional[Path] = None  # what relative paths inside its files are relative to
    trusted: bool = True  # False: a workspace folder the user has not trusted (cao_sidecar.trust)


@attrs.define
class FileResult(Generic[T]):
    path: Path
    layer: Layer
    item: Optional[T]
    diagnostics: list[Diagnostic]


@attrs.define
class Entry(Generic[T]):
    """A definition in force: the item, its file, what it shadows, whether it is a stale copy."""

    item: T
    name: str
    path: Path
    layer: Layer
    shadows: list[Path] = attrs.field(factory=list)
    stale: bool = False


@attrs.define
class Changes:
    entries_changed: bool
    diagnostics: dict[Path, list[Diagnostic]]  # files whose diagnostics changed (empty list: cleared)


ParseFn = Callable[[Frontmatter, Layer, Path], "tuple[Optional[T], list[Diagnostic]]"]


class LayeredCatalog(Generic[T]):
    def __init__(self, layers: list[Layer], parse: ParseFn, name_of: Callable[[T], str], kind: str) -> None:
        self._layers = list(layers)
        self._parse = parse
        self._name_of = name_of
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._last_good: dict[Path, tuple[T, Layer]] = {}
        self._file_diagnostics: dict[Path, list[Diagnostic]] = {}  # from parsing, per file
        self._extra_diagnostics: dict[Path, list[Diagnostic]] = {}  # cross-checks (set by owners)
        self._published: dict[Path, list[Diagnostic]] = {}
        self._cache: dict[tuple[Path, Layer], tuple[bytes, Any, list[Diagnostic]]] = {}
        self._cache_lock = threading.Lock()

    # ---- configuration --------------------------------------------------------------------

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def set_layers(self, layers: list[Layer]) -> None:
        self._layers = list(layers)

    def directories(self) -> list[Path]:
        return [layer.directory for layer in self._layers]

    # ---- scanning (any thread) ------------------------------------------------------------

    def scan(self, context: str = "") -> list[FileResult[T]]:
        """Read and parse every file of every layer, highest priority first. `context` is what
        else parsing depends on (e.g. the known providers): a file is parsed again when it changes."""
        results: list[FileResult[T]] = []
        seen: set[Path] = set()
        for layer in list(self._layers):
            for path in candidate_files(layer.directory):
                if path in seen:
                    continue
                seen.add(path)
                results.append(self._scan_file(path, layer, context))
        with self._cache_lock:
            for key in [k for k in self._cache if k[0] not in seen]:
                del self._cache[key]
        return results

    def _scan_file(self, path: Path, layer: Layer, context: str = "") -> FileResult[T]:
        try:
            text = read_text(path, layer.directory)
        except FileRefused as exc:
            return FileResult(path, layer, None, [Diagnostic("error", str(exc), 1)])
        digest = hashlib.blake2b((context + "\0" + text).encode("utf-8"), digest_size=16).digest()
        with self._cache_lock:
            cached = self._cache.get((path, layer))
        if cached is not None and cached[0] == digest:
            return FileResult(path, layer, cached[1], list(cached[2]))
        item, diagnostics = check_file(path, layer.directory, lambda fm: self._parse(fm, layer, path), text)
        with self._cache_lock:
            self._cache[(path, layer)] = (digest, item, list(diagnostics))
        return FileResult(path, layer, item, diagnostics)

    # ---- merging (event loop) -------------------------------------------------------------

    def apply(self, results: list[FileResult[T]]) -> Changes:
        present = {r.path for r in results}
        for path in [p for p in self._last_good if p not in present]:
            del self._last_good[path]
        file_diagnostics: dict[Path, list[Diagnostic]] = {}
        by_name: dict[str, list[Entry[T]]] = {}
        claimed: dict[tuple[Path, str], Path] = {}  # (directory, name) -> first file
        for result in results:
            diagnostics = list(result.diagnostics)
            item, stale = result.item, False
            if item is not None:
                self._last_good[result.path] = (item, result.layer)
            elif result.path in self._last_good and self._last_good[result.path][1] == result.layer:
                item, stale = self._last_good[result.path][0], True
                name = self._name_of(item)
                diagnostics.append(
                    Diagnostic(
                        "warning",
                        f"the last good version of {self.kind} '{name}' stays in use until the errors are fixed",
                        1,
                    )
                )
            if item is not None:
                name = self._name_of(item)
                first = claimed.get((result.layer.directory, name))
                if first is not None:
                    diagnostics.append(
                        Diagnostic(
                            "error",
                            f"{self.kind} '{name}' is already defined in {first.name} in this directory; this file is ignored",
                            1,
                        )
                    )
                else:
                    claimed[(result.layer.directory, name)] = result.path
                    by_name.setdefault(name, []).append(Entry(item, name, result.path, result.layer, stale=stale))
            if diagnostics:
                file_diagnostics[result.path] = diagnostics
        entries: dict[str, Entry[T]] = {}
        for name, defs in by_name.items():
            top = defs[0]
            top.shadows = [d.path for d in defs[1:]]
            entries[name] = top
            for lost in defs[1:]:
                if not lost.layer.trusted and top.layer.trusted:
                    file_diagnostics.setdefault(lost.path, []).append(self._not_shadowing(name, top, lost))
        changed = _entry_key(entries) != _entry_key(self._entries)
        self._entries = entries
        self._file_diagnostics = file_diagnostics
        return Changes(changed, self._diagnostic_changes())

    def _not_shadowing(self, name: str, top: Entry[T], lost: Entry[T]) -> Diagnostic:
        from cao_sidecar.trust import how_to_trust

        which = "built-in" if top.layer.scope == "builtin" else top.layer.scope
        folder = lost.layer.base_dir or lost.path.parent
        return Diagnostic(
            "warning",
            f"this folder is not trusted: {self.kind} '{name}' does not replace the {which} one, which stays in force; "
            + how_to_trust(folder),
            1,
            held_back=f"{self.kind} {name}: the {which} one stays in force",
        )

    def set_extra_diagnostics(self, extra: dict[Path, list[Diagnostic]]) -> dict[Path, list[Diagnostic]]:
        """Replace the cross-check diagnostics; returns the per-file changes to publish."""
        self._extra_diagnostics = {p: d for p, d in extra.items() if d}
        return self._diagnostic_changes()

    def _diagnostic_changes(self) -> dict[Path, list[Diagnostic]]:
        current: dict[Path, list[Diagnostic]] = {}
        for source in (self._file_diagnostics, self._extra_diagnostics):
            for path, diagnostics in source.items():
                current.setdefault(path, []).extend(diagnostics)
        changes = {p: d for p, d in current.items() if self._published.get(p) != d}
        for path in self._published:
            if path not in current:
                changes[path] = []
        self._published = current
        return changes

    # ---- queries --------------------------------------------------------------------------

    def get(self, name: str) -> Optional[Entry[T]]:
        return self._entries.get(name)

    def entries(self) -> list[Entry[T]]:
        return sorted(self._entries.values(), key=lambda e: e.name)

    def diagnostics(self) -> dict[Path, list[Diagnostic]]:
        return {p: list(d) for p, d in self._published.items()}


def _entry_key(entries: dict[str, Entry[Any]]) -> Any:
    return sorted(
        (n, e.item, str(e.path), e.layer.scope, e.layer.trusted, [str(s) for s in e.shadows], e.stale) for n, e in entries.items()
    )
