"""ACP sessions: one per conversation in the editor, each with its own supervisor agent.

A session's agents (its supervisor and the workers the supervisor starts) run in a tmux session
of their own, named `acp-<session id>`: that is how team activity is told apart per session.
Sessions are kept in `<state dir>/acp-sessions.json` (mode 0600) so `session/load` can replay a
conversation and reattach to its supervisor after a restart (the agents live in tmux).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Optional

import attrs

log = logging.getLogger(__name__)

MAX_KEPT_SESSIONS = 200
MAX_HISTORY = 200  # exchanges kept per session for session/load


@attrs.define(eq=False)
class AcpSession:
    session_id: str
    cwd: str
    profile: Optional[str] = None  # None: the default profile (see agent.default_profile)
    supervisor_id: Optional[str] = None  # terminal id of its supervisor agent
    mcp_servers: list[dict[str, Any]] = attrs.field(factory=list)  # as the editor gave them
    history: list[dict[str, str]] = attrs.field(factory=list)  # {"role": "user"|"agent", "text"}
    # Not kept in the file:
    turn: Optional["asyncio.Task[Any]"] = attrs.field(default=None, metadata={"keep": False})
    cancelled: bool = attrs.field(default=False, metadata={"keep": False})
    creating_supervisor: bool = attrs.field(default=False, metadata={"keep": False})

    @property
    def tmux_session(self) -> str:
        return f"acp-{self.session_id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "sessionId": self.session_id,
            "cwd": self.cwd,
            "profile": self.profile,
            "supervisorId": self.supervisor_id,
            "mcpServers": self.mcp_servers,
            "history": self.history[-MAX_HISTORY:],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "AcpSession":
        return cls(
            session_id=str(data["sessionId"]),
            cwd=str(data.get("cwd") or os.getcwd()),
            profile=data.get("profile"),
            supervisor_id=data.get("supervisorId"),
            mcp_servers=list(data.get("mcpServers") or []),
            history=list(data.get("history") or []),
        )


def new_session_id() -> str:
    return secrets.token_hex(6)


class SessionStore:
    """The live sessions, and the file that keeps them across restarts."""

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path
        self.sessions: dict[str, AcpSession] = {}
        self._kept: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {s["sessionId"]: s for s in data.get("sessions", []) if isinstance(s, dict) and "sessionId" in s}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return {}

    def get(self, session_id: str) -> Optional[AcpSession]:
        return self.sessions.get(session_id)

    def add(self, session: AcpSession) -> None:
        self.sessions[session.session_id] = session
        self.save(session)

    def load(self, session_id: str) -> Optional[AcpSession]:
        """A session of this or an earlier sidecar (from the file), made live again."""
        live = self.sessions.get(session_id)
        if live is not None:
            return live
        kept = self._kept.get(session_id)
        if kept is None:
            return None
        session = AcpSession.from_json(kept)
        self.sessions[session_id] = session
        return session

    def save(self, session: AcpSession) -> None:
        self._kept.pop(session.session_id, None)
        self._kept[session.session_id] = session.to_json()  # most recent last
        while len(self._kept) > MAX_KEPT_SESSIONS:
            self._kept.pop(next(iter(self._kept)))
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": 1, "sessions": list(self._kept.values())}, handle, ensure_ascii=False)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("could not save ACP sessions to %s: %s", self.path, exc)
