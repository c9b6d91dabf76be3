"""The tools of the MCP host door: the host's own agent leads a team of CLI workers in tmux.

The team tools (handoff, assign, send_message, list_sessions) mean what they mean for agents
(cao_sidecar/team_tools.py); a lead outside tmux also gets list_profiles, spawn, get_output,
answer and terminate, and reads what its workers send back with read_messages /
wait_for_messages (it has no terminal to type into). The host acts within its session only, and
can do nothing the user's own configuration and trust decisions do not already allow: profiles of
an untrusted folder stay held back, and no tool grants trust.
"""

from typing import Annotated, Any, Literal, Optional

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, EmptyResult, SetLevelRequestParams
from pydantic import Field

from cao_sidecar import __version__, team_tools
from cao_sidecar.core.agent import Agent
from cao_sidecar.core.errors import CaoError
from cao_sidecar.core.leads import HostLead
from cao_sidecar.core.orchestrator import Orchestrator
from cao_sidecar.host_face.connection import LOG_LEVELS, HostConnection, progress_while
from cao_sidecar.team_tools import (
    MODEL_HELP,
    AssignResult,
    HandoffResult,
    MessageResult,
    TeamList,
    ToolData,
    WorkflowResult,
    calling_core,
)
from cao_sidecar.wire_types.agents import HANDOFF_TIMEOUT_SECONDS

INSTRUCTIONS = """\
cao-sidecar: you lead a team of coding agents (Claude Code, Codex, Gemini CLI, ... each a real CLI in
its own tmux window). Specialists are named by profile: see list_profiles.
- handoff: give a task to a new specialist and wait for its answer.
- assign: start a specialist in the background; its answer arrives in your messages. Run several
  in parallel, then call wait_for_messages to collect the answers.
- spawn / send_message / get_output / terminate: keep an agent running and talk to it.
- list_sessions: your team, each agent's status, and the question an agent waits on; answer it
  with `answer`.
- run_workflow: run one of the project's workflows (journaled multi-step runs) for its output.
Workers start fresh: put everything they need in the task."""

TASK = Annotated[str, Field(description="The complete task, with all the context the specialist needs.")]
PROFILE = Annotated[str, Field(description="Profile of the specialist to start (see list_profiles).")]
AGENT = Annotated[str, Field(description="Terminal id or name of an agent of your session (see list_sessions).")]


class ProfileInfo(ToolData):
    name: str
    description: str
    provider: str
    scope: str = Field(description="Where it is defined: builtin, user or workspace.")
    untrusted: bool = Field(description="From a folder the user has not trusted: what could widen permissions is held back.")


class ProfileList(ToolData):
    profiles: list[ProfileInfo]


class SpawnedAgent(ToolData):
    terminal_id: str
    name: Optional[str]
    profile: str
    provider: str
    status: str
    session: str


class AgentOutput(ToolData):
    terminal_id: str
    mode: str
    output: str


class Answered(ToolData):
    terminal_id: str
    question_id: str
    typed: str = Field(description="What was typed into the agent's terminal.")


class Terminated(ToolData):
    terminal_id: str
    status: str


class InboxMessage(ToolData):
    message_id: str
    sender: Optional[str]
    text: str


class Messages(ToolData):
    lead_id: str = Field(description="Your id: agents send you messages with send_message to it.")
    messages: list[InboxMessage]
    unread: int = Field(description="Messages still waiting after these.")


