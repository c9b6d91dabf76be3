"""Wire types of the cao/* JSON-RPC methods and notifications (protocol version 1).

These attrs classes are the Python side of protocol/cao-protocol.schema.json; a test keeps the two
in step. Field names are snake_case here and camelCase on the wire: the converter renames them.
"""

from __future__ import annotations

import typing
from typing import Any, Literal, Optional, Union

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from cao_sidecar.core.status import AgentStatus

ProgressToken = int | str

# Defaults of the contract (the schema states them too); every door and the core use these.
HANDOFF_TIMEOUT_SECONDS = 600.0  # a handoff gives up (and stops its worker) after this
ASSIGN_TIMEOUT_SECONDS = 3600.0  # an assigned worker is stopped (and reported failed) after this


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# ---- requests and their results ------------------------------------------------------------


@attrs.define
class WorktreeInfo:
    """A worker's git worktree and the work on its branch (core.worktree_manager)."""

    terminal_id: str
    profile: str
    session: str
    repository: str  # the repository's top folder
    path: str  # the worktree's folder (under the state dir)
    branch: str
    base: str  # the branch it started from (a commit when the folder's HEAD was detached)
    base_commit: str  # where the branch left the base
    state: Literal["active", "kept", "merged", "discarded"]
    head: Optional[str] = None  # the branch's last commit (null until its work was first summarised)
    commits: list[str] = attrs.Factory(list)  # "<short sha> <subject>" on the branch, oldest first
    files: list[str] = attrs.Factory(list)  # files the branch changes
    diff_stat: str = ""  # git diff --stat of the branch against the base
    committed_leftovers: bool = False  # changes the worker left uncommitted were committed by the sidecar
    dirty: Optional[bool] = None  # uncommitted changes in the worktree now (null: not looked)
    copied_files: list[str] = attrs.Factory(list)  # untracked files copied in (never committed)
    notes: list[str] = attrs.Factory(list)  # files not copied and why, a folder gone, git problems
    agent_status: Optional[AgentStatus] = None  # null once its agent is gone


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
class ListProfilesParams:
    pass


@attrs.define
class ProfileInfo:
    name: str
    description: str
    provider: str
    source: str  # "builtin", or the path of the profile's file
    scope: Literal["workspace", "user", "builtin"] = "builtin"
    path: Optional[str] = None
    model: Optional[str] = None
    tags: list[str] = attrs.Factory(list)
    shadows: list[str] = attrs.Factory(list)  # files of the same name it hides, highest first
    stale: bool = False  # its file has errors now; this is the last version that loaded
    untrusted: bool = False  # from a workspace folder the user has not trusted: held-back parts not in force


@attrs.define
class ListProfilesResult:
    profiles: list[ProfileInfo]


@attrs.define
class InstallProfileParams:
    profile: str  # a path to a profile file, or the name of a known profile
    overwrite: bool = False


@attrs.define
class InstallProfileResult:
    name: str
    path: str
    replaced: bool
    warnings: list[str] = attrs.Factory(list)


FlowRunStatus = Literal["running", "completed", "failed", "skipped", "gate_failed"]


@attrs.define
class FlowRunInfo:
    run_id: str
    flow: str
    trigger: Literal["schedule", "manual"]
    status: FlowRunStatus
    started_at: str
    scheduled_at: Optional[str] = None
    ended_at: Optional[str] = None
    terminal_id: Optional[str] = None
    output: Optional[str] = None
    reason: Optional[str] = None


@attrs.define
class FlowInfo:
    name: str
    schedule: str
    profile: str
    enabled: bool
    scope: Literal["workspace", "user"]
    path: str
    description: str = ""
    provider: Optional[str] = None
    working_directory: Optional[str] = None
    has_gate: bool = False
    next_run_at: Optional[str] = None
    running: bool = False
    last_run: Optional[FlowRunInfo] = None
    shadows: list[str] = attrs.Factory(list)
    stale: bool = False
    untrusted: bool = False  # from a workspace folder the user has not trusted: never runs


@attrs.define
class ListFlowsParams:
    pass


@attrs.define
class ListFlowsResult:
    flows: list[FlowInfo]


@attrs.define
class RunFlowParams:
    name: str


@attrs.define
class RunFlowResult:
    run: FlowRunInfo


@attrs.define
class SetFlowEnabledParams:
    name: str
    enabled: bool


@attrs.define
class SetFlowEnabledResult:
    flow: FlowInfo


