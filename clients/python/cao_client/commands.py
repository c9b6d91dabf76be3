"""Command-line verbs built on the client (`cao-sidecar run ...`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from cao_client.client import CaoClient, CaoError
from cao_client.terminal_asker import TerminalAsker, Unanswerable, until_done_or_unanswerable


async def _run(args: argparse.Namespace, socket: str) -> int:
    workers: set[str] = set()

    def is_ours(params: dict) -> bool:
        # The worker this run starts: the first agent of the profile that appears from now on.
        if not workers and params.get("previousStatus") is None and params.get("profile") == args.profile:
            workers.add(params.get("terminalId"))
        return params.get("terminalId") in workers

    asker = TerminalAsker(interactive=sys.stdin.isatty(), is_ours=is_ours)
    client = await CaoClient.start(tmux_socket=socket, on_notification=asker.on_notification)
    asker.client = client
    try:
        work = asyncio.ensure_future(
            client.handoff(args.task, profile=args.profile, provider=args.provider, timeout_seconds=args.timeout)
        )
        result = await until_done_or_unanswerable(asker, work)
    except Unanswerable as exc:
        print(f"cao-sidecar run: {exc}", file=sys.stderr)
        return 1
    except CaoError as exc:
        print(f"cao-sidecar run: {exc.message} (code {exc.code})", file=sys.stderr)
        tail = (exc.data or {}).get("screenTail") if isinstance(exc.data, dict) else None
        if tail:
            print("--- screen tail ---\n" + tail, file=sys.stderr)
        return 1
    finally:
        asker.close()
        await client.close()
    print(result["output"])
    return 0


def run_command(args: argparse.Namespace, socket: str) -> int:
    return asyncio.run(_run(args, socket))
