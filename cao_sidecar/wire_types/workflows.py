"""Wire types of workflows (cao_sidecar.workflows; docs/workflows.md)."""

from __future__ import annotations

from typing import Any, Literal, Optional

import attrs


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
