"""Watch a few directories, which may not exist yet, with watchfiles (inotify), never polling.

Each target directory is watched without recursion, together with its parent (so its own
deletion or renaming is seen). A target that does not exist is watched through its nearest
existing ancestor; when it appears, the watch moves onto it and the target is rescanned. The
watch runs in watchfiles' thread: the event loop only gets the grouped changes (`step` = 10 ms,
ENGINEERING §4), and `on_change` is called with the targets whose contents may have changed.

Editors save atomically (write a temp file, rename it over the file): the callers rescan a whole
directory on any change, so temp names, and the order the events come in, do not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Optional

from watchfiles import awatch

log = logging.getLogger(__name__)

STEP_MS = 20  # watchfiles poll step: ~30 ms reload latency for ~0.2% of a core when idle
SETTLE_SECONDS = 0.05  # rescan once more after the watch moved: what changed while it moved
RETRY_SECONDS = 0.5
STARTUP_RESCAN_SECONDS = 0.3


def watch_set(targets: Iterable[Path]) -> set[Path]:
    paths: set[Path] = set()
    for target in targets:
        if target.is_dir():
            paths.add(target)
            paths.add(target.parent)
            continue
        ancestor = target.parent
        while not ancestor.is_dir() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        paths.add(ancestor)
    return paths


def affected(targets: Iterable[Path], changed: Iterable[str]) -> set[Path]:
    """The targets a batch of changed paths may concern: a file in it, it, or one of its parents."""
    hits: set[Path] = set()
    changed_paths = [Path(p) for p in changed]
    for target in targets:
        for path in changed_paths:
            if path.parent == target or path == target or path in target.parents:
                hits.add(target)
                break
    return hits


class DirWatcher:
    def __init__(self, targets: Iterable[Path], on_change: Callable[[set[Path]], None], *, step_ms: int = STEP_MS) -> None:
        self._targets: list[Path] = list(dict.fromkeys(targets))
        self._on_change = on_change
        self._step = step_ms
        self._task: Optional[asyncio.Task[None]] = None
        self._restart = asyncio.Event()
        self._stop: Optional[asyncio.Event] = None
        self._closed = False
        self._polling = False
        self.watching: set[Path] = set()

    @property
    def targets(self) -> list[Path]:
        return list(self._targets)

    def start(self, after: Optional[Callable[[], Awaitable[None]]] = None) -> None:
        """Watch from now on, or once `after()` returns (the first watch costs the event loop
        about 10 ms: the orchestrator starts it once an editor's first spawn is served)."""
        self._task = asyncio.get_running_loop().create_task(self._run(after), name="cao-dir-watcher")

    def _rescan_soon(self) -> None:
        # awatch sets up its watches in a thread a moment later and reports nothing from before:
        # look once more after that, so a save made while it started is not missed.
        asyncio.get_running_loop().call_later(STARTUP_RESCAN_SECONDS, self._fire, set(self._targets))

    def set_targets(self, targets: Iterable[Path]) -> None:
        self._targets = list(dict.fromkeys(targets))
        self._restart.set()
        if self._stop is not None:
            self._stop.set()

    async def close(self) -> None:
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        self._restart.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self, after: Optional[Callable[[], Awaitable[None]]]) -> None:
        loop = asyncio.get_running_loop()
        if after is not None:
            await after()
        self._rescan_soon()  # also what changed while it waited
        previous: Optional[set[Path]] = None
        while not self._closed:
            targets = list(self._targets)
            paths = watch_set(targets)
            if previous is not None and paths != previous:
                # The watch moves (a directory appeared or went): whatever changed meanwhile.
                self._fire(set(targets))
                loop.call_later(SETTLE_SECONDS, self._fire, set(targets))
            previous = paths
            self.watching = paths
            self._restart.clear()
            stop = asyncio.Event()
            self._stop = stop
            if not paths:
                await self._restart.wait()
                continue
            try:
                async with contextlib.aclosing(
                    awatch(
                        *sorted(paths),
                        watch_filter=None,
                        step=self._step,
                        stop_event=stop,
                        recursive=False,
                        ignore_permission_denied=True,
                        force_polling=self._polling or None,
                        poll_delay_ms=300,
                    )
                ) as changes_iter:
                    async for changes in changes_iter:
                        hits = affected(targets, (p for _change, p in changes))
                        if hits:
                            self._fire(hits)
                        if self._restart.is_set() or watch_set(targets) != paths:
                            break
            except asyncio.CancelledError:
                stop.set()
                raise
            except FileNotFoundError:
                await asyncio.sleep(0.02)  # a directory went away between the check and the watch
            except Exception as exc:  # noqa: BLE001 - e.g. the inotify watch limit
                if not self._polling:
                    log.warning("cannot watch %s (%s); falling back to polling every 300 ms", sorted(map(str, paths)), exc)
                    self._polling = True
                else:
                    log.warning("cannot watch %s: %s", sorted(map(str, paths)), exc)
                    await asyncio.sleep(RETRY_SECONDS)

    def _fire(self, hits: set[Path]) -> None:
        if self._closed:
            return
        try:
            self._on_change(hits)
        except Exception:
            log.exception("change handler failed")
