"""`cao-sidecar run --profile P "TASK"`: the `handoff` verb under its older name."""

from __future__ import annotations

import argparse


def run_command(args: argparse.Namespace, socket: str) -> int:
    from cao_client.verbs.actions import handoff
    from cao_client.verbs.session import run

    # The orchestrator's default session, the current directory's project, as `run` always had.
    return run(handoff, argparse.Namespace(**{**vars(args), "session": None, "project": None}), socket)
