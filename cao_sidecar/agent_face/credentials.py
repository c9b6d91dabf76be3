"""One secret bearer token per agent. A tool call is attributed by its token, never by a name.

Tokens live in memory and in a 0600 file in the agent's private directory (so a restarted
sidecar can re-adopt the agent); they are never logged and are revoked when the agent goes.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Optional

from cao_sidecar import paths

CREDENTIAL_FILE = "credential"


class CredentialStore:
    def __init__(self) -> None:
        self._by_token: dict[str, str] = {}
        self._by_agent: dict[str, str] = {}

    def issue(self, terminal_id: str, agent_dir: Path) -> str:
        token = secrets.token_urlsafe(32)
        self._by_token[token] = terminal_id
        self._by_agent[terminal_id] = token
        path = agent_dir / CREDENTIAL_FILE
        paths.write_private_text(path, token)
        return token

    def adopt(self, terminal_id: str, agent_dir: Path) -> None:
        """Accept again the token a previous sidecar gave this agent (from its 0600 file)."""
        try:
            token = (agent_dir / CREDENTIAL_FILE).read_text().strip()
        except OSError:
            return
        if token:
            self._by_token[token] = terminal_id
            self._by_agent[terminal_id] = token

    @property
    def count(self) -> int:
        return len(self._by_agent)

    def revoke(self, terminal_id: str) -> None:
        token = self._by_agent.pop(terminal_id, None)
        if token is not None:
            self._by_token.pop(token, None)

    def agent_for(self, authorization: Optional[str]) -> Optional[str]:
        """The terminal id a `Bearer <token>` header belongs to, or None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        presented = authorization[len("Bearer ") :].strip()
        terminal_id = self._by_token.get(presented)
        if terminal_id is None:
            return None
        # Constant-time confirmation of the match (the dict lookup itself is by hash).
        return terminal_id if hmac.compare_digest(presented, self._by_agent.get(terminal_id, "")) else None
