"""Event-driven status detection: output from a pane triggers one screen classification.

tmux tells us (control mode %output) that a pane printed something; we wait a few milliseconds
for the burst to settle, capture the screen once and let the provider classify it. Idle agents
print nothing, so they cost nothing: there is no periodic polling.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from cao_sidecar.core.agent import Agent
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.terminal.tmux import PaneGone, TmuxError, TmuxServer

log = logging.getLogger(__name__)

# How long a burst of output may go on before we look at the screen anyway.
SETTLE_SECONDS = 0.008

Classified = Callable[[Agent, AgentStatus, str], None]


class StatusMonitor:
    def __init__(self, tmux: TmuxServer, on_classified: Classified) -> None:
        self._tmux = tmux
        self._on_classified = on_classified
        self._by_pane: dict[str, Agent] = {}
        self._dirty: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        tmux.add_output_listener(self._on_output)

    def watch(self, agent: Agent) -> None:
        assert agent.pane_id is not None
        self._by_pane[agent.pane_id] = agent
        # Output may have come before we knew the pane: look once now.
        self._on_output(agent.pane_id)

    def unwatch(self, agent: Agent) -> None:
        # Only this agent's: a pane id can name another agent's pane now (a restarted tmux server).
        if agent.pane_id is not None and self._by_pane.get(agent.pane_id) is agent:
            self._by_pane.pop(agent.pane_id, None)
            self._dirty.discard(agent.pane_id)
            task = self._tasks.pop(agent.pane_id, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    def agent_for_pane(self, pane_id: str) -> Agent | None:
        return self._by_pane.get(pane_id)

    def refresh(self, agent: Agent) -> None:
        """Classify this agent's screen soon even without new output."""
        if agent.pane_id is not None:
            self._on_output(agent.pane_id)

    def _on_output(self, pane_id: str) -> None:
        if pane_id not in self._by_pane:
            return
        self._dirty.add(pane_id)
        if pane_id not in self._tasks:
            self._tasks[pane_id] = asyncio.get_running_loop().create_task(self._classify_loop(pane_id))

    async def _classify_loop(self, pane_id: str) -> None:
        try:
            while pane_id in self._dirty:
                await asyncio.sleep(SETTLE_SECONDS)
                self._dirty.discard(pane_id)
                agent = self._by_pane.get(pane_id)
                if agent is None or not agent.alive:
                    return
                try:
                    screen = await self._tmux.capture(pane_id)
                except PaneGone:
                    return  # the exit listener reports this
                except TmuxError as exc:
                    log.warning("capture of %s failed: %s", pane_id, exc)
                    return
                if self._by_pane.get(pane_id) is agent and agent.alive:
                    self._on_classified(agent, agent.provider.classify(screen), screen)
        finally:
            if self._tasks.get(pane_id) is asyncio.current_task():
                del self._tasks[pane_id]
