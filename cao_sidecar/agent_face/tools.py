"""The MCP tools agents call: handoff, assign, send_message, list_sessions.

Each tool is a thin translation onto the orchestration core (the bodies are shared with the MCP
host door: cao_sidecar/team_tools.py). This module imports the `mcp` SDK (slow): it is only
imported after the editor's `initialize` has been answered.
"""

from typing import Annotated, Callable

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import Field

from cao_sidecar import __version__, team_tools
from cao_sidecar.core.agent import Agent
from cao_sidecar.core.orchestrator import Orchestrator
from cao_sidecar.handoff_tickets import HandoffTickets, Ticket
from cao_sidecar.hosts import team_calls
from cao_sidecar.settings import settings
from cao_sidecar.team_tools import (
    BASE_REF_HELP,
    MODEL_HELP,
    WORKTREE_HELP,
    AssignResult,
    HandoffResult,
    MergeResult,
    MessageResult,
    TeamList,
    WorkflowResult,
)
from cao_sidecar.wire_types.agents import HANDOFF_TIMEOUT_SECONDS

INSTRUCTIONS = """\
Tools to work with other agents on your team, each a coding assistant in its own terminal.
- handoff: give a task to a new specialist and wait for its answer (blocking). A long one returns
  a ticket instead: call wait_for_result with it to wait for (and get) the answer.
- assign: start a specialist on a task in the background; its answer arrives later as a message
  in your input, naming the worker.
- send_message: send a message to another running agent.
- list_sessions: see the agents on your team and their status.
- merge_work: merge a worker's branch (from a handoff or assign with worktree) into its base.
- run_workflow: run one of the project's workflows (journaled multi-step runs) and get its output.
Specialists are named by profile (for example: developer, reviewer, tester)."""

HOST_HELP = (
    "The host to run the specialist on: a name from the team's hosts (hosts.yaml), 'main' for the "
    "orchestrator's machine. Default: the host the profile names, else the machine you run on."
)


