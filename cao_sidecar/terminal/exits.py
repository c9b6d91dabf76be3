"""Pane process exits as events: a pidfd per pane, a slow check where pidfds are missing.

When a pane's pidfd becomes readable its process has exited, but tmux has yet to reap it and close
the pty before ``#{pane_dead}`` turns 1 and the exit status is known: ``confirm`` asks tmux a few
times, quickly at first. tmux 3.3a sometimes misses a SIGCHLD (the pane stays a zombie without a
status until some other child exits); ``nudge_server`` sends it one, which is harmless (its handler
only runs ``waitpid(WNOHANG)``). Without pidfds (old kernels) every watched pane is checked every
``FALLBACK_INTERVAL`` seconds with one ``list-panes``.

The watcher reports through ``report(pane_id, status, pid)`` (``pid``: the process it watched, so
the server can tell a report about an earlier pane whose id a restarted tmux server gave to a new
one); what tmux says comes from the two queries the server gives it, so this module never talks
to tmux itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .errors import TmuxError

log = logging.getLogger("cao_sidecar.terminal")

# After the pidfd fires tmux still has to reap the child and close the pty before
# #{pane_dead} turns 1: re-check a few times, quickly at first.
CONFIRM_DELAYS = (0.0, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
FALLBACK_INTERVAL = 2.0

#: (dead, exit status) of one pane; raises TmuxError (PaneGone) when the pane is gone.
DeadState = Callable[[str], Awaitable[tuple[bool, "int | None"]]]
#: pane id -> (dead, exit status) of every pane; None when tmux has no session left at all.
DeadStates = Callable[[], Awaitable["dict[str, tuple[bool, int | None]] | None"]]


class PaneExitWatcher:
    def __init__(
        self,
        *,
        dead_state: DeadState,
        dead_states: DeadStates,
        report: Callable[[str, "int | None", "int | None"], None],
        settled: Callable[[str], bool],
        server_pid: Callable[[], int | None],
        replaced: Callable[[str, int], bool] = lambda pane_id, pid: False,
    ) -> None:
        self._dead_state = dead_state
        self._dead_states = dead_states
        self._report = report
        self._settled = settled  # nothing more to learn about this pane (reported, killed, closing)
        # The pane id names another process's pane now (a restarted tmux server numbers panes
        # from %0 again): what tmux says about the id is not about the pane we watched.
        self._replaced = replaced
        self._server_pid = server_pid
        self._pidfds: dict[str, int] = {}  # pane id -> pidfd being watched
        self._pids: dict[str, int] = {}  # pane id -> the pid its pidfd watches
        self._slow: dict[str, int] = {}  # pane id -> pid, watched by the slow check
        self._slow_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def watching(self, pane_id: str) -> bool:
        return pane_id in self._pidfds or pane_id in self._slow

    def watching_slowly(self, pane_id: str) -> bool:
        """Watched by the slow check (no pidfd for it)."""
        return pane_id in self._slow

    def watch(self, pane_id: str, pid: int) -> None:
        """Report the exit of ``pid`` (the process of ``pane_id``)."""
        if self.watching(pane_id) or self._settled(pane_id):
            return
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._spawn(self.confirm(pane_id, pid))
            return
        except (AttributeError, OSError) as exc:
            log.debug("pidfd_open(%s) failed (%s): slow liveness check for %s", pid, exc, pane_id)
            self._slow[pane_id] = pid
            if self._slow_task is None or self._slow_task.done():
                self._slow_task = asyncio.get_running_loop().create_task(self._slow_loop())
            return
        self._pidfds[pane_id] = fd
        self._pids[pane_id] = pid
        asyncio.get_running_loop().add_reader(fd, self._on_pidfd, pane_id)

    def unwatch(self, pane_id: str) -> None:
        fd = self._pidfds.pop(pane_id, None)
        self._pids.pop(pane_id, None)
        if fd is not None:
            try:
                asyncio.get_running_loop().remove_reader(fd)
            except RuntimeError:  # loop closed
                pass
            os.close(fd)
        self._slow.pop(pane_id, None)

    def _on_pidfd(self, pane_id: str) -> None:
        pid = self._pids.get(pane_id)
        self.unwatch(pane_id)
        self._spawn(self.confirm(pane_id, pid))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # referenced until done, so it cannot be collected mid-way
        task.add_done_callback(self._tasks.discard)

    def nudge_server(self) -> None:
        """Send SIGCHLD to the tmux server so it reaps exited panes (see the module doc)."""
        pid = self._server_pid()
        if pid is None:
            return
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                if not f.read().startswith(b"tmux"):
                    return
            os.kill(pid, signal.SIGCHLD)
        except OSError:
            pass

    async def confirm(self, pane_id: str, pid: int | None = None) -> None:
        """The pane's process (``pid``, if known) has exited: read its status from tmux and
        report it."""
        status: int | None = None
        dead = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        for delay in CONFIRM_DELAYS:
            if delay:
                await asyncio.sleep(delay)
            if self._settled(pane_id):
                return
            if pid is not None and self._replaced(pane_id, pid):
                status = None  # its pane went with an earlier tmux server; the id is another's
                break
            try:
                dead, status = await self._dead_state(pane_id)
            except TmuxError as exc:  # PaneGone included: the window is gone, status unknown
                log.debug("pane %s: exit status unknown: %s", pane_id, exc)
                status = None
                break
            if dead and status is not None:
                break
            if dead or loop.time() - started > 0.1:
                # pane_dead turns 1 when tmux closes the pty (its last output is read by
                # then); the status comes with SIGCHLD, which tmux 3.3a sometimes misses.
                # Don't nudge early while the pty is open: reaping first makes tmux close
                # the pty and drop output it has not read yet. Later (a background child
                # may hold the pty open forever) the nudge is what makes tmux notice.
                self.nudge_server()
        else:
            log.debug("pane %s: process exited but tmux shows no exit status (dead=%s)", pane_id, dead)
        self._report(pane_id, status, pid)

    async def _slow_loop(self) -> None:
        nudged: set[str] = set()
        while self._slow:
            await asyncio.sleep(FALLBACK_INTERVAL)
            try:
                states = await self._dead_states()
            except TmuxError as exc:
                log.debug("liveness check failed: %s", exc)
                continue
            for pane_id, pid in list(self._slow.items()):
                if self._settled(pane_id):
                    self._slow.pop(pane_id, None)
                    continue
                state = states.get(pane_id) if states is not None else None
                if state is None or self._replaced(pane_id, pid):
                    self._report(pane_id, None, pid)  # the pane (or every session) is gone
                    continue
                dead, status = state
                if not dead:
                    continue
                if status is None and pane_id not in nudged:
                    nudged.add(pane_id)  # reap it and read the status next round
                    self.nudge_server()
                    continue
                self._report(pane_id, status, pid)

    async def close(self) -> None:
        """Stop watching everything; pending confirmations are cancelled."""
        for pane_id in list(self._pidfds):
            self.unwatch(pane_id)
        self._slow.clear()
        if self._slow_task is not None:
            self._slow_task.cancel()
            self._slow_task = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
