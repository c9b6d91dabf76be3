"""The verbs that act on agents: spawn, launch, handoff, assign, send, answer, attach, terminate.

Results go to stdout (an id, an answer: what a script captures), what a person reads besides goes
to stderr. An agent's question during `handoff` or `assign --wait` is asked on the terminal, as
`run` does (see terminal_asker)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from cao_client.terminal_asker import (
    LineReader,
    TerminalAsker,
    Unanswerable,
    picked,
    show_question,
    until_done_or_unanswerable,
)
from cao_client.verbs.session import USAGE, Exec, Team, VerbFailed, label


def check(args: argparse.Namespace) -> None:
    """Usage errors found before connecting: a --cwd that is no directory, attach without a terminal."""
    cwd = getattr(args, "cwd", None)
    if cwd is not None and not cwd.is_dir():
        raise VerbFailed(f"--cwd {cwd} is not a directory", USAGE)
    if args.command in ("attach", "launch") and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise VerbFailed(
            f"{args.command} needs a terminal (stdin and stdout); from a script use `cao-sidecar spawn` and `agents --json`",
            USAGE,
        )


def _directory(path: Path | None) -> str | None:
    return None if path is None else str(path.resolve())


def _attach_argv(agent: dict[str, Any]) -> Exec:
    argv = agent.get("attachCommand") or []
    if not argv:
        raise VerbFailed(f"agent {label(agent)} has exited: there is no window to attach to")
    return Exec(list(argv))


async def _spawned(team: Team) -> dict[str, Any]:
    args = team.args
    assert team.client is not None
    return await team.client.spawn(
        args.profile,
        provider=args.provider,
        name=args.name,
        working_directory=_directory(args.cwd),
        session=args.session,
        timeout_seconds=args.timeout,
    )


async def spawn(team: Team) -> int:
    result = await _spawned(team)
    if team.args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(result["terminalId"])
    print(
        f"{result['profile']} is ready as {result['terminalId']} ({result['provider']}); to watch it: cao-sidecar attach {result['terminalId']}",
        file=sys.stderr,
    )
    return 0


async def launch(team: Team) -> Exec:
    result = await _spawned(team)
    return _attach_argv(await team.agent(result["terminalId"]))


def _first_new_worker(profile: str) -> Any:
    """A filter for the asker: the first agent of `profile` that appears from now on."""
    workers: set[str] = set()

    def is_ours(params: dict[str, Any]) -> bool:
        if not workers and params.get("previousStatus") is None and params.get("profile") == profile:
            workers.add(str(params.get("terminalId")))
        return params.get("terminalId") in workers

    return is_ours


async def _asking(team: Team, asker: TerminalAsker, work: Any) -> Any:
    team.on_notification(asker.on_notification)
    asker.client = team.client
    try:
        return await until_done_or_unanswerable(asker, asyncio.ensure_future(work))
    except Unanswerable as exc:
        raise VerbFailed(str(exc)) from None
    finally:
        asker.close()


async def handoff(team: Team) -> int:
    args = team.args
    assert team.client is not None
    asker = TerminalAsker(interactive=sys.stdin.isatty(), is_ours=_first_new_worker(args.profile))
    work = team.client.handoff(
        args.task,
        profile=args.profile,
        provider=args.provider,
        working_directory=_directory(getattr(args, "cwd", None)),  # `run` has no --cwd
        session=args.session,
        timeout_seconds=args.timeout,
    )
    result = await _asking(team, asker, work)
    print(result["output"])
    return 0


async def assign(team: Team) -> int:
    args = team.args
    assert team.client is not None
    reports: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def report_for(terminal_id: str) -> asyncio.Future[dict[str, Any]]:
        return reports.setdefault(terminal_id, asyncio.get_running_loop().create_future())

    def on_notification(method: str, params: Any) -> None:
        if method == "cao/workerCompleted" and isinstance(params, dict) and not report_for(params["terminalId"]).done():
            report_for(params["terminalId"]).set_result(params)

    team.on_notification(on_notification)
    result = await team.client.assign(
        args.profile,
        args.task,
        provider=args.provider,
        working_directory=_directory(args.cwd),
        session=args.session,
        timeout_seconds=args.timeout,
    )
    terminal_id = result["terminalId"]
    if not args.wait:
        print(terminal_id)
        print(f"{args.profile} worker {terminal_id} got the task; `cao-sidecar agents` follows it", file=sys.stderr)
        return 0
    asker = TerminalAsker(interactive=sys.stdin.isatty(), is_ours=lambda params: params.get("terminalId") == terminal_id)
    report = await _asking(team, asker, report_for(terminal_id))
    if report.get("error"):
        raise VerbFailed(f"worker {terminal_id}: {report['error']}")
    print(report.get("output", ""))
    return 0


async def send(team: Team) -> int:
    agent = await team.agent(team.args.agent)
    assert team.client is not None
    result = await team.client.send_message(agent["terminalId"], team.args.message)
    if result.get("state") == "queued":
        print(f"queued for {label(agent)} (it is {agent.get('status')}; it gets the message when ready)")
    else:
        print(f"delivered to {label(agent)}")
    return 0


async def answer(team: Team) -> int:
    agent = await team.settled(await team.agent(team.args.agent))
    prompt = agent.get("prompt")
    if agent.get("status") != "waiting_user_answer" or not isinstance(prompt, dict):
        raise VerbFailed(f"agent {label(agent)} is not waiting for an answer (it is {agent.get('status')})")
    choice = team.args.choice
    if choice is None:
        choice = await _pick(team, agent, prompt)
    assert team.client is not None
    result = await team.client.answer(agent["terminalId"], choice, prompt.get("id"))
    print(f"answered {label(agent)}: typed {result.get('typed')}")
    return 0


async def _pick(team: Team, agent: dict[str, Any], prompt: dict[str, Any]) -> str:
    """The answer typed on the terminal; fails if the question goes meanwhile (answered elsewhere)."""
    who = f"agent {label(agent)}"
    choices = [str(c) for c in prompt.get("choices") or []]
    if not sys.stdin.isatty():
        listed = f" [choices: {' / '.join(choices)}]" if choices else ""
        raise VerbFailed(
            f"{who} asks: {prompt.get('text')}{listed}; give the answer as CHOICE (standard input is not a terminal)", USAGE
        )
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_notification(method: str, params: Any) -> None:
        if method == "cao/agentStatus" and isinstance(params, dict) and params.get("terminalId") == agent["terminalId"]:
            still = params.get("status") == "waiting_user_answer" and (params.get("prompt") or {}).get("id") == prompt.get("id")
            if not still and not gone.done():
                gone.set_result(None)

    team.on_notification(on_notification)
    show_question(who, prompt, sys.stderr)
    lines = LineReader()
    try:
        typed = asyncio.ensure_future(lines.read_line())
        either: list[asyncio.Future[Any]] = [typed, gone]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not typed.done():
            typed.cancel()
            raise VerbFailed(f"{who}'s question was answered elsewhere or is gone; nothing was typed")
    finally:
        lines.close()
    line = typed.result()
    if not line:
        raise VerbFailed("no answer given; nothing was typed", USAGE)
    return picked(line, choices)


async def attach(team: Team) -> Exec:
    return _attach_argv(await team.agent(team.args.agent))


async def terminate(team: Team) -> int:
    agent = await team.agent(team.args.agent)
    assert team.client is not None
    await team.client.terminate(agent["terminalId"])
    print(f"terminated {label(agent)}")
    return 0