def build_mcp_server(core: Orchestrator, caller_of: Callable[[Context], Agent]) -> MCPServer:
    mcp = MCPServer(name="cao", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    profile_names = ", ".join(p.name for p in core.catalog.all())
    tickets: HandoffTickets[CallToolResult] = HandoffTickets(lambda t, outcome: deliver_late_answer(core, t, outcome))

    @mcp.tool()
    async def handoff(
        target: Annotated[str, Field(description=f"Profile of the specialist to start. Known profiles: {profile_names}")],
        task: Annotated[str, Field(description="The complete task for the specialist, with all context it needs.")],
        ctx: Context,
        timeout_seconds: Annotated[
            float, Field(description="Give up (and stop the specialist) after this many seconds.", gt=0)
        ] = HANDOFF_TIMEOUT_SECONDS,
        worktree: Annotated[bool | None, Field(description=WORKTREE_HELP)] = None,
        base_ref: Annotated[str | None, Field(description=BASE_REF_HELP)] = None,
        model: Annotated[str | None, Field(description=MODEL_HELP)] = None,
        host: Annotated[str | None, Field(description=HOST_HELP)] = None,
    ) -> Annotated[CallToolResult, HandoffResult]:
        """Hand a task to a new specialist agent and wait for its final answer, which is returned as the
        result. The specialist starts fresh (it does not see your conversation): put everything it needs
        in `task`. It is shut down after answering. Use this when you need the answer before you can go on;
        use `assign` to run several tasks in parallel."""
        lead = caller_of(ctx)

        def started(worker: Agent) -> None:
            ticket.worker = worker.terminal_id

        ticket = tickets.start(lead.terminal_id, team_tools.handoff(
            core, lead, target, task, timeout_seconds, on_agent=started, worktree=worktree, base_ref=base_ref, model=model,
            host=host,
        ))  # fmt: skip
        return await wait_on(ticket, ctx, target)

    @mcp.tool()
    async def wait_for_result(
        ticket: Annotated[str, Field(description="The ticket a handoff returned while its specialist was still working.")],
        ctx: Context,
    ) -> Annotated[CallToolResult, HandoffResult]:
        """Wait for the answer of a handoff that returned a ticket, and return it like handoff does. If the
        specialist is still working after a while, returns the same ticket again: call again."""
        found = tickets.find(ticket, caller_of(ctx).terminal_id)
        if found is None:
            raise ToolError(f"no handoff ticket {ticket!r} of yours (tickets are kept until the sidecar restarts)")
        return await wait_on(found, ctx, "")

    async def wait_on(ticket: Ticket[CallToolResult], ctx: Context, target: str) -> CallToolResult:
        # A caller that sent a progressToken gets notifications (others: report_progress is a
        # no-op); each is logged, so whether a lead CLI asks for them can be seen.
        streams = (ctx.request_context.meta or {}).get("progress_token") is not None
        caller = caller_of(ctx).terminal_id

        async def progress(elapsed: float, text: str) -> None:
            await ctx.report_progress(elapsed, None, text)
            if streams:
                core.logs.event("handoff.progress", caller, ticket=ticket.id, seconds=round(elapsed, 1))

        every = settings().handoff_progress_every
        done = await tickets.wait(ticket, settings().handoff_reply_after, progress, every)
        if done is not None:
            return done
        text = (
            f"The specialist{' ' + ticket.worker if ticket.worker else ''} is still working. Call wait_for_result "
            f"with ticket {ticket.id} to wait for its answer; if you do not, it arrives later as a message."
        )
        data = HandoffResult(terminal_id=ticket.worker or "", profile=target, status="running", output="", ticket=ticket.id)
        return team_tools.tool_result(text, data)

    @mcp.tool()
    async def assign(
        target: Annotated[str, Field(description=f"Profile of the specialist to start. Known profiles: {profile_names}")],
        task: Annotated[str, Field(description="The complete task for the specialist, with all context it needs.")],
        ctx: Context,
        worktree: Annotated[bool | None, Field(description=WORKTREE_HELP)] = None,
        base_ref: Annotated[str | None, Field(description=BASE_REF_HELP)] = None,
        model: Annotated[str | None, Field(description=MODEL_HELP)] = None,
        host: Annotated[str | None, Field(description=HOST_HELP)] = None,
    ) -> Annotated[CallToolResult, AssignResult]:
        """Start a specialist agent on a task in the background and return at once with its terminal id.
        When it finishes, its answer is delivered to you as a message that names the worker (terminal id and
        profile). Use this to run several tasks in parallel; do not wait or poll for the result."""
        return await team_tools.assign_anywhere(  # on another host too (issue 19): its answer comes back the same way
            core, caller_of(ctx), target, task, host, worktree=worktree, base_ref=base_ref, model=model
        )

    @mcp.tool()
    async def send_message(
        target: Annotated[str, Field(description="Terminal id or name of the receiving agent (see list_sessions).")],
        message: Annotated[str, Field(description="The message text.")],
        ctx: Context,
    ) -> Annotated[CallToolResult, MessageResult]:
        """Send a message to another running agent of your session (by terminal id or name), or to a
        lead of your session (by its lead id, see list_sessions). It is delivered when the receiver is
        idle, in order, and shows you as the sender."""
        return await team_tools.send_message(core, caller_of(ctx), target, message)

    @mcp.tool()
    async def merge_work(
        worker: Annotated[str, Field(description="Terminal id of the worker whose branch to merge.")],
        ctx: Context,
        strategy: Annotated[
            str, Field(description="'merge' (a merge commit) or 'rebase' (rebase, then fast-forward).")
        ] = "merge",
    ) -> Annotated[CallToolResult, MergeResult]:
        """Merge the work of a worker of your session that had its own git worktree (its branch) into the
        branch it started from. On a conflict nothing changes and the conflicting files are listed; a base
        with uncommitted changes is refused."""
        caller = caller_of(ctx)
        if strategy not in ("merge", "rebase"):
            raise ToolError("strategy must be 'merge' or 'rebase'")
        if team_calls.names_elsewhere(worker):  # a worker of another machine (issue 19)
            done = await team_tools.calling_core(team_calls.merge(core, caller.terminal_id, caller.session, worker, strategy))
        else:
            done = await team_tools.calling_core(core.worktrees.merge(worker, strategy, session=caller.session))
        text = done["message"] + (": " + ", ".join(done["conflicts"]) if done["conflicts"] else "")
        return team_tools.tool_result(text, MergeResult.model_validate(done))

    @mcp.tool()
    async def list_sessions(ctx: Context) -> Annotated[CallToolResult, TeamList]:
        """List the agents of your session (your team): terminal id, name, profile, provider, status;
        and the leads outside tmux (MCP hosts) that work with it."""
        return await team_tools.list_sessions(core, caller_of(ctx))

    @mcp.tool()
    async def run_workflow(
        name: Annotated[str, Field(description="The workflow's name (a script in the project's .cao/workflows/ or the user's).")],
        ctx: Context,
        inputs: Annotated[dict[str, str], Field(description="The workflow's inputs, name: value.")] = {},  # noqa: B006 - read only
        wait: Annotated[bool, Field(description="Wait for the run's output (default); false: return its id at once.")] = True,
    ) -> Annotated[CallToolResult, WorkflowResult]:
        """Run a workflow of this project: a fixed sequence of specialist steps (some in parallel) whose
        steps are journaled, so the run survives crashes. Returns the workflow's output."""
        return await team_tools.run_workflow(core, caller_of(ctx), name, dict(inputs), wait, "agent")

    return mcp


async def deliver_late_answer(core: Orchestrator, ticket: Ticket[CallToolResult], outcome: object) -> None:
    """A handed-out ticket's answer, nobody waiting for it: into the lead's input as a message."""
    if isinstance(outcome, BaseException):
        body = f"failed: {outcome}"
    else:
        result = outcome if isinstance(outcome, CallToolResult) else None
        first = result.content[0] if result and result.content else None
        body = "answered:\n" + (getattr(first, "text", "") or "")
    await core.send_message(ticket.lead_id, f"Handoff {ticket.id} (worker {ticket.worker}) {body}", sender=f"handoff {ticket.id}")
