"""The team tools every lead calls over MCP: handoff, assign, send_message, list_sessions.

One body per tool, shared by the agent face (an agent in tmux leading, agent_face/tools.py) and the
host door (an MCP host's own agent leading, host_face/tools.py). A lead is a `Caller`: an Agent, or
a HostLead. Results are typed (pydantic models: the SDK publishes them as the tool's outputSchema);
each tool returns readable text plus the same data as structured content. Core errors become
ToolErrors: the caller sees the message, the connection and the process go on.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Optional, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from cao_sidecar.core.agent import Agent
from cao_sidecar.core.errors import CaoError
from cao_sidecar.core.leads import Caller, HostLead
from cao_sidecar.core.orchestrator import Orchestrator
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.hosts import routing, team_calls

T = TypeVar("T")


class ToolData(BaseModel):
    """Structured content of a tool result: camelCase on the wire, like the rest of the protocol."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class HandoffResult(ToolData):
    terminal_id: str = Field(description="The worker that answered.")
    profile: str
    status: str = Field(description="'completed', or 'running' with a ticket (a long handoff).")
    output: str = Field(description="The worker's final answer.")
    worktree: Optional[dict[str, Any]] = Field(default=None, description="Where its work is, if it had its own git worktree.")
    ticket: Optional[str] = Field(
        default=None, description="status 'running': the specialist still works; wait_for_result(ticket) gets its answer."
    )


class AssignResult(ToolData):
    terminal_id: str = Field(description="The worker started on the task.")
    profile: str
    status: str


class MessageResult(ToolData):
    message_id: str
    state: str = Field(description="'delivered' (typed in now) or 'queued' (when the receiver is idle, or reads it).")
    terminal_id: str = Field(description="The receiver: an agent's terminal id or a lead's id.")


class MergeResult(ToolData):
    merged: bool
    message: str
    worktree: dict[str, Any] = Field(description="The worker's worktree after the merge (branch, base, commits, files).")
    conflicts: list[str] = Field(description="Files in conflict; nothing was changed.")
    commit: Optional[str] = Field(default=None, description="The base's commit after the merge.")


class Question(ToolData):
    """The question an agent waits on (status waiting_user_answer)."""

    id: str
    text: str
    choices: list[str] = Field(description="Possible answers; empty: free text.")


class TeamMember(ToolData):
    terminal_id: str
    name: Optional[str]
    profile: str
    provider: str
    status: str
    you: bool
    question: Optional[Question] = None


class LeadMember(ToolData):
    """A lead outside tmux (an MCP host's agent): reached with send_message to its id."""

    lead_id: str
    host: str
    connected: bool
    you: bool


class TeamList(ToolData):
    session: str
    agents: list[TeamMember]
    leads: list[LeadMember] = Field(default_factory=list)


MODEL_HELP = "The specialist's model instead of its profile's (a name its CLI knows, e.g. 'sonnet', 'gpt-5')."


def tool_result(text: str, data: ToolData) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=data.model_dump(mode="json", by_alias=True)
    )


def error_text(exc: CaoError) -> str:
    tail = exc.data.get("screenTail")
    return f"{exc.message}\n--- screen tail ---\n{tail}" if tail else exc.message


async def calling_core(work: Awaitable[T]) -> T:
    """Await a core call; its error is the tool's error (text the model can act on)."""
    try:
        return await work
    except CaoError as exc:
        raise ToolError(error_text(exc)) from None


def sender_label(lead: Caller, shown_id: Optional[str] = None) -> str:
    """How a lead signs its messages: 'developer 1a2b3c4d', 'lead host-claude-code'. `shown_id`:
    an agent's id as the receiver names it (box1:1a2b3c4d for an agent of another host)."""
    if isinstance(lead, HostLead):
        return lead.label
    if isinstance(lead, Agent):
        return f"{lead.profile.name} {shown_id or lead.terminal_id}"
    return lead.terminal_id


def question_of(agent: Agent) -> Optional[Question]:
    pending = agent.prompt
    if pending is None or agent.status is not AgentStatus.WAITING_USER_ANSWER:
        return None
    return Question(id=pending.id, text=pending.prompt.text, choices=[c.label for c in pending.prompt.choices])