@attrs.define
class TrustInfo:
    """One folder's trust (cao_sidecar.trust) and what its `.cao/` does not get while untrusted."""

    path: str
    trusted: bool
    source: Literal["store", "editor", "none"]
    has_config: bool  # the folder has a .cao/
    held_back: list[str] = attrs.Factory(list)  # one readable line per thing held back


@attrs.define
class GetTrustParams:
    pass


@attrs.define
class GetTrustResult:
    folders: list[TrustInfo]


@attrs.define
class SetTrustParams:
    trusted: bool
    path: Optional[str] = None  # default: every workspace folder
    persist: bool = True  # write the user's trust store; false: this connection only


@attrs.define
class SetTrustResult:
    folders: list[TrustInfo]


# ---- notifications -------------------------------------------------------------------------


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
class ProfilesChangedNotification:
    profiles: list[ProfileInfo]


@attrs.define
class FlowsChangedNotification:
    flows: list[FlowInfo]


@attrs.define
class TrustChangedNotification:
    folders: list[TrustInfo]


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


@attrs.define
class StatsParams:
    pass


@attrs.define
class HostStats:
    """One host's link and its agents (fresh from a connected host, as last seen from another)."""

    name: str
    state: Literal["starting", "installing", "connecting", "connected", "reconnecting", "failed"]
    agents: int  # its agents, as last listed or reported
    live_agents: int  # of those, not exited (nor in error)
    connects: int  # links made so far (more than 1: it dropped and came back)
    reason: Optional[str] = None  # why it is not connected


@attrs.define
class StatsResult:
    agents: int  # agents the sidecar knows (exited ones included until terminated)
    live_agents: int
    tasks: int  # asyncio tasks in the sidecar
    credentials: int  # MCP credentials currently valid
    queued_messages: int
    open_files: int
    rss_bytes: int
    # The counts above are this machine's; each host of hosts.yaml the team linked to (issue 19):
    hosts: list[HostStats] = attrs.Factory(list)


@attrs.define
class ShutdownParams:
    terminate_agents: bool = False  # end every agent first (default: they keep running in tmux)


@attrs.define
class ShutdownResult:
    pass


@attrs.define
class DoctorParams:
    pass


@attrs.define
class DoctorResult:
    # The report of `cao-sidecar doctor --json` (cao_sidecar.doctor): tmux, each provider's CLI
    # (found, path, version, loggedIn, install / login hints), the editors; ok: tmux is there.
    tmux: dict[str, Any]
    providers: list[dict[str, Any]]
    editors: list[dict[str, Any]]
    ok: bool


@attrs.define
class ListWorktreesParams:
    session: Optional[str] = None


@attrs.define
class ListWorktreesResult:
    worktrees: list[WorktreeInfo]


@attrs.define
class MergeWorktreeParams:
    terminal_id: str
    strategy: Literal["merge", "rebase"] = "merge"


@attrs.define
class MergeWorktreeResult:
    merged: bool
    message: str
    worktree: WorktreeInfo
    conflicts: list[str] = attrs.Factory(list)  # files that conflict; nothing was changed
    commit: Optional[str] = None  # the base's new head


@attrs.define
class DiscardWorktreeParams:
    terminal_id: str


@attrs.define
class DiscardWorktreeResult:
    worktree: WorktreeInfo


# ---- method table --------------------------------------------------------------------------

# ---- workflows (cao_sidecar.workflows; docs/workflows.md) ------------------------------------

WorkflowRunStatus = Literal["running", "completed", "failed", "interrupted"]
WorkflowStepStatus = Literal["pending", "sent", "completed", "failed"]


@attrs.define
class WorkflowInfo:
    name: str
    path: str
    kind: Literal["python", "yaml"]
    scope: Literal["workspace", "user"]
    description: str = ""
    untrusted: bool = False  # a workspace workflow of a folder the user has not trusted: never runs
    problems: list[str] = attrs.Factory(list)  # what validation found (it does not run while any)


@attrs.define
class WorkflowStepInfo:
    key: int  # the step's position in the script's call order (0, 1, ...)
    profile: str
    task: str
    status: WorkflowStepStatus
    terminal_id: Optional[str] = None
    answer: Optional[str] = None
    error: Optional[str] = None
    attempts: int = 0


@attrs.define
class WorkflowRunInfo:
    run_id: str
    name: str
    path: str
    status: WorkflowRunStatus
    trigger: str  # "cli", "editor", "flow", "agent", "host", "resume"
    started_at: str
    inputs: dict[str, str] = attrs.Factory(dict)
    ended_at: Optional[str] = None
    output: Any = None  # the script's return value, once completed
    error: Optional[str] = None
    steps: list[WorkflowStepInfo] = attrs.Factory(list)


