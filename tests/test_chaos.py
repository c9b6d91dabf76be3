"""Chaos in CI: bench/chaos.py with fixed seeds, a short while each (the bench runs longer).

Each seed drives the real sidecar with mixed traffic (editor assigns, handoffs, spawns, messages,
answers; agents' assigns over MCP) while it is SIGKILLed and restarted, agents and the tmux
server are killed and (as root) its tmpfs state dir is filled. The invariant: every request
the sidecar acknowledged ended exactly once and was reported. On failure, replay a seed with
`python bench/chaos.py --seed N --seconds 20`.
"""

from __future__ import annotations

import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import chaos

SEEDS = [int(s) for s in os.environ.get("CHAOS_SEEDS", "11,23,37").split(",")]
SECONDS = float(os.environ.get("CHAOS_SECONDS", "20"))


@pytest.mark.timeout(SECONDS + 300)  # a broken invariant is reported after the settle timeout
@pytest.mark.parametrize("seed", SEEDS)
async def test_every_acknowledged_request_ends_once_whatever_fails(seed: int) -> None:
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line)

    ok = await chaos.run(seed, SECONDS, use_tmpfs=True, say=say)
    assert ok, "\n".join(lines)
    injected = next(line for line in lines if line.startswith("faults injected"))
    assert "sidecar" in injected  # the run really killed the sidecar