def build_host_server(connection: HostConnection) -> MCPServer:
    async def bind_on_initialized(ctx: Any, call_next: Any) -> Any:
        result = await call_next(ctx)
        if ctx.method == "notifications/initialized":
            connection.initialized(ctx.session)
        return result

    mcp = MCPServer(
        name="cao", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING", middleware=[bind_on_initialized]
    )

    @mcp.tool()
    async def handoff(
        target: PROFILE,
        task: TASK,
        ctx: Context,
        timeout_seconds: Annotated[
            float, Field(description="Give up (and stop the specialist) after this long.", gt=0)
        ] = HANDOFF_TIMEOUT_SECONDS,
        worktree: Annotated[bool | None, Field(description=team_tools.WORKTREE_HELP)] = None,
        base_ref: Annotated[str | None, Field(description=team_tools.BASE_REF_HELP)] = None,
        model: Annotated[str | None, Field(description=MODEL_HELP)] = None,
    ) -> Annotated[CallToolResult, HandoffResult]:
        """Hand a task to a new specialist agent and wait for its final answer, which is the result.
        The specialist starts fresh (it does not see your conversation) and is shut down after
        answering. Sends progress notifications while it works. Use `assign` to run tasks in parallel."""
        core, lead = connection.lead(ctx)
        worker: list[Agent] = []
        with_status = lambda: f"{target} {worker[0].terminal_id}: {worker[0].status.value}" if worker else f"{target}: starting"  # noqa: E731
        async with progress_while(ctx, with_status, timeout_seconds):
            return await team_tools.handoff(
                core,
                lead,
                target,
                task,
                timeout_seconds,
                on_agent=worker.append,
                worktree=worktree,
                base_ref=base_ref,
                model=model,
            )

    @mcp.tool()
    async def assign(
        target: PROFILE,
        task: TASK,
        ctx: Context,
        worktree: Annotated[bool | None, Field(description=team_tools.WORKTREE_HELP)] = None,
        base_ref: Annotated[str | None, Field(description=team_tools.BASE_REF_HELP)] = None,
        model: Annotated[str | None, Field(description=MODEL_HELP)] = None,
    ) -> Annotated[CallToolResult, AssignResult]:
        """Start a specialist agent on a task in the background and return at once with its terminal
        id. When it finishes, its answer arrives in your messages (naming the worker): collect it with
        wait_for_messages or read_messages."""
        core, lead = connection.lead(ctx)
        how = "its answer will arrive in your messages (wait_for_messages)."
        return await team_tools.assign_anywhere(
            core, lead, target, task, None, worktree=worktree, base_ref=base_ref, model=model, how_results_arrive=how
        )

    @mcp.tool()
    async def send_message(
        target: Annotated[str, Field(description="Terminal id or name of an agent of your session, or a lead's id.")],
        message: Annotated[str, Field(description="The message text.")],
        ctx: Context,
    ) -> Annotated[CallToolResult, MessageResult]:
        """Send a message to a running agent of your session (typed in when it is idle, in order,
        signed with your lead id so it can answer you with send_message), or to another lead."""
        core, lead = connection.lead(ctx)
        return await team_tools.send_message(core, lead, target, message)

    @mcp.tool()
    async def list_sessions(ctx: Context) -> Annotated[CallToolResult, TeamList]:
        """List your session's agents (terminal id, name, profile, provider, status, and the question an
        agent waits on) and its leads (you among them)."""
        core, lead = connection.lead(ctx)
        return await team_tools.list_sessions(core, lead)

    @mcp.tool()
    async def run_workflow(
        name: Annotated[str, Field(description="The workflow's name (cao-sidecar workflow list).")],
        ctx: Context,
        inputs: Annotated[dict[str, str], Field(description="The workflow's inputs, name: value.")] = {},  # noqa: B006 - read only
        wait: Annotated[bool, Field(description="Wait for the run's output (default); false: return its id at once.")] = True,
    ) -> Annotated[CallToolResult, WorkflowResult]:
        """Run one of the project's workflows (journaled multi-step team runs that survive crashes) and
        return its output; `cao-sidecar workflow show RUN` shows its steps."""
        core, lead = connection.lead(ctx)
        return await team_tools.run_workflow(core, lead, name, dict(inputs), wait, "host")

    @mcp.tool()
    async def list_profiles(ctx: Context) -> ProfileList:
        """List the specialist profiles you can start (name, description, provider). A profile of a
        folder the user has not trusted never replaces a built-in one and runs without the settings
        that could widen what it may do."""
        core = connection.core
        return ProfileList(
            profiles=[
                ProfileInfo(
                    name=e.item.name,
                    description=e.item.description,
                    provider=e.item.provider,
                    scope=e.layer.scope,
                    untrusted=not e.layer.trusted,
                )  # fmt: skip
                for e in core.catalog.entries()
            ]
        )

    @mcp.tool()
    async def spawn(
        profile: PROFILE,
        ctx: Context,
        name: Annotated[Optional[str], Field(description="A name for the agent, unique in your session.")] = None,
        provider: Annotated[Optional[str], Field(description="Run the profile on another CLI (e.g. codex).")] = None,
    ) -> SpawnedAgent:
        """Start an agent and wait until it is ready for input; it keeps running until you terminate
        it. Give it work with send_message, read its answer with get_output."""
        core, lead = connection.lead(ctx)
        agent = await calling_core(
            core.spawn(profile, provider=provider, session=lead.session, working_directory=lead.working_directory, name=name)
        )
        return SpawnedAgent(
            terminal_id=agent.terminal_id, name=agent.name, profile=agent.profile.name, provider=agent.provider.name,
            status=agent.status.value, session=agent.session,
        )  # fmt: skip

    @mcp.tool()
    async def get_output(
        target: AGENT,
        ctx: Context,
        mode: Annotated[Literal["last", "full"], Field(description="last: its last answer; full: its terminal.")] = "last",
    ) -> AgentOutput:
        """Read an agent's last answer, or its whole terminal (mode 'full')."""
        core, lead = connection.lead(ctx)
        agent = _agent_of(core, lead, target)
        output = await calling_core(core.get_output(agent.terminal_id, mode))
        return AgentOutput(terminal_id=agent.terminal_id, mode=mode, output=output)

    @mcp.tool()
    async def answer(
        target: AGENT,
        answer: Annotated[str, Field(description="One of the question's choices, or free text when it has none.")],
        ctx: Context,
        question_id: Annotated[
            Optional[str], Field(description="The question meant (from list_sessions); refused if another one shows now.")
        ] = None,
    ) -> Answered:
        """Answer the question an agent waits on (status waiting_user_answer, see list_sessions)."""
        core, lead = connection.lead(ctx)
        agent = _agent_of(core, lead, target)
        prompt_id, typed = await calling_core(core.answer(agent.terminal_id, answer, question_id))
        return Answered(terminal_id=agent.terminal_id, question_id=prompt_id, typed=typed)

    @mcp.tool()
    async def terminate(target: AGENT, ctx: Context) -> Terminated:
        """Stop an agent of your session: its CLI is asked to exit and its window closed."""
        core, lead = connection.lead(ctx)
        agent = _agent_of(core, lead, target)
        await calling_core(core.terminate(agent.terminal_id))
        return Terminated(terminal_id=agent.terminal_id, status=agent.status.value)

    @mcp.tool()
    async def read_messages(
        ctx: Context, limit: Annotated[int, Field(description="At most this many.", ge=1, le=500)] = 50
    ) -> Messages:
        """Read the messages sent to you (assigned workers' answers, agents' messages), oldest first.
        Each is handed over once."""
        core, lead = connection.lead(ctx)
        return _read(core, lead, limit)

    @mcp.tool()
    async def wait_for_messages(
        ctx: Context,
        timeout_seconds: Annotated[float, Field(description="Return empty-handed after this long.", gt=0, le=3600)] = 120.0,
        limit: Annotated[int, Field(description="At most this many.", ge=1, le=500)] = 50,
    ) -> Messages:
        """Wait until a message for you arrives (an assigned worker's answer, an agent's message),
        then read it like read_messages. Sends progress notifications while it waits."""
        core, lead = connection.lead(ctx)
        async with progress_while(ctx, lambda: "waiting for messages", timeout_seconds):
            await core.mailboxes.wait(lead.terminal_id, timeout_seconds)
        return _read(core, lead, limit)

    async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        connection.log_level = params.level if params.level in LOG_LEVELS else "info"
        return EmptyResult()

    # Declares the logging capability (message announcements are notifications/message).
    _lowlevel(mcp).add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    return mcp