@attrs.define
class ListWorkflowsParams:
    pass


@attrs.define
class ListWorkflowsResult:
    workflows: list[WorkflowInfo]


@attrs.define
class RunWorkflowParams:
    name: str
    inputs: dict[str, str] = attrs.Factory(dict)
    wait: bool = False  # answer when the run has ended (else at once, with the run as started)


@attrs.define
class RunWorkflowResult:
    run: WorkflowRunInfo


@attrs.define
class ResumeWorkflowParams:
    run_id: str
    force: bool = False  # resume even though the script changed since the run started
    wait: bool = False


@attrs.define
class ResumeWorkflowResult:
    run: WorkflowRunInfo


@attrs.define
class ListWorkflowRunsParams:
    limit: Optional[int] = None


@attrs.define
class ListWorkflowRunsResult:
    runs: list[WorkflowRunInfo]


@attrs.define
class GetWorkflowRunParams:
    run_id: str


@attrs.define
class GetWorkflowRunResult:
    run: WorkflowRunInfo


@attrs.define
class CancelWorkflowParams:
    run_id: str


@attrs.define
class CancelWorkflowResult:
    run: WorkflowRunInfo


@attrs.define
class WorkflowStepParams:
    """A running workflow script's step (cao_client.workflow): journaled, then run once."""

    run_id: str
    key: int
    profile: str
    task: str
    worktree: Optional[bool] = None
    timeout_seconds: Optional[float] = None


@attrs.define
class WorkflowStepResult:
    answer: str
    terminal_id: str
    replayed: bool  # true: answered from the journal (the step had finished before a resume)


@attrs.define
class WorkflowRunNotification(WorkflowRunInfo):
    pass


# method -> (params type, result type)
METHODS: dict[str, tuple[type, type]] = {
    "cao/spawn": (SpawnParams, SpawnResult),
    "cao/handoff": (HandoffParams, HandoffResult),
    "cao/assign": (AssignParams, AssignResult),
    "cao/sendMessage": (SendMessageParams, SendMessageResult),
    "cao/listAgents": (ListAgentsParams, ListAgentsResult),
    "cao/getOutput": (GetOutputParams, GetOutputResult),
    "cao/terminate": (TerminateParams, TerminateResult),
    "cao/listProfiles": (ListProfilesParams, ListProfilesResult),
    "cao/installProfile": (InstallProfileParams, InstallProfileResult),
    "cao/listFlows": (ListFlowsParams, ListFlowsResult),
    "cao/runFlow": (RunFlowParams, RunFlowResult),
    "cao/setFlowEnabled": (SetFlowEnabledParams, SetFlowEnabledResult),
    "cao/getLog": (GetLogParams, GetLogResult),
    "cao/stats": (StatsParams, StatsResult),
    "cao/shutdown": (ShutdownParams, ShutdownResult),
    "cao/answer": (AnswerParams, AnswerResult),
    "cao/doctor": (DoctorParams, DoctorResult),
    "cao/getTrust": (GetTrustParams, GetTrustResult),
    "cao/setTrust": (SetTrustParams, SetTrustResult),
    "cao/listWorktrees": (ListWorktreesParams, ListWorktreesResult),
    "cao/mergeWorktree": (MergeWorktreeParams, MergeWorktreeResult),
    "cao/discardWorktree": (DiscardWorktreeParams, DiscardWorktreeResult),
    # workflows
    "cao/listWorkflows": (ListWorkflowsParams, ListWorkflowsResult),
    "cao/runWorkflow": (RunWorkflowParams, RunWorkflowResult),
    "cao/resumeWorkflow": (ResumeWorkflowParams, ResumeWorkflowResult),
    "cao/listWorkflowRuns": (ListWorkflowRunsParams, ListWorkflowRunsResult),
    "cao/getWorkflowRun": (GetWorkflowRunParams, GetWorkflowRunResult),
    "cao/cancelWorkflow": (CancelWorkflowParams, CancelWorkflowResult),
    "cao/workflowStep": (WorkflowStepParams, WorkflowStepResult),
}

# workspace/executeCommand: command → the cao/ method it runs (arguments: [that method's params]),
# for editors that offer a server's commands without custom code.
COMMANDS: dict[str, str] = {
    f"cao-sidecar.{method.split('/', 1)[1]}": method
    for method in (
        "cao/spawn", "cao/handoff", "cao/assign", "cao/sendMessage", "cao/listAgents",
        "cao/getOutput", "cao/terminate", "cao/answer", "cao/listProfiles", "cao/listWorktrees",
        "cao/mergeWorktree", "cao/discardWorktree",
    )
}

