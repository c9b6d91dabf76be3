"""Terminal verbs on the running team: `cao-sidecar agents|spawn|launch|handoff|assign|send|answer|
attach|terminate|status|shutdown`.

Each verb is a thin adapter over `cao_client`: it connects (the client starts `cao-sidecar
--stdio`, which joins the project's team), makes one or two requests and prints the result.
Exit codes: 0 done, 1 a failure the team reported (unknown profile or agent, timeout, ...), 2 a
usage error. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

VERBS = (
    "agents",
    "spawn",
    "launch",
    "handoff",
    "assign",
    "send",
    "answer",
    "attach",
    "terminate",
    "status",
    "shutdown",
    "workflow",
)
AGENT_HELP = "an agent's id, its name, or a unique prefix of either"


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The verbs' parsers; `common` adds the options every verb shares (--tmux-socket, ...)."""
    p = sub.add_parser("agents", help="the team's agents as a table (--json, --watch)")
    p.add_argument("--json", action="store_true", help="print JSON (cao/listAgents' AgentInfo objects)")
    p.add_argument("--watch", "-w", action="store_true", help="keep showing the agents as their status changes (Ctrl-C ends)")

    for verb, text in (
        ("spawn", "start an agent from a profile and print its id"),
        ("launch", "start an agent and attach to its tmux window"),
    ):
        p = sub.add_parser(verb, help=text)
        p.add_argument("profile")
        p.add_argument("--provider", help="agent CLI to run it with (default: the profile's)")
        p.add_argument("--name", help="a name to call the agent by")
        p.add_argument("--cwd", type=Path, help="its working directory (default: the project)")
        p.add_argument("--timeout", type=float, default=None, help="seconds to wait until it is ready")
        if verb == "spawn":
            p.add_argument("--json", action="store_true", help="print the SpawnResult as JSON")

    p = sub.add_parser("handoff", help="give a task to a new worker, wait, print its answer")
    _task_arguments(p, "seconds to wait for the answer")

    p = sub.add_parser("assign", help="start a worker on a task in the background and print its id")
    _task_arguments(p, "seconds the worker may take")
    p.add_argument("--wait", action="store_true", help="wait for the worker's answer and print it")

    p = sub.add_parser("send", help="send a message to an agent (delivered now, or queued while it is busy)")
    p.add_argument("agent", help=AGENT_HELP)
    p.add_argument("message")

    p = sub.add_parser("answer", help="answer the question an agent waits on (pick one on a terminal)")
    p.add_argument("agent", help=AGENT_HELP)
    p.add_argument("choice", nargs="?", help="a choice (its text or number) or free text; omitted: pick on the terminal")

    p = sub.add_parser("attach", help="show an agent's live tmux window in this terminal")
    p.add_argument("agent", help=AGENT_HELP)

    p = sub.add_parser("terminate", help="end an agent (its CLI exits, its window goes)")
    p.add_argument("agent", help=AGENT_HELP)

    p = sub.add_parser("status", help="the team: project, orchestrator, agents by status")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("shutdown", help="end the project's orchestrator for every client")
    p.add_argument("--terminate-agents", action="store_true", help="end its agents too (default: they keep running in tmux)")

    from cao_client.verbs.workflows import add_parser as add_workflow_parser

    add_workflow_parser(sub)

    for verb in VERBS:
        parser = sub.choices[verb]
        parser.add_argument(
            "--project", type=Path, default=None, help="the project whose team to use (default: the current directory)"
        )
        common(parser)
        if verb in ("spawn", "launch", "handoff", "assign"):
            parser.set_defaults(session=None)  # --session given: start it there; else the team's default


def run_verb(args: argparse.Namespace, socket: str) -> int:
    from cao_client.verbs.session import run

    if args.command == "agents":
        from cao_client.verbs.agents import agents

        return run(agents, args, socket)
    if args.command == "workflow":
        from cao_client.verbs import workflows

        if args.workflow_command == "check":  # offline: nothing to connect to
            try:
                return workflows.check_files(args)
            except OSError as exc:
                print(f"cao-sidecar workflow check: {exc}", file=sys.stderr)
                return 1
        return run(workflows.workflow, args, socket)
    if args.command in ("status", "shutdown"):
        from cao_client.verbs import team

        return run(getattr(team, args.command), args, socket)
    from cao_client.verbs import actions

    return run(getattr(actions, args.command), args, socket, actions.check)


def _task_arguments(p: argparse.ArgumentParser, timeout_help: str) -> None:
    """The arguments handoff and assign share: who does the task, where, and for how long."""
    p.add_argument("profile")
    p.add_argument("task")
    p.add_argument("--provider")
    p.add_argument("--cwd", type=Path, help="the worker's working directory (default: the project)")
    p.add_argument("--timeout", type=float, default=None, help=timeout_help)
