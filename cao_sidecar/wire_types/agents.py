"""Wire types of the agents and their work: cao/spawn, cao/handoff, cao/assign, cao/sendMessage,
cao/listAgents, cao/getOutput, cao/terminate, cao/answer, cao/getLog and the agents' notifications.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import attrs

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.wire_types.worktrees import WorktreeInfo


ProgressToken = int | str

# Defaults of the contract (the schema states them too); every door and the core use these.
HANDOFF_TIMEOUT_SECONDS = 600.0  # a handoff gives up (and stops its worker) after this
ASSIGN_TIMEOUT_SECONDS = 3600.0  # an assigned worker is stopped (and reported failed) after this


@attrs.define
class SpawnParams:
    profile: str
    provider: Optional[str] = None
    working_directory: Optional[str] = None
    session: Optional[str] = None
    name: Optional[str] = None
    timeout_seconds: Optional[float] = None  # how long to wait for the agent to be ready
    worktree: Optional[bool] = None  # its own git worktree and branch; null: the profile decides
    base_ref: Optional[str] = None  # with a worktree: the ref its branch starts from (default HEAD)
    host: Optional[str] = None  # hosts.yaml name: run it on that host's node (issue 19); null or 'local': here


@attrs.define
class SpawnResult:
    terminal_id: str
    session: str
    profile: str
    provider: str
    status: AgentStatus
    name: Optional[str] = None
    worktree: Optional[WorktreeInfo] = None


@attrs.define
class HandoffParams:
    message: str
    profile: Optional[str] = None
    terminal_id: Optional[str] = None
    provider: Optional[str] = None
    working_directory: Optional[str] = None
    session: Optional[str] = None
    timeout_seconds: float = HANDOFF_TIMEOUT_SECONDS
    keep: bool = False
    work_done_token: Optional[ProgressToken] = None
    worktree: Optional[bool] = None
    base_ref: Optional[str] = None
    model: Optional[str] = None  # the worker's model instead of its profile's (with profile)
    host: Optional[str] = None  # hosts.yaml name: run it on that host's node (issue 19); null or 'local': here


@attrs.define
class HandoffResult:
    terminal_id: str
    status: AgentStatus
    output: str
    worktree: Optional[WorktreeInfo] = None  # where the worker's work is, if it had a worktree


@attrs.define
class AssignParams:
    profile: str
    message: str
    provider: Optional[str] = None
    working_directory: Optional[str] = None
    session: Optional[str] = None
    timeout_seconds: float = ASSIGN_TIMEOUT_SECONDS
    keep: bool = True
    worktree: Optional[bool] = None
    base_ref: Optional[str] = None
    model: Optional[str] = None  # the worker's model instead of its profile's
    host: Optional[str] = None  # hosts.yaml name: run it on that host's node (issue 19); null or 'local': here


@attrs.define
class AssignResult:
    terminal_id: str


@attrs.define
class SendMessageParams:
    terminal_id: str
    message: str
    sender: Optional[str] = None


@attrs.define
class SendMessageResult:
    message_id: str
    state: Literal["delivered", "queued"]


@attrs.define
class ListAgentsParams:
    session: Optional[str] = None
    include_pooled: bool = False  # also the pool's warm workers (pooled: true), which are no one's yet


@attrs.define
class PromptInfo:
    """The question an agent waits on (status waiting_user_answer), as read from its screen."""

    id: str  # "<terminalId>:<n>": stable while the same question is shown
    text: str
    choices: list[str] = attrs.Factory(list)  # empty: the answer is free text
    detail: str = ""  # lines that explain the question (a command, a file), one line


@attrs.define
class AgentInfo:
    terminal_id: str
    session: str
    profile: str
    provider: str
    status: AgentStatus
    working_directory: str
    created_at: str
    name: Optional[str] = None
    prompt: Optional[PromptInfo] = None
    # argv that shows the agent's live tmux window in a terminal (empty once it has exited)
    attach_command: list[str] = attrs.Factory(list)
    # a warm worker of the pool (listed only with includePooled): not the user's agent
    pooled: bool = False


@attrs.define
class ListAgentsResult:
    agents: list[AgentInfo]


@attrs.define
class GetOutputParams:
    terminal_id: str
    mode: Literal["last", "full"] = "last"


@attrs.define
class GetOutputResult:
    output: str


@attrs.define
class TerminateParams:
    terminal_id: str


@attrs.define
class TerminateResult:
    pass


@attrs.define
class AgentStatusNotification:
    terminal_id: str
    profile: str
    status: AgentStatus
    previous_status: Optional[AgentStatus]
    session: str = ""
    prompt: Optional[PromptInfo] = None  # with waiting_user_answer: the question and its choices


@attrs.define
class WorkerCompletedNotification:
    terminal_id: str
    profile: str
    status: AgentStatus
    output: str
    error: Optional[str] = None
    worktree: Optional[WorktreeInfo] = None  # where the worker's work is, if it had a worktree


@attrs.define
class OpenTerminalNotification:
    """The user asked (from a question's "Open terminal" button) to see an agent's terminal."""

    terminal_id: str
    attach_command: list[str]


@attrs.define
class GetLogParams:
    terminal_id: Optional[str] = None
    since: Optional[float] = None  # epoch seconds: only events after this
    limit: Optional[int] = None  # only the last N events


@attrs.define
class GetLogResult:
    events: list[dict[str, Any]]
    output: Optional[str] = None  # with terminalId: that agent's terminal output as readable text (tail)


@attrs.define
class AnswerParams:
    terminal_id: str
    answer: str  # one of the prompt's choices (any case), or free text when it has none
    prompt_id: Optional[str] = None  # the question meant; refused if it is no longer the one shown


@attrs.define
class AnswerResult:
    terminal_id: str
    prompt_id: str
    typed: str  # what went to the CLI, readable: "key 1", "'y' + Enter"