NOTIFICATIONS: dict[str, type] = {
    "cao/agentStatus": AgentStatusNotification,
    "cao/workerCompleted": WorkerCompletedNotification,
    "cao/profilesChanged": ProfilesChangedNotification,
    "cao/flowsChanged": FlowsChangedNotification,
    "cao/openTerminal": OpenTerminalNotification,
    "cao/trustChanged": TrustChangedNotification,
    "cao/workflowRun": WorkflowRunNotification,
}

# Inner types first: cattrs fixes how nested objects convert when the outer hook is made.
WIRE_CLASSES: tuple[type, ...] = (WorktreeInfo, PromptInfo, AgentInfo, ProfileInfo, FlowRunInfo, FlowInfo, TrustInfo, WorkflowInfo, WorkflowStepInfo, WorkflowRunInfo) + tuple(
    {cls: None for pair in METHODS.values() for cls in pair}.keys()
) + tuple(NOTIFICATIONS.values())
WIRE_CLASSES = (HostStats, *WIRE_CLASSES)  # hosts (issue 19): nested in StatsResult, so first


# ---- conversion ----------------------------------------------------------------------------


class ParamsError(ValueError):
    """Params that do not fit the method's type; the message names the field."""


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    # Progress tokens are int or str as sent; _check_type has vetted them already.
    conv.register_structure_hook(Optional[ProgressToken], lambda value, _type: value)
    # Each class's hooks are generated when first used (cattrs caches them), not at import:
    # generating all of them up front cost the orchestrator's start (and its first spawn)
    # 0.15-0.4 s. Nested classes ask the converter, so they get these renaming hooks too.
    wire_classes = frozenset(WIRE_CLASSES)

    def renames(cls: type) -> dict[str, Any]:
        return {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}

    def structure_hook(cls: type) -> Any:
        return make_dict_structure_fn(cls, conv, **renames(cls))

    def unstructure_hook(cls: type) -> Any:
        overrides = {k: override(rename=v.rename, omit_if_default=False) for k, v in renames(cls).items()}
        # cattrs types its **overrides as if they could be its own keyword flags: they are field names.
        return make_dict_unstructure_fn(cls, conv, **overrides)  # type: ignore[arg-type]

    conv.register_structure_hook_factory(lambda cls: cls in wire_classes, structure_hook)
    conv.register_unstructure_hook_factory(lambda cls: cls in wire_classes, unstructure_hook)
    return conv


converter = _make_converter()
for _cls in WIRE_CLASSES:
    attrs.resolve_types(_cls)


def structure_params(params: Any, cls: type) -> Any:
    """Turn raw JSON params into `cls`, or raise ParamsError naming the offending field."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ParamsError(f"params must be an object, got {type(params).__name__}")
    for field in attrs.fields(cls):
        key = camel(field.name)
        if key not in params:
            if field.default is attrs.NOTHING:
                raise ParamsError(f"missing required field '{key}'")
            continue
        _check_type(key, params[key], field.type)
    try:
        return converter.structure(params, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:  # pragma: no cover - guarded above
        raise ParamsError("; ".join(cattrs.transform_error(exc)) if isinstance(exc, cattrs.BaseValidationError) else str(exc)) from exc


def _check_type(key: str, value: Any, annotation: Any) -> None:
    """JSON-level type check with a clear message (cattrs would coerce 1 -> '1')."""
    allowed = typing.get_args(annotation) if typing.get_origin(annotation) is Union else (annotation,)
    if value is None:
        if type(None) in allowed:
            return
        raise ParamsError(f"field '{key}' must not be null")
    for kind in allowed:
        if kind is type(None):
            continue
        if typing.get_origin(kind) is Literal:
            if value in typing.get_args(kind):
                return
            choices = ", ".join(repr(c) for c in typing.get_args(kind))
            raise ParamsError(f"field '{key}' must be one of {choices}, got {value!r}")
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise ParamsError(f"field '{key}' must be a finite number")
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind in (str, bool) and isinstance(value, kind):
            return
        if typing.get_origin(kind) is dict and isinstance(value, dict):  # string -> string (workflow inputs)
            if all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                return
            raise ParamsError(f"field '{key}' must be an object of strings")
    names = {str: "a string", bool: "a boolean", float: "a number", int: "an integer"}
    expected = " or ".join(names.get(k, getattr(k, "__name__", str(k))) for k in allowed if k is not type(None))
    raise ParamsError(f"field '{key}' must be {expected}, got {_json_type(value)}")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def unstructure(obj: Any) -> Any:
    return converter.unstructure(obj)