async def handoff(
    core: Orchestrator, lead: Caller, target: str, task: str, timeout_seconds: float,
    on_agent: Callable[[Agent], None] | None = None, worktree: bool | None = None, base_ref: str | None = None,
    model: str | None = None,
    host: str | None = None,
) -> CallToolResult:  # fmt: skip
    host = host if host is not None else profile_host(core, target)
    if host is not None and routing.elsewhere(host):
        params = {
            "profile": target, "message": task, "timeoutSeconds": timeout_seconds, "worktree": worktree, "baseRef": base_ref,
            "model": model,
        }  # fmt: skip
        done = await calling_core(routing.call_elsewhere(core, host, "cao/handoff", params))
        data = HandoffResult(
            terminal_id=done["terminalId"],
            profile=target,
            status="completed",
            output=done["output"],
            worktree=done.get("worktree"),
        )
        return tool_result(done["output"], data)
    worker, answer = await calling_core(
        core.handoff(
            task, profile=target, timeout=timeout_seconds, caller=lead, on_agent=on_agent,
            worktree=worktree, base_ref=base_ref, model=model,
        )
    )  # fmt: skip
    work = core.worktrees.describe(worker.terminal_id)
    data = HandoffResult(
        terminal_id=worker.terminal_id, profile=target, status="completed", output=answer,
        worktree=core.worktrees.stored_info(worker.terminal_id),
    )  # fmt: skip
    return tool_result(f"{answer}\n\n{work}" if work else answer, data)


def assign(
    core: Orchestrator, lead: Caller, target: str, task: str, how_results_arrive: str,
    worktree: bool | None = None, base_ref: str | None = None, model: str | None = None,
) -> CallToolResult:  # fmt: skip
    try:
        worker = core.assign(task, profile=target, caller=lead, worktree=worktree, base_ref=base_ref, model=model)
    except CaoError as exc:
        raise ToolError(error_text(exc)) from None
    text = f"Assigned to {target} (terminal {worker.terminal_id}); {how_results_arrive}"
    return tool_result(text, AssignResult(terminal_id=worker.terminal_id, profile=target, status=worker.status.value))


def profile_host(core: Orchestrator, target: str) -> Optional[str]:
    """The host profile `target` names (`host:` in its front matter), where the team's tools run
    it when the call names none; None for none (or an unknown profile: reported where it starts)."""
    try:
        return core.catalog.get(target).host
    except CaoError:
        return None


async def assign_anywhere(
    core: Orchestrator, lead: Caller, target: str, task: str, host: str | None, worktree: bool | None = None,
    base_ref: str | None = None, model: str | None = None, how_results_arrive: str = "its answer will arrive as a message.",
) -> CallToolResult:  # fmt: skip
    """assign on `host` (default: the profile's, else this machine; issue 19); the worker's report
    comes back to `lead` as a message wherever it runs."""
    host = host if host is not None else profile_host(core, target)
    if host is None or not routing.elsewhere(host):
        return assign(core, lead, target, task, how_results_arrive, worktree=worktree, base_ref=base_ref, model=model)
    params = {"profile": target, "message": task, "worktree": worktree, "baseRef": base_ref, "model": model}
    done = await calling_core(routing.call_elsewhere(core, host, "cao/assign", params, report_to=lead))
    text = f"Assigned to {target} on {host} (terminal {done['terminalId']}); {how_results_arrive}"
    return tool_result(text, AssignResult(terminal_id=done["terminalId"], profile=target, status="processing"))


async def send_message(core: Orchestrator, lead: Caller, target: str, message: str) -> CallToolResult:
    """To an agent of the lead's session (typed in when it is idle), or to a lead of the session
    (waits in its messages)."""
    label = sender_label(lead)
    if team_calls.names_elsewhere(target):  # an agent of another machine (issue 19), by its qualified id
        label = sender_label(lead, team_calls.as_others_name(lead.terminal_id))  # so it can answer
        done = await calling_core(team_calls.send(core, lead.terminal_id, lead.session, target, message, label))
        text = f"Message {done['messageId']} {done['state']} to {target}."
        return tool_result(text, MessageResult(message_id=done["messageId"], state=done["state"], terminal_id=target))
    host = core.mailboxes.find(target, lead.session)
    if host is not None:
        if host.terminal_id == lead.terminal_id:
            raise ToolError("you cannot send a message to yourself")
        if not message.strip():
            raise ToolError("field 'message' must not be empty")
        stored = core.mailboxes.put(host.terminal_id, f"[message from {label}] {message}", label, lead.terminal_id)
        text = f"Message {stored.message_id} queued for {host.terminal_id} (it reads its messages)."
        return tool_result(text, MessageResult(message_id=stored.message_id, state="queued", terminal_id=host.terminal_id))
    try:
        receiver = core.resolve_target(target, lead.session, same_session=True)
    except CaoError as exc:
        raise ToolError(error_text(exc)) from None
    if receiver.terminal_id == lead.terminal_id:
        raise ToolError("you cannot send a message to yourself")
    message_id, state = await calling_core(core.send_message(receiver.terminal_id, message, sender=label, sender_agent=lead))
    text = f"Message {message_id} {state} to {receiver.profile.name} ({receiver.terminal_id})."
    return tool_result(text, MessageResult(message_id=message_id, state=state, terminal_id=receiver.terminal_id))


