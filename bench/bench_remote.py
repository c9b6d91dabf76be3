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


async def bench(runs: int, agents: int) -> None:
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
            rows = []
            for label, terminal, host in (("local", near["terminalId"], None), ("remote", far["terminalId"], "box1")):
                output = await _timed(runs, lambda t=terminal: cao.request("cao/getOutput", {"terminalId": t, "mode": "last"}))
                params: dict[str, Any] = {"profile": "mock_developer", "message": "echo hi"}
                if host:
                    params["host"] = host
                handoff = await _timed(runs, lambda p=params: cao.request("cao/handoff", p))

                async def status_once(t: str = terminal) -> None:
                    mark = len(statuses)
                    sent = time.perf_counter()
                    await cao.request("cao/sendMessage", {"terminalId": t, "message": "echo ping"})
                    while not any(p["terminalId"] == t and p["status"] == "processing" for _, p in statuses[mark:]):
                        await asyncio.sleep(0.002)
                    arrived = next(at for at, p in statuses[mark:] if p["terminalId"] == t and p["status"] == "processing")
                    status_times.append(arrived - sent)
                    while not any(p["terminalId"] == t and p["status"] == "completed" for _, p in statuses[mark:]):
                        await asyncio.sleep(0.01)

                status_times: list[float] = []
                await _timed(runs, status_once)
                rows.append((label, output, handoff, status_times))
            for what, index in (("getOutput round trip", 1), ("handoff round trip", 2), ("status event (send -> processing)", 3)):
                local, remote = rows[0][index], rows[1][index]
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
        end_node(workspace)
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--agents", type=int, default=30)
    args = parser.parse_args()
    reason = sshd_unavailable()
    if reason is not None:
        print(f"bench_remote: no test sshd: {reason}", file=sys.stderr)
        return 2
    asyncio.run(bench(args.runs, args.agents))
    return 0


if __name__ == "__main__":
    sys.exit(main())
