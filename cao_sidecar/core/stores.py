"""The durable stores the core works with, opened together on one state database.

The composition root opens them (`open_stores`) and hands them to the supervisor and the team:
nothing in the core builds its own.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Optional

import attrs

from cao_sidecar.storage.agents import AgentStore
from cao_sidecar.storage.logs import ConversationLogs
from cao_sidecar.storage.messages import MessageStore
from cao_sidecar.storage.reports import ReportStore
from cao_sidecar.storage.state_db import open_state_db


@attrs.frozen
class Stores:
    messages: MessageStore
    agents: AgentStore
    reports: ReportStore
    logs: ConversationLogs
    db: sqlite3.Connection  # for stores kept beside the core's (core.worktree_manager's)

    def close(self) -> None:
        self.logs.close()
        self.messages.close()


def team_db(state_dir: Path, team: str) -> Path:
    """The database of one orchestrator (`team`: its tmux socket's name). Each has its own: two
    projects' orchestrators run at once, and neither may adopt, report or resume the other's work."""
    return state_dir / f"team-{team}.db"


def open_stores(state_dir: Path, team: str) -> tuple[Stores, Optional[str]]:
    """The stores of orchestrator `team` under `state_dir`, and a notice for the user if its
    database had to be set aside."""
    db, notice = open_state_db(team_db(state_dir, team))
    messages, agents, reports = MessageStore(db), AgentStore(db), ReportStore(db)
    reports.prune()
    return Stores(messages=messages, agents=agents, reports=reports, logs=ConversationLogs(state_dir / "logs"), db=db), notice