def team_list(core: Orchestrator, lead: Caller, elsewhere: Optional[list[dict[str, Any]]] = None) -> TeamList:
    """The lead's session: its agents here, then `elsewhere`'s (agents of other machines, as
    cao/listAgents gives them), and its leads outside tmux."""
    agents = [
        TeamMember(
            terminal_id=a.terminal_id,
            name=a.name,
            profile=a.profile.name,
            provider=a.provider.name,
            status=a.status.value,
            you=a.terminal_id == lead.terminal_id,
            question=question_of(a),
        )  # fmt: skip
        for a in core.list_agents(lead.session)
    ] + [
        TeamMember(
            terminal_id=a["terminalId"],
            name=a.get("name"),
            profile=str(a.get("profile", "")),
            provider=str(a.get("provider", "")),
            status=str(a.get("status", "")),
            you=False,
        )  # fmt: skip
        for a in elsewhere or []
        if isinstance(a.get("terminalId"), str)
    ]
    leads = [
        LeadMember(
            lead_id=h.terminal_id,
            host=h.host_name,
            connected=core.mailboxes.connected(h.terminal_id),
            you=h.terminal_id == lead.terminal_id,
        )  # fmt: skip
        for h in core.mailboxes.leads(lead.session)
    ]
    return TeamList(session=lead.session, agents=agents, leads=leads)


async def list_sessions(core: Orchestrator, lead: Caller) -> CallToolResult:
    team = team_list(core, lead, await team_calls.teammates(core, lead.terminal_id, lead.session))
    return tool_result(team.model_dump_json(by_alias=True, indent=1, exclude_none=True), team)


# Shared by the agents' and the MCP hosts' handoff/assign tools.
WORKTREE_HELP = (
    "true: the specialist works in its own git worktree on a new branch, so parallel workers never see each "
    "other's edits; its result says where its work is. Default: its profile decides."
)
BASE_REF_HELP = "With worktree: the branch or commit its branch starts from (default: the current HEAD)."


# ---- workflows (cao_sidecar.workflows) -----------------------------------------------------------


class WorkflowResult(ToolData):
    run_id: str = Field(description="The run (cao-sidecar workflow show RUN).")
    name: str
    status: str = Field(description="'running' (not waited for), 'completed', 'failed' or 'interrupted'.")
    output: Any = Field(default=None, description="What the workflow returned, once completed.")
    error: Optional[str] = None
    steps: int = Field(description="Steps journaled so far.")


async def run_workflow(
    core: Orchestrator, lead: Caller, name: str, inputs: dict[str, str], wait: bool, trigger: str
) -> CallToolResult:
    """Start the project's workflow `name` (docs/workflows.md); with `wait`, its result."""
    if core.workflows is None:
        raise ToolError("workflows are not available in this sidecar")
    run = await calling_core(core.workflows.run(name, inputs, trigger=trigger))
    if wait:
        run = await calling_core(core.workflows.wait_ended(run.run_id))
    data = WorkflowResult(
        run_id=run.run_id, name=run.name, status=run.status, output=run.output, error=run.error, steps=len(run.steps)
    )
    if run.status == "completed":
        text = run.output if isinstance(run.output, str) else json.dumps(run.output, ensure_ascii=False)
    elif run.status == "running":
        text = f"Workflow {name} started as run {run.run_id}."
    else:
        text = f"Workflow {name} (run {run.run_id}) {run.status}: {run.error}"
    return tool_result(text, data)
