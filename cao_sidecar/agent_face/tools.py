"""The MCP tools agents call: handoff, assign, send_message, list_sessions.

Each tool is a thin translation onto the orchestration core, exactly like the editor's cao/*
methods. This module imports the `mcp` SDK (slow): it is only imported after the editor's
`initialize` has been answered.
"""

import json
from typing import Annotated, Callable, Literal, Mapping, Optional

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs this one below Python 3.12

from cao_sidecar import __version__, wire
from cao_sidecar.core.agent import Agent
from cao_sidecar.core.errors import CaoError
from cao_sidecar.core.orchestrator import Orchestrator

INSTRUCTIONS = """\
Tools to work with other agents on your team, each a coding assistant in its own terminal.
- handoff: give a task to a new specialist and wait for its answer (blocking).
- assign: start a specialist on a task in the background; its answer arrives later as a message
  in your input, naming the worker.
- send_message: send a message to another running agent.
- list_sessions: see the agents on your team and their status.
Specialists are named by profile (for example: developer, reviewer, tester)."""


# What the tools return as structured content. Annotating a tool `Annotated[CallToolResult, T]`
# makes the SDK publish T as the tool's outputSchema and check each result against it; the text
# content stays what a model reads best (the answer itself, a sentence).


class HandoffToolResult(TypedDict):
    terminalId: str
    profile: str
    status: Literal["completed"]
    output: str


class AssignToolResult(TypedDict):
    terminalId: str
    profile: str
    status: str  # the worker's status when the call returned


class SendMessageToolResult(TypedDict):
    messageId: str
    state: Literal["delivered", "queued"]
    terminalId: str  # the receiver


class TeamMember(TypedDict):
    terminalId: str
    name: Optional[str]
    profile: str
    provider: str
    status: str
    you: bool  # the caller itself


class ListSessionsToolResult(TypedDict):
    session: str
    agents: list[TeamMember]


def team_member(agent: Agent, caller: Agent) -> TeamMember:
    return TeamMember(
        terminalId=agent.terminal_id,
        name=agent.name,
        profile=agent.profile.name,
        provider=agent.provider.name,
        status=agent.status.value,
        you=agent is caller,
    )


def build_mcp_server(core: Orchestrator, caller_of: Callable[[Context], Agent]) -> MCPServer:
    mcp = MCPServer(name="cao", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    profile_names = ", ".join(p.name for p in core.catalog.all())

    def result(text: str, structured: Mapping[str, object]) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=dict(structured))

    @mcp.tool(
        description=(
            "Hand a task to a new specialist agent and wait for its final answer, which is returned as the "
            "result. The specialist starts fresh (it does not see your conversation): put everything it needs "
            "in `task`. It is shut down after answering. Use this when you need the answer before you can go on; "
            "use `assign` to run several tasks in parallel."
        )
    )
    async def handoff(
        target: Annotated[str, Field(description=f"Profile of the specialist to start. Known profiles: {profile_names}")],
        task: Annotated[str, Field(description="The complete task for the specialist, with all context it needs.")],
        ctx: Context,
        timeout_seconds: Annotated[
            float, Field(description="Give up (and stop the specialist) after this many seconds.", gt=0)
        ] = wire.HANDOFF_TIMEOUT_SECONDS,
    ) -> Annotated[CallToolResult, HandoffToolResult]:
        caller = caller_of(ctx)
        try:
            worker, answer = await core.handoff(task, profile=target, timeout=timeout_seconds, caller=caller)
        except CaoError as exc:
            raise ToolError(_error_text(exc)) from None
        return result(answer, HandoffToolResult(terminalId=worker.terminal_id, profile=target, status="completed", output=answer))

    @mcp.tool(
        description=(
            "Start a specialist agent on a task in the background and return at once with its terminal id. "
            "When it finishes, its answer is delivered to you as a message that names the worker (terminal id and "
            "profile). Use this to run several tasks in parallel; do not wait or poll for the result."
        )
    )
    async def assign(
        target: Annotated[str, Field(description=f"Profile of the specialist to start. Known profiles: {profile_names}")],
        task: Annotated[str, Field(description="The complete task for the specialist, with all context it needs.")],
        ctx: Context,
    ) -> Annotated[CallToolResult, AssignToolResult]:
        caller = caller_of(ctx)
        try:
            worker = core.assign(task, profile=target, caller=caller)
        except CaoError as exc:
            raise ToolError(_error_text(exc)) from None
        text = f"Assigned to {target} (terminal {worker.terminal_id}); its answer will arrive as a message."
        return result(text, AssignToolResult(terminalId=worker.terminal_id, profile=target, status=worker.status.value))

    @mcp.tool(
        description=(
            "Send a message to another running agent of your session (by terminal id or name). It is "
            "delivered when the receiver is idle, in order, and shows you as the sender."
        )
    )
    async def send_message(
        target: Annotated[str, Field(description="Terminal id or name of the receiving agent (see list_sessions).")],
        message: Annotated[str, Field(description="The message text.")],
        ctx: Context,
    ) -> Annotated[CallToolResult, SendMessageToolResult]:
        caller = caller_of(ctx)
        try:
            receiver = core.resolve_target(target, caller.session, same_session=True)
            if receiver is caller:
                raise ToolError("you cannot send a message to yourself")
            message_id, state = await core.send_message(
                receiver.terminal_id, message, sender=f"{caller.profile.name} {caller.terminal_id}", sender_agent=caller
            )
        except CaoError as exc:
            raise ToolError(_error_text(exc)) from None
        text = f"Message {message_id} {state} to {receiver.profile.name} ({receiver.terminal_id})."
        return result(text, SendMessageToolResult(messageId=message_id, state=state, terminalId=receiver.terminal_id))  # type: ignore[typeddict-item]

    @mcp.tool(description="List the agents of your session (your team): terminal id, name, profile, provider, status.")
    async def list_sessions(ctx: Context) -> Annotated[CallToolResult, ListSessionsToolResult]:
        caller = caller_of(ctx)
        listing = ListSessionsToolResult(
            session=caller.session, agents=[team_member(a, caller) for a in core.list_agents(caller.session)]
        )
        return result(json.dumps(listing, indent=1), listing)

    return mcp


def _error_text(exc: CaoError) -> str:
    tail = exc.data.get("screenTail")
    return f"{exc.message}\n--- screen tail ---\n{tail}" if tail else exc.message
