"""Stalls: an agent that is working (`processing`) but whose screen and events have not changed
for the stall time is `stalled`; it is `processing` again as soon as either changes.

Event-driven, like the status monitor: the screens come from the monitor's classifications (which
tmux's %output triggers) and the events from the CLI's hooks. The only timer is one
`call_later` per working agent, re-armed for the rest of the window when it fires early; an idle
agent costs nothing.

A spinner frame or a ticking "12s" counter is not a change: the comparison drops digits and the
glyphs CLIs animate, so a CLI whose model hangs behind a live spinner still counts as stalled.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Callable, Optional

import attrs

from cao_sidecar.core.agent import Agent
from cao_sidecar.core.status import AgentStatus

# Digits (timers, token counts), Braille spinners, and the glyphs CLIs cycle through in spinners.
_VOLATILE = re.compile(r"[0-9\u2800-\u28ff\u25d0-\u25d3\u25f4-\u25f7✻✽✶✳✢✦✧✺✹·•∙*+|/\\\-⏺●○◉◌]+")


def screen_fingerprint(screen: str) -> str:
    """What of a screen counts as progress: its text without the parts that animate by themselves."""
    return _VOLATILE.sub("", screen)


@attrs.define(eq=False)
class _Watch:
    fingerprint: Optional[str] = None
    changed_at: float = attrs.field(factory=time.monotonic)
    timer: Optional[asyncio.TimerHandle] = None

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class StallWatch:
    def __init__(self, on_stalled: Callable[[Agent], None], stall_seconds: Callable[[Agent], float]) -> None:
        self._on_stalled = on_stalled
        self._stall_seconds = stall_seconds
        self._watches: dict[str, _Watch] = {}

    def screen_seen(self, agent: Agent, screen: str) -> bool:
        """A new screen of the agent; True when it changed beyond what animates by itself."""
        watch = self._watches.setdefault(agent.terminal_id, _Watch())
        fingerprint = screen_fingerprint(screen)
        if fingerprint == watch.fingerprint:
            return False
        watch.fingerprint = fingerprint
        watch.changed_at = time.monotonic()
        return True

    def activity(self, agent: Agent) -> None:
        """The CLI reported an event: that is progress too."""
        self._watches.setdefault(agent.terminal_id, _Watch()).changed_at = time.monotonic()

    def status_changed(self, agent: Agent, status: AgentStatus) -> None:
        """Watch while the agent works; stop at anything else (a stalled agent keeps its watch:
        it is still working, and its recovery comes from screen_seen or activity)."""
        watch = self._watches.setdefault(agent.terminal_id, _Watch())
        if status is AgentStatus.PROCESSING:
            watch.changed_at = time.monotonic()
            self._arm(agent, watch)
        elif status is not AgentStatus.STALLED:
            watch.disarm()
            if status is AgentStatus.EXITED:
                del self._watches[agent.terminal_id]

    def _arm(self, agent: Agent, watch: _Watch) -> None:
        watch.disarm()
        limit = self._stall_seconds(agent)
        if limit <= 0:
            return  # stall detection is off
        delay = max(0.0, watch.changed_at + limit - time.monotonic())
        watch.timer = asyncio.get_running_loop().call_later(delay, self._check, agent, watch)

    def _check(self, agent: Agent, watch: _Watch) -> None:
        watch.timer = None
        if self._watches.get(agent.terminal_id) is not watch or agent.status is not AgentStatus.PROCESSING:
            return
        if time.monotonic() - watch.changed_at >= self._stall_seconds(agent):
            self._on_stalled(agent)
        else:
            self._arm(agent, watch)  # something changed meanwhile: wait out the rest of the window

    def quiet_seconds(self, agent: Agent) -> float:
        """How long the agent's screen and events have been unchanged."""
        watch = self._watches.get(agent.terminal_id)
        return 0.0 if watch is None else time.monotonic() - watch.changed_at
