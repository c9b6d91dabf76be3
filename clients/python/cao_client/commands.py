"""Command-line verbs built on the client (`cao-sidecar run ...`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from cao_client.client import CaoClient, CaoError


async def _run(args: argparse.Namespace, socket: str) -> int:
    client = await CaoClient.start(tmux_socket=socket)
    try:
        result = await client.handoff(
            args.task, profile=args.profile, provider=args.provider, timeout_seconds=args.timeout
        )
    except CaoError as exc:
        print(f"cao-sidecar run: {exc.message} (code {exc.code})", file=sys.stderr)
        tail = (exc.data or {}).get("screenTail") if isinstance(exc.data, dict) else None
        if tail:
            print("--- screen tail ---\n" + tail, file=sys.stderr)
        return 1
    finally:
        await client.close()
    print(result["output"])
    return 0


def run_command(args: argparse.Namespace, socket: str) -> int:
    return asyncio.run(_run(args, socket))
