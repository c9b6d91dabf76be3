"""What every verb shares: connecting to the team, naming an agent, turning failures into one line
on stderr and an exit code (0 done, 1 the team reported a failure, 2 usage)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cao_client.client import CaoClient, CaoError, NotificationHandler

FAILED, USAGE = 1, 2
SETTLE_SECONDS = 10.0
# Hints for the failures a person can act on, by the error's kind (protocol/spec.md §8).
HINTS = {
    "unknownProfile": "`cao-sidecar profiles list` shows the profiles",
    "unknownTerminal": "`cao-sidecar agents` lists the agents",
    "unknownProvider": "`cao-sidecar doctor` shows the providers",
}


class VerbFailed(Exception):
    """A failure to report as one line, with the exit code to end with."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Exec:
    """What a verb returns to replace this process with `argv` (tmux attach) once disconnected."""

    argv: list[str]


class Team:
    """A connection to the project's team, for the length of one verb."""

    def __init__(self, args: argparse.Namespace, socket: str) -> None:
        self.args = args
        self.socket = socket
        self.project = (args.project or Path.cwd()).resolve()
        self.client: CaoClient | None = None
        self._handlers: list[NotificationHandler] = []

    def on_notification(self, handler: NotificationHandler) -> None:
        self._handlers.append(handler)

    def _notify(self, method: str, params: Any) -> None:
        for handler in list(self._handlers):
            handler(method, params)

    async def connect(self) -> CaoClient:
        # The front end's own log would break the one-line errors: what matters comes as answers.
        quiet = str(getattr(self.args, "log_level", "warning")).lower() not in ("debug", "info")
        self.client = await CaoClient.start(
            workspace=self.project,
            cwd=self.project,
            tmux_socket=self.socket,
            on_notification=self._notify,
            stderr=asyncio.subprocess.DEVNULL if quiet else None,
        )
        return self.client

    async def agents(self) -> list[dict[str, Any]]:
        assert self.client is not None
        return await self.client.list_agents()

    async def agent(self, ref: str) -> dict[str, Any]:
        """The agent `ref` names (see `resolve`), as cao/listAgents shows it now."""
        return resolve(await self.agents(), ref)

    async def settled(self, agent: dict[str, Any], timeout: float = SETTLE_SECONDS) -> dict[str, Any]:
        """`agent` once it is past `starting` (or as it is after `timeout`): an orchestrator that
        has just taken over running agents (a restart) reads their screens first, and a question
        shows as `starting` until then."""
        if agent.get("status") != "starting":
            return agent
        seen = asyncio.Event()

        def on_status(method: str, params: Any) -> None:
            if method == "cao/agentStatus" and isinstance(params, dict) and params.get("terminalId") == agent["terminalId"]:
                seen.set()

        self.on_notification(on_status)
        try:
            await asyncio.wait_for(seen.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return resolve(await self.agents(), agent["terminalId"])


def resolve(agents: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """The one agent whose id or name is `ref`, else whose id or name starts with it. Several
    fit: a VerbFailed listing them (live agents win over exited ones of the same name)."""
    if not ref:
        raise VerbFailed("an empty agent name; give an agent's id, its name or a prefix", USAGE)
    found = [a for a in agents if a["terminalId"] == ref]
    found = found or [a for a in agents if a.get("name") == ref]
    found = found or [a for a in agents if a["terminalId"].startswith(ref) or (a.get("name") or "").startswith(ref)]
    live = [a for a in found if a.get("status") != "exited"]
    found = live or found
    if len(found) == 1:
        return found[0]
    if not found:
        raise VerbFailed(f"no agent '{ref}' in this team; {HINTS['unknownTerminal']}")
    listed = ", ".join(label(a) for a in found)
    raise VerbFailed(f"'{ref}' could be {len(found)} agents: {listed}; give more of the id")


def label(agent: dict[str, Any]) -> str:
    name = agent.get("name")
    who = f"{agent['terminalId']} ({name})" if name else agent["terminalId"]
    return f"{who} {agent.get('profile', '')}".rstrip()


def error_line(exc: CaoError) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    hint = HINTS.get(str(data.get("kind")))
    text = " ".join(str(exc.message).split())  # one line whatever the message holds
    return f"{text}; {hint}" if hint else text


Verb = Callable[[Team], Awaitable[int | Exec]]


def run(verb: Verb, args: argparse.Namespace, socket: str, check: Callable[[argparse.Namespace], None] | None = None) -> int:
    """Run `verb` on a connection to the team and end as it says (an Exec replaces us).
    `check(args)` raises VerbFailed for what is wrong before any connection is made."""
    name = f"cao-sidecar {args.command}"
    try:
        if args.project is not None and not args.project.is_dir():
            raise VerbFailed(f"--project {args.project} is not a directory", USAGE)
        if check is not None:
            check(args)
        outcome = asyncio.run(_connected(verb, Team(args, socket)))
    except VerbFailed as exc:
        print(f"{name}: {exc.message}", file=sys.stderr)
        return exc.code
    except CaoError as exc:
        print(f"{name}: {error_line(exc)}", file=sys.stderr)
        tail = exc.data.get("screenTail") if isinstance(exc.data, dict) else None
        if tail and sys.stderr.isatty():
            print("--- the agent's screen ---\n" + tail.rstrip(), file=sys.stderr)
        return FAILED
    except ConnectionError as exc:
        print(f"{name}: lost the connection to the team ({exc}); `cao-sidecar logs` may say why", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        return 130
    if isinstance(outcome, Exec):
        sys.stdout.flush()
        try:
            os.execvp(outcome.argv[0], outcome.argv)
        except OSError as exc:
            print(f"{name}: cannot run {outcome.argv[0]}: {exc}", file=sys.stderr)
            return FAILED
    return outcome


async def _connected(verb: Verb, team: Team) -> int | Exec:
    try:
        await team.connect()
        return await verb(team)
    finally:
        if team.client is not None:
            await team.client.close()
