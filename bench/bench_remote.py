#!/usr/bin/env python3
"""What a host over SSH adds (issue 19): remote vs local figures on one orchestrator (not a test).

    python bench/bench_remote.py [--runs 7] [--agents 30]

Needs the test sshd of .ci/sshd-setup.sh (the account caoremote on 127.0.0.1, as host `box1`);
set up as the tests do when run as root. Isolated env, own tmux socket; the remote node gets a
workspace of its own, stopped and removed at the end. The link is real ssh over loopback: the
figures are the cost of the node design (one more hop, JSON-RPC relayed twice, ssh crypto), not
of a network; add the network's round trip per request for a real host.

Figures (median, p90 over --runs):
  1. cao/getOutput round trip (a pure request: no agent work)
  2. cao/handoff round trip with a new mock worker, teardown included
  3. status event: cao/sendMessage "echo" to an idle agent -> its `processing` cao/agentStatus
  4. --agents remote agents spawned at once: wall time; ssh processes of the orchestrator
  5. host: auto's cost: cao/spawn placed here by auto (a fresh probe of each host: box1, and
     notmux, which fails) vs cao/spawn here, each agent terminated after
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python"), str(ROOT / "tests")]

from cao_client.client import CaoClient  # noqa: E402
from remote_host import end_node, hosts_yaml, new_workspace, sshd_unavailable  # noqa: E402


def _env(base: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base / "home"), "LANG": "C.UTF-8",
        "XDG_STATE_HOME": str(base / "state"), "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_CACHE_HOME": str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cao-sidecar-tests"),
        "CAO_TMUX_SOCKET": f"cao-bench-remote-{os.getpid()}",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'clients' / 'python'}",
    }  # fmt: skip
    (base / "home").mkdir(parents=True)
    (base / "workspace").mkdir()
    return env


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(ordered) * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms"


async def _timed(runs: int, once: Callable[[], Awaitable[Any]]) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await once()
        times.append(time.perf_counter() - started)
    return times


async def _until(statuses: list[tuple[float, dict[str, Any]]], mark: int, terminal: str, status: str) -> float:
    """When `terminal`'s `status` notification (after index `mark`) arrived; polled: a bench."""
    while True:
        for at, params in statuses[mark:]:
            if params["terminalId"] == terminal and params["status"] == status:
                return at
        await asyncio.sleep(0.002)  # polling the notification list is the measurement


async def _status_event(cao: CaoClient, statuses: list[tuple[float, dict[str, Any]]], terminal: str) -> float:
    """cao/sendMessage "echo" to an idle agent -> its `processing` notification."""
    mark = len(statuses)
    sent = time.perf_counter()
    await cao.request("cao/sendMessage", {"terminalId": terminal, "message": "echo ping"})
    arrived = await _until(statuses, mark, terminal, "processing")
    await _until(statuses, mark, terminal, "completed")
    return arrived - sent


def _kill_tmux(socket: str) -> None:
    from conftest import kill_tmux  # the orchestrator is asked to end and waited for, then its tmux

    kill_tmux(socket)


def _remove(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)


async def bench(runs: int, agents: int, cleanups: list[tuple[Any, Any]]) -> None:
    base = Path(tempfile.mkdtemp(prefix="cao-bench-remote-"))
    workspace = new_workspace()
    env = _env(base)
    (base / "config" / "cao-sidecar").mkdir(parents=True)
    (base / "config" / "cao-sidecar" / "hosts.yaml").write_text(hosts_yaml(workspace))
    statuses: list[tuple[float, dict[str, Any]]] = []

    def on_notification(method: str, params: Any) -> None:
        if method == "cao/agentStatus":
            statuses.append((time.perf_counter(), params))

    try:
        async with CaoClient.start(workspace=base / "workspace", env=env, on_notification=on_notification) as cao:
            started = time.perf_counter()
            far = await cao.request("cao/spawn", {"profile": "mock_developer", "host": "box1"})
            print(f"first remote spawn (install if needed, node start): {time.perf_counter() - started:.1f} s")
            near = await cao.spawn("mock_developer")
            figures: dict[str, list[list[float]]] = {}  # what -> [local times, remote times]
            for terminal, host in ((near["terminalId"], None), (far["terminalId"], "box1")):
                params: dict[str, Any] = {"profile": "mock_developer", "message": "echo hi"}
                if host:
                    params["host"] = host

                async def output(t: str = terminal) -> Any:
                    return await cao.request("cao/getOutput", {"terminalId": t, "mode": "last"})

                async def handoff(p: dict[str, Any] = params) -> Any:
                    return await cao.request("cao/handoff", p)

                figures.setdefault("getOutput round trip", []).append(await _timed(runs, output))
                figures.setdefault("handoff round trip", []).append(await _timed(runs, handoff))
                events = [await _status_event(cao, statuses, terminal) for _ in range(runs)]
                figures.setdefault("status event (send -> processing)", []).append(events)

            placed_on: set[str] = set()

            async def spawn_on(host: str) -> None:  # one agent here and one on box1: auto places here
                placed = await cao.request("cao/spawn", {"profile": "mock_developer", "host": host})
                placed_on.add("box1" if placed["terminalId"].startswith("box1:") else "main")
                await cao.terminate(placed["terminalId"])

            figures["spawn here: host local vs auto (placement's cost as 'added')"] = [
                await _timed(runs, lambda: spawn_on("local")),
                await _timed(runs, lambda: spawn_on("auto")),
            ]
            print(f"host: auto placed on: {', '.join(sorted(placed_on))}")
            for what, (local, remote) in figures.items():
                added = (statistics.median(remote) - statistics.median(local)) * 1000
                print(f"{what}:\n  local  {_summary(local)}\n  remote {_summary(remote)}\n  added  {added:7.1f} ms (median)")
            started = time.perf_counter()
            spawned = await asyncio.gather(
                *(cao.request("cao/spawn", {"profile": "mock_developer", "host": "box1"}) for _ in range(agents))
            )
            print(f"{agents} remote agents spawned at once: {time.perf_counter() - started:.1f} s")
            await asyncio.gather(*(cao.terminate(s["terminalId"]) for s in [*spawned, far, near]))
            await cao.request("cao/shutdown", {})
    finally:
        # The orchestrator first: while its link lives, it would start the node again.
        cleanups.extend([(_kill_tmux, env["CAO_TMUX_SOCKET"]), (end_node, workspace), (_remove, base)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--agents", type=int, default=30)
    args = parser.parse_args()
    reason = sshd_unavailable()
    if reason is not None:
        print(f"bench_remote: no test sshd: {reason}", file=sys.stderr)
        return 2
    cleanups: list[tuple[Any, Any]] = []  # done after the loop ends: they block
    try:
        asyncio.run(bench(args.runs, args.agents, cleanups))
    finally:
        for clean, what in cleanups:
            clean(what)
    return 0


if __name__ == "__main__":
    sys.exit(main())
