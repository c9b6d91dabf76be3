"""The cao/* JSON-RPC methods and notifications (protocol version 1): which wire type each one
takes and gives, and their conversion to and from JSON.

The wire types (attrs classes, in cao_sidecar.wire_types by area) are the Python side of
protocol/cao-protocol.schema.json; a test keeps the two in step. Field names are snake_case there
and camelCase on the wire: the converter renames them.
"""

from __future__ import annotations

import typing
from typing import Any, Literal, Optional, Union

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from cao_sidecar.wire_types.agents import (
    AgentInfo,
    AgentStatusNotification,
    AnswerParams,
    AnswerResult,
    AssignParams,
    AssignResult,
    GetLogParams,
    GetLogResult,
    GetOutputParams,
    GetOutputResult,
    HandoffParams,
    HandoffResult,
    ListAgentsParams,
    ListAgentsResult,
    OpenTerminalNotification,
    ProgressToken,
    PromptInfo,
    SendMessageParams,
    SendMessageResult,
    SpawnParams,
    SpawnResult,
    TerminateParams,
    TerminateResult,
    WorkerCompletedNotification,
)
from cao_sidecar.wire_types.project import (
    FlowInfo,
    FlowRunInfo,
    FlowsChangedNotification,
    GetTrustParams,
    GetTrustResult,
    InstallProfileParams,
    InstallProfileResult,
    ListFlowsParams,
    ListFlowsResult,
    ListProfilesParams,
    ListProfilesResult,
    ProfileInfo,
    ProfilesChangedNotification,
    RunFlowParams,
    RunFlowResult,
    SetFlowEnabledParams,
    SetFlowEnabledResult,
    SetTrustParams,
    SetTrustResult,
    TrustChangedNotification,
    TrustInfo,
)
from cao_sidecar.wire_types.service import (
    DoctorParams,
    DoctorResult,
    HostStats,
    ShutdownParams,
    ShutdownResult,
    StatsParams,
    StatsResult,
)
from cao_sidecar.wire_types.workflows import (
    CancelWorkflowParams,
    CancelWorkflowResult,
    GetWorkflowRunParams,
    GetWorkflowRunResult,
    ListWorkflowRunsParams,
    ListWorkflowRunsResult,
    ListWorkflowsParams,
    ListWorkflowsResult,
    ResumeWorkflowParams,
    ResumeWorkflowResult,
    RunWorkflowParams,
    RunWorkflowResult,
    WorkflowInfo,
    WorkflowRunInfo,
    WorkflowRunNotification,
    WorkflowStepInfo,
    WorkflowStepParams,
    WorkflowStepResult,
)
from cao_sidecar.wire_types.worktrees import (
    DiscardWorktreeParams,
    DiscardWorktreeResult,
    ListWorktreesParams,
    ListWorktreesResult,
    MergeWorktreeParams,
    MergeWorktreeResult,
    WorktreeInfo,
)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


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
        "cao/spawn",
        "cao/handoff",
        "cao/assign",
        "cao/sendMessage",
        "cao/listAgents",
        "cao/getOutput",
        "cao/terminate",
        "cao/answer",
        "cao/listProfiles",
        "cao/listWorktrees",
        "cao/mergeWorktree",
        "cao/discardWorktree",
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
WIRE_CLASSES: tuple[type, ...] = (
    (
        WorktreeInfo,
        PromptInfo,
        AgentInfo,
        ProfileInfo,
        FlowRunInfo,
        FlowInfo,
        TrustInfo,
        WorkflowInfo,
        WorkflowStepInfo,
        WorkflowRunInfo,
    )
    + tuple({cls: None for pair in METHODS.values() for cls in pair}.keys())
    + tuple(NOTIFICATIONS.values())
)
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
        raise ParamsError(
            "; ".join(cattrs.transform_error(exc)) if isinstance(exc, cattrs.BaseValidationError) else str(exc)
        ) from exc


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
