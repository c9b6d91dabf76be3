"""Small stand-ins for the core's unit tests: a tmux that holds screens in memory, and the mock
provider's screens written out (so the real classifier reads them)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Callable, Optional

from cao_sidecar.core.agent import Agent
from cao_sidecar.core.events import EventSource
from cao_sidecar.core.reporting import AssignReports
from cao_sidecar.core.stores import open_stores
from cao_sidecar.core.supervisor import AgentSupervisor
from cao_sidecar.core.team import Team
from cao_sidecar.mock_agent import screen as glyphs
from cao_sidecar.profiles.catalog import ProfileCatalog
from cao_sidecar.profiles.profile import Profile
from cao_sidecar.providers import get_provider
from cao_sidecar.terminal.errors import PaneGone
from cao_sidecar.terminal.panes import PaneInfo

# The mock agent's screens (cao_sidecar.mock_agent), as its provider classifies them.
IDLE = glyphs.PROMPT + " "
BUSY = f"{glyphs.PROMPT} task\n{glyphs.SPINNER_FRAMES[0]}{glyphs.SPINNER_TEXT}"
WAITING = f"{glyphs.PROMPT} task\n{glyphs.QUESTION_HEAD} Proceed?\n{glyphs.ASK_PROMPT} "
FAILED = f"{glyphs.PROMPT} task\n{glyphs.ERROR_HEAD} boom\n\n{glyphs.PROMPT} "


def completed(answer: str, task: str = "task") -> str:
    return f"{glyphs.PROMPT} {task}\n{glyphs.ANSWER_HEAD} {answer}\n\n{glyphs.PROMPT} "


def typed(text: str) -> str:
    """The input line holding `text`, not submitted yet."""
    return f"{glyphs.PROMPT} {text}"


class FakeTmux:
    """What the supervisor asks of tmux, in memory: panes with a screen each; `show` changes a
    screen and tells the listeners, as tmux's %output does."""

    socket_name = "fake"

    def __init__(self) -> None:
        self.screens: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        self.dead: set[str] = set()
        self.typed: list[tuple[str, str]] = []  # (pane, text or "key:<name>")
        self._ids = itertools.count(1)
        self._output: list[Callable[[str], None]] = []
        self._exit: list[Callable[[str, Optional[int]], None]] = []

    # listeners
    def add_output_listener(self, callback: Callable[[str], None]) -> None:
        self._output.append(callback)

    def add_output_data_listener(self, callback: Callable[[str, bytes], None]) -> None:
        pass

    def add_exit_listener(self, callback: Callable[[str, Optional[int]], None]) -> None:
        self._exit.append(callback)

    # the test's side
    def new_pane(self, screen: str = "") -> str:
        n = next(self._ids)
        pane_id = f"%{n}"
        self.screens[pane_id], self.pids[pane_id] = screen, 1000 + n
        return pane_id

    def show(self, pane_id: str, screen: str) -> None:
        self.screens[pane_id] = screen
        for callback in list(self._output):
            callback(pane_id)

    def exit(self, pane_id: str, status: int = 0) -> None:
        self.dead.add(pane_id)
        for callback in list(self._exit):
            callback(pane_id, status)

    # the supervisor's side
    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def capture(self, pane_id: str, *, history: bool = False) -> str:
        if pane_id not in self.screens:
            raise PaneGone(pane_id)
        return self.screens[pane_id]

    async def paste_text(self, pane_id: str, text: str, *, bracketed: bool = True) -> None:
        if pane_id not in self.screens:
            raise PaneGone(pane_id)
        self.typed.append((pane_id, text))

    async def send_keys(self, pane_id: str, *keys: str) -> None:
        if pane_id not in self.screens:
            raise PaneGone(pane_id)
        self.typed.extend((pane_id, "key:" + k) for k in keys)

    async def rows_and_cursor(self, pane_id: str) -> tuple[list[str], tuple[int, int]]:
        rows = self.screens[pane_id].splitlines()
        return rows, (0, max(0, len(rows) - 1))

    async def kill_window(self, pane_id: str, *, pid: Optional[int] = None) -> None:
        if pid is not None and self.pids.get(pane_id, pid) != pid:
            return  # the id names another process's pane now
        self.screens.pop(pane_id, None)

    async def list_panes(self) -> list[PaneInfo]:
        return [
            PaneInfo(
                pane_id=p,
                window_id="@" + p[1:],
                session="cao",
                window_name=p,
                pid=self.pids[p],
                dead=p in self.dead,
                dead_status=0 if p in self.dead else None,
            )
            for p in self.screens
        ]


def make_agent(tmp_path: Path, terminal_id: str = "aaaa0001", provider: str = "mock") -> Agent:
    return Agent(
        terminal_id=terminal_id,
        session="cao",
        profile=Profile(name="p", provider=provider),
        provider=get_provider(provider),
        working_directory=str(tmp_path),
        agent_dir=tmp_path / terminal_id,
    )


def make_team(tmp_path: Path) -> tuple[Team, FakeTmux]:
    """A team over a supervisor with a FakeTmux and real stores in `tmp_path` (SQLite: fast)."""
    tmux = FakeTmux()
    stores, _ = open_stores(tmp_path, tmux.socket_name)
    events = EventSource()
    catalog = ProfileCatalog(workspace_dirs=[], user_dir=None)
    supervisor = AgentSupervisor(
        tmux=tmux,
        catalog=catalog,
        stores=stores,
        events=events,  # type: ignore[arg-type]
        state_dir=tmp_path,
        default_cwd=str(tmp_path),
    )
    assigns = AssignReports(
        state_dir=tmp_path,
        messages=stores.messages,
        agent_store=stores.agents,
        reports=stores.reports,
        logs=stores.logs,
        events=events,
        queue_stored=supervisor.queue_stored,
    )
    return Team(supervisor, assigns), tmux


def adopt_running(team: Team, tmux: FakeTmux, agent: Agent, screen: str = IDLE) -> str:
    """Register `agent` as running in a new fake pane showing `screen`; returns the pane id."""
    pane_id = tmux.new_pane(screen)
    agent.pane_id, agent.pane_pid = pane_id, tmux.pids[pane_id]
    team.supervisor.adopt(agent)
    team.supervisor.watch(agent)
    return pane_id


async def settle(rounds: int = 3) -> None:
    """Let the monitor's classification (8 ms settle) and the tasks it wakes run."""
    for _ in range(rounds):
        await asyncio.sleep(0.02)
