"""`cao-sidecar demo`: a supervisor agent hands parts of a task to two workers.

Everything runs for real: the sidecar, a private tmux server, and three mock agents (the
supervisor calls the sidecar's `handoff` tool itself, as a real CLI would). Status changes are
printed as the editor would receive them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from typing import Any, Callable

from cao_client.client import CaoClient
from cao_client.terminal_asker import TerminalAsker, Unanswerable, until_done_or_unanswerable

PARTS = [
    ("mock_developer", "implement: parse the config file and validate every field"),
    ("mock_reviewer", "review: the parser handles missing fields and bad types"),
]


def _printer(start: float) -> Callable[[str, dict[str, Any]], None]:
    def on_notification(method: str, params: dict[str, Any]) -> None:
        stamp = f"{time.monotonic() - start:6.2f}s"
        if method == "cao/agentStatus":
            before = params.get("previousStatus") or "-"
            print(f"  {stamp}  {params['profile']:<16} {params['terminalId']}  {before} -> {params['status']}", flush=True)
        elif method == "cao/workerCompleted":
            print(f"  {stamp}  {params['profile']:<16} {params['terminalId']}  finished: {params['output']!r}", flush=True)

    return on_notification


async def _demo(socket: str) -> int:
    start = time.monotonic()
    print(f"cao-sidecar demo: tmux socket '{socket}' (watch live: tmux -L {socket} attach -t demo)\n")
    asker = TerminalAsker(interactive=sys.stdin.isatty())
    printer = _printer(start)

    def on_notification(method: str, params: dict) -> None:
        printer(method, params)
        asker.on_notification(method, params)

    client = await CaoClient.start(tmux_socket=socket, on_notification=on_notification)
    asker.client = client
    try:
        print("Starting the supervisor...")
        supervisor = await client.spawn("mock_supervisor", session="demo")
        sid = supervisor["terminalId"]
        answers = []
        for profile, part in PARTS:
            print(f"\nSupervisor hands to {profile}: {part!r}")
            work = asyncio.ensure_future(
                client.handoff(f"handoff {profile} echo {part}: done", terminal_id=sid, timeout_seconds=60)
            )
            result = await until_done_or_unanswerable(asker, work)
            answers.append((profile, result["output"]))
        await client.terminate(sid)
    except Unanswerable as exc:
        print(f"cao-sidecar demo: {exc}", file=sys.stderr)
        return 1
    finally:
        asker.close()
        await client.close()
    print("\nCombined answer:")
    for profile, answer in answers:
        print(f"  [{profile}] {answer}")
    print(f"\nDone in {time.monotonic() - start:.2f}s")
    return 0


def run_demo(args: argparse.Namespace, socket: str) -> int:
    # A private tmux server unless the user named one, so the demo never touches real agents.
    if not args.tmux_socket and "CAO_TMUX_SOCKET" not in os.environ:
        socket = f"cao-demo-{os.getpid()}"
    try:
        return asyncio.run(_demo(socket))
    finally:
        if socket.startswith("cao-demo-"):
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
            # tmux 3.3a leaves its socket file behind: one more in /tmp for every demo otherwise.
            tmpdir = os.environ.get("TMUX_TMPDIR") or "/tmp"
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(tmpdir, f"tmux-{os.getuid()}", socket))


if __name__ == "__main__":
    sys.exit(run_demo(argparse.Namespace(tmux_socket=None), "cao-demo"))
