"""Warm workers: for each profile with `pool: N`, N started, idle, fresh agents, so a handoff or
assign to that profile starts at once instead of waiting seconds for a CLI to boot.

- A warm worker is an agent with `pooled` set: hidden from the user's agents (`cao/listAgents`,
  the editors' status) and from other agents (`list_sessions`, messages by id or name), and it
  never gets any input, so it carries no previous task's context.
- `take(spec)` hands a ready one to a handoff or assign: from then on it is an ordinary worker of
  that task (torn down after it unless kept, like any new worker). The pool starts a replacement
  in the background at once.
- Limits: `CAO_POOL_MAX_WORKERS` warm workers in all, and no new one while the warm ones'
  processes use `CAO_POOL_MAX_MEMORY_MB` or more (their RSS).
- Profile changes refresh the pool (a changed profile's warm workers are replaced, a removed
  profile's are stopped); `close()` (the orchestrator ends) stops them all: warm workers never
  outlive the orchestrator, unlike the user's agents. A successor stops any a crash left behind
  (their ids are kept in `pool-<tmux socket>.json` in the state dir).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Optional

from cao_sidecar import paths
from cao_sidecar.core.agent import Agent
from cao_sidecar.core.events import StatusChanged
from cao_sidecar.core.spec import WorkerSpec
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.core.supervisor import READY_TIMEOUT, AgentSupervisor
from cao_sidecar.profiles.profile import Profile

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = 30.0  # a warm worker that failed to start: try that profile again after this
# A replacement starts once the taken worker's task is over, or after this long: a CLI booting
# (seconds of CPU) next to the task would slow the very handoff the pool is there to speed up.
REPLACE_AT_LATEST = 15.0
TASK_OVER = (AgentStatus.COMPLETED, AgentStatus.ERROR, AgentStatus.EXITED)


class WorkerPool:
    def __init__(self, supervisor: AgentSupervisor, *, max_workers: int, max_memory_mb: int) -> None:
        self._supervisor = supervisor
        self.max_workers = max_workers
        self.max_memory_mb = max_memory_mb
        self._warm: dict[str, list[Agent]] = {}  # profile name -> its warm workers (starting or ready)
        self._ready: set[str] = set()  # terminal ids of warm workers that take input
        self._launches: dict[str, asyncio.Task[None]] = {}  # terminal id -> its launch, while it runs
        self._profiles: dict[str, Profile] = {}  # the definition each profile's warm workers run
        self._fill: Optional[asyncio.Task[None]] = None
        self._wake = asyncio.Event()
        self._failed_at: dict[str, float] = {}
        self._closed = False
        self._record = supervisor.state_dir / f"pool-{supervisor.tmux.socket_name}.json"

    # ---- queries ------------------------------------------------------------------------------

    def wanted(self) -> dict[str, int]:
        """Profile name -> how many warm workers it asks for (the catalog as it is now)."""
        return {p.name: p.pool for p in self._supervisor.catalog.all() if p.pool > 0}

    def warm_workers(self) -> list[Agent]:
        return [a for agents in self._warm.values() for a in agents]

    # ---- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Stop the warm workers a crashed predecessor left, then keep the pool filled."""
        for terminal_id in await asyncio.to_thread(self._read_record):
            agent = self._supervisor.agents.get(terminal_id)
            if agent is not None and agent.turn is None and agent.last_answer is None:
                log.info("stopping warm worker %s left by a previous orchestrator", terminal_id)
                agent.pooled = True
                await self._supervisor.discard(agent)
        await self._save_record()
        self._fill = asyncio.get_running_loop().create_task(self._keep_filled())
        self.refresh()

    def refresh(self) -> None:
        """The profiles changed (or a worker was taken, or exited): stop warm workers whose
        profile is gone, changed or asks for fewer, and wake the filler."""
        if self._closed:
            return
        wanted = self.wanted()
        for name, agents in list(self._warm.items()):
            current = self._current_profile(name)
            stale = [a for a in agents if current is None or self._profiles.get(name) != current or not a.alive]
            surplus = max(0, len(agents) - len(stale) - wanted.get(name, 0))
            fresh = [a for a in agents if a not in stale]
            # Starting ones go first when there are too many: they serve no one yet.
            fresh.sort(key=lambda a: a.terminal_id in self._ready)
            for agent in stale + fresh[:surplus]:
                self._stop(agent)
        self._failed_at = {k: v for k, v in self._failed_at.items() if k in wanted}
        self._wake.set()

    async def close(self) -> None:
        """Stop every warm worker (windows and processes) and the filler."""
        self._closed = True
        if self._fill is not None:
            self._fill.cancel()
            with contextlib.suppress(BaseException):
                await self._fill
        agents = self.warm_workers()
        self._warm.clear()
        self._ready.clear()
        for agent in agents:  # not the launches of workers already taken: their tasks wait on them
            launch = self._launches.pop(agent.terminal_id, None)
            if launch is not None:
                launch.cancel()
        await asyncio.gather(*(self._supervisor.discard(a) for a in agents), return_exceptions=True)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._record.unlink, True)

    # ---- taking a worker ----------------------------------------------------------------------

    def take(self, spec: WorkerSpec) -> Optional[Agent]:
        """A warm worker (a ready one, else one still starting: see `until_started`) that fits
        `spec` exactly (profile, provider, folder, session; no name, no worktree, the profile's
        model), now an ordinary worker; None if the pool has none."""
        if self._closed or spec.name is not None or spec.worktree or spec.base_ref or spec.model or spec.pooled:
            return None
        profile = self._current_profile(spec.profile)
        if profile is None or profile.worktree or self._profiles.get(spec.profile) != profile:
            return None
        if spec.provider not in (None, profile.provider):
            return None
        session = spec.session or self._supervisor.default_session
        folder = os.path.abspath(os.path.expanduser(spec.working_directory)) if spec.working_directory else None
        # A ready one first; else one still starting (the task waits only for the rest of its boot).
        candidates = sorted(self._warm.get(spec.profile, []), key=lambda a: a.terminal_id not in self._ready)
        for agent in candidates:
            ready = agent.terminal_id in self._ready
            if not agent.alive or agent.terminating or (ready and agent.busy):
                continue
            if not ready and agent.terminal_id not in self._launches:
                continue
            if agent.session != session or (folder is not None and agent.working_directory != folder):
                continue
            self._forget(agent)
            agent.pooled = False
            self._supervisor.stores.logs.event("pool.take", agent.terminal_id, profile=profile.name)
            # The user's agent from now on: every face hears of it as of a new agent.
            self._supervisor.events.emit(StatusChanged(agent, None, agent.status))
            self._record_soon()
            self._supervisor.spawn_background(self._replace_after(agent))
            return agent
        return None

    async def until_started(self, agent: Agent) -> None:
        """Wait until a taken worker that was still starting is ready (raises as its launch did)."""
        launch = self._launches.get(agent.terminal_id)
        if launch is not None:
            await asyncio.shield(launch)

    # ---- filling ------------------------------------------------------------------------------

    async def _keep_filled(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._fill_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the pool must keep working for later changes
                log.exception("filling the worker pool failed")

    async def _fill_once(self) -> None:
        """Start warm workers, one at a time, until each profile has its N or a limit is hit."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            name = self._next_profile(loop.time())
            if name is None:
                return
            if await self._memory_mb() >= self.max_memory_mb:
                log.info("worker pool: warm workers use %d MiB or more; no new one starts", self.max_memory_mb)
                return
            if not await self._start_one(name):
                self._failed_at[name] = loop.time()
                loop.call_later(RETRY_AFTER_FAILURE, self._wake.set)

    def _next_profile(self, now: float) -> Optional[str]:
        if len(self.warm_workers()) >= self.max_workers:
            return None
        for name, size in self.wanted().items():
            if len(self._warm.get(name, [])) < size and now - self._failed_at.get(name, -1e9) >= RETRY_AFTER_FAILURE:
                return name
        return None

    async def _start_one(self, name: str) -> bool:
        profile = self._current_profile(name)
        if profile is None:
            return True
        try:
            agent = self._supervisor.create(WorkerSpec(name, pooled=True))
        except Exception as exc:  # noqa: BLE001 - a profile that cannot start is reported, not fatal
            log.warning("worker pool: cannot create a warm '%s': %s", name, exc)
            return False
        self._profiles[name] = profile
        self._warm.setdefault(name, []).append(agent)
        self._record_soon()
        launch = asyncio.get_running_loop().create_task(self._supervisor.launch(agent, ready_timeout=READY_TIMEOUT))
        self._launches[agent.terminal_id] = launch

        def launched(task: "asyncio.Task[None]") -> None:
            # Ready in the same step as it stops being a launch: `take` never sees it as neither.
            if not task.cancelled() and task.exception() is None and agent.pooled and agent.alive:
                if agent in self._warm.get(name, []):
                    self._ready.add(agent.terminal_id)
            self._launches.pop(agent.terminal_id, None)

        launch.add_done_callback(launched)
        try:
            await asyncio.shield(launch)
        except asyncio.CancelledError:
            if agent.pooled:
                launch.cancel()
                self._forget(agent)
            raise
        except Exception as exc:  # noqa: BLE001
            if not agent.pooled or agent not in self._warm.get(name, []):
                return True  # taken while starting (its task reports the failure), or stopped on purpose
            log.warning("worker pool: a warm '%s' did not start: %s", name, getattr(exc, "message", exc))
            self._forget(agent)
            self._record_soon()
            return False
        if agent.pooled and agent.alive and agent in self._warm.get(name, []):
            self._ready.add(agent.terminal_id)
            self._supervisor.spawn_background(self._watch_exit(agent))
            log.info("worker pool: warm '%s' %s ready", name, agent.terminal_id)
        return True

    async def _replace_after(self, taken: Agent) -> None:
        """Wake the filler once `taken` has done its task (or at the latest after a while)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLACE_AT_LATEST
        while taken.status not in TASK_OVER and not taken.terminating and loop.time() < deadline:
            await taken.wait_change(deadline - loop.time())
        self._wake.set()

    async def _watch_exit(self, agent: Agent) -> None:
        """A warm worker whose CLI exits on its own leaves the pool (and is replaced)."""
        while agent.pooled and agent.alive:
            await agent.wait_change(3600)
        if agent.pooled and not self._closed:
            self._stop(agent)
            self._wake.set()

    def _stop(self, agent: Agent) -> None:
        self._forget(agent)
        self._record_soon()
        self._supervisor.spawn_cleanup(self._supervisor.discard(agent))

    def _forget(self, agent: Agent) -> None:
        agents = self._warm.get(agent.profile.name, [])
        if agent in agents:
            agents.remove(agent)
        self._ready.discard(agent.terminal_id)

    def _current_profile(self, name: str) -> Optional[Profile]:
        try:
            return self._supervisor.catalog.get(name)
        except Exception:  # noqa: BLE001 - gone or broken: no warm workers for it
            return None

    # ---- memory -------------------------------------------------------------------------------

    async def _memory_mb(self) -> float:
        pids = [a.pane_pid for a in self.warm_workers() if a.pane_pid]
        if not pids:
            return 0.0
        return await asyncio.to_thread(tree_rss_mb, pids)

    # ---- the record of warm workers (for a successor after a crash) ---------------------------

    def _record_soon(self) -> None:
        if not self._closed:
            self._supervisor.spawn_background(self._save_record())

    async def _save_record(self) -> None:
        ids = [a.terminal_id for a in self.warm_workers()]
        try:
            await asyncio.to_thread(paths.write_private_text, self._record, json.dumps(ids))
        except OSError as exc:
            log.warning("could not record the warm workers in %s: %s", self._record, exc)

    def _read_record(self) -> list[str]:
        try:
            ids = json.loads(self._record.read_text())
        except (OSError, ValueError):
            return []
        return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def tree_rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes and all their descendants, in MiB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2:
            children.setdefault(int(fields[1]), []).append(int(entry))
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    total_kb = 0
    for pid in seen:
        try:
            total_kb += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page_kb
        except (OSError, ValueError, IndexError):
            continue
    return total_kb / 1024