def _agent_of(core: Orchestrator, lead: HostLead, target: str) -> Agent:
    try:
        return core.resolve_target(target, lead.session, same_session=True)
    except CaoError as exc:
        raise ToolError(team_tools.error_text(exc)) from None


def _read(core: Orchestrator, lead: HostLead, limit: int) -> Messages:
    stored = core.mailboxes.read(lead.terminal_id, limit)
    messages = [InboxMessage(message_id=m.message_id, sender=m.sender, text=_body(m.text, m.sender)) for m in stored]
    return Messages(lead_id=lead.terminal_id, messages=messages, unread=core.mailboxes.unread(lead.terminal_id))


def _body(text: str, sender: Optional[str]) -> str:
    prefix = f"[message from {sender}] "
    return text[len(prefix) :] if sender and text.startswith(prefix) else text


def _lowlevel(mcp: MCPServer) -> Any:
    # The SDK has no public way to serve MCPServer over given streams or to add a handler; its
    # own in-memory client reaches for the same attribute (mcp>=2.3,<3 in pyproject.toml).
    return mcp._lowlevel_server


async def serve_connection(mcp: MCPServer, read_stream: Any, write_stream: Any) -> None:
    server = _lowlevel(mcp)
    await server.run(read_stream, write_stream, server.create_initialization_options())
