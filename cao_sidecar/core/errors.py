"""Errors of the orchestration core, each with its JSON-RPC error code.

The codes are part of the wire contract (protocol/spec.md): clients branch on them. They sit
outside -32099..-32000 and -32899..-32800, which JSON-RPC and LSP reserve (LSP gives -32001 and
-32002 their own meanings).
"""

from __future__ import annotations

from typing import Any


class CaoError(Exception):
    """Base class: a failure the caller should see with a code and structured data."""

    code: int = -31000
    name: str = "sidecarError"

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data: dict[str, Any] = {k: v for k, v in data.items() if v is not None}
        self.data.setdefault("kind", self.name)


class UnknownProfile(CaoError):
    code = -31001
    name = "unknownProfile"


class UnknownProvider(CaoError):
    code = -31002
    name = "unknownProvider"


class UnknownTerminal(CaoError):
    code = -31003
    name = "unknownTerminal"


class AgentTimeout(CaoError):
    code = -31004
    name = "timeout"


class AgentFailed(CaoError):
    """The agent reported an error for its turn."""

    code = -31005
    name = "agentError"


class AgentExited(CaoError):
    """The agent's process ended (before it was ready, or during a turn)."""

    code = -31006
    name = "agentExited"


class AgentNotReady(CaoError):
    """The agent did not become ready for input in time (e.g. stuck on a dialog)."""

    code = -31007
    name = "agentNotReady"


class InvalidRequest(CaoError):
    """A request that is well-formed but cannot be done (e.g. bad working directory)."""

    code = -32602
    name = "invalidParams"


class TerminalError(CaoError):
    """tmux refused or failed an operation."""

    code = -31008
    name = "terminalError"


class PromptGone(CaoError):
    """The question an answer was meant for was answered already, or is no longer on screen."""

    code = -31009
    name = "promptGone"


class Untrusted(CaoError):
    """The request needs what an untrusted workspace folder may not do (cao_sidecar.trust)."""

    code = -31010
    name = "untrusted"


class StateDirFull(CaoError):
    """The state dir (agent records, messages, logs) has no room: new work is refused."""

    code = -31011
    name = "stateDirFull"


class WorktreeError(CaoError):
    """A worker's git worktree cannot be made, merged or removed as asked; `data.reason` says
    why: notGitRepo, gitMissing, unknownBaseRef, branchTaken, dirtyBase, gitFailed, noWorktree."""

    code = -31012
    name = "worktreeError"


ERROR_CLASSES: tuple[type[CaoError], ...] = (
    UnknownProfile,
    UnknownProvider,
    UnknownTerminal,
    AgentTimeout,
    AgentFailed,
    AgentExited,
    AgentNotReady,
    InvalidRequest,
    TerminalError,
    PromptGone,
    Untrusted,
    StateDirFull,
    WorktreeError,
)
