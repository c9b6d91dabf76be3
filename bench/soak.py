"""Soak: 500 handoffs in a row plus 20 in parallel, then 50 agents alive at once.

Prints figures; exits non-zero only if the run itself breaks. Leak checks compare resource counts
(cao/stats, tmux windows and buffers) before and after; RSS growth is measured from the 50th
handoff to the last. Isolated: own XDG dirs and tmux socket, cleaned up at the end.

    python bench/soak.py [--handoffs 500] [--parallel 20] [--agents 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))

from cao_client import CaoClient  # noqa: E402


def tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True).stdout


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def main(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="cao-soak-"))
    socket = f"cao-soak-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k != "CAO_MOCK_DELAY_MS"}
    env.update(
        XDG_STATE_HOME=str(base / "state"),
        XDG_CONFIG_HOME=str(base / "config"),
        HOME=str(base / "home"),
        CAO_TMUX_SOCKET=socket,
        PYTHONPATH=str(ROOT) + os.pathsep + str(ROOT / "clients" / "python"),
    )
    (base / "home").mkdir()
    (base / "ws").mkdir()
    statuses: dict[str, float] = {}
    client = await CaoClient.start(
        workspace=base / "ws",
        env=env,
        on_notification=lambda m, p: statuses.__setitem__(p["terminalId"], time.time()) if m == "cao/agentStatus" else None,
    )
    try:
        await client.handoff("echo warm-up", profile="mock_developer")
        before = await client.request("cao/stats", {})
        rss_at_50 = None
        times = []
        t0 = time.monotonic()
        for i in range(args.handoffs):
            start = time.monotonic()
            result = await client.handoff(f"echo soak {i}", profile="mock_developer")
            assert result["output"] == f"soak {i}", result
            times.append(time.monotonic() - start)
            if i == 49:
                rss_at_50 = (await client.request("cao/stats", {}))["rssBytes"]
        sequential = time.monotonic() - t0
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(client.handoff(f"echo parallel {i}", profile="mock_reviewer") for i in range(args.parallel))
        )
        parallel = time.monotonic() - t0
        assert [r["output"] for r in results] == [f"parallel {i}" for i in range(args.parallel)]
        await asyncio.sleep(1.0)  # let teardowns of the last workers settle
        after = await client.request("cao/stats", {})
        windows = [w for w in tmux(socket, "list-windows", "-a", "-F", "#{window_name}").split() if not w.startswith("__cao")]
        buffers = tmux(socket, "list-buffers").split("\n")
        buffers = [b for b in buffers if b.strip()]
        growth = (after["rssBytes"] - rss_at_50) / rss_at_50 * 100 if rss_at_50 else float("nan")

        print(
            f"soak: {args.handoffs} sequential handoffs in {sequential:.1f} s "
            f"(median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms), "
            f"{args.parallel} parallel in {parallel:.2f} s"
        )
        print(
            f"  leaks: windows left {len(windows)}, tmux buffers left {len(buffers)}, "
            f"agents {before['agents']} -> {after['agents']}, tasks {before['tasks']} -> {after['tasks']}, "
            f"credentials {before['credentials']} -> {after['credentials']}, "
            f"open files {before['openFiles']} -> {after['openFiles']}"
        )
        print(
            f"  sidecar RSS: {rss_at_50 / 2**20:.1f} MB at handoff 50 -> {after['rssBytes'] / 2**20:.1f} MB "
            f"after the last: {growth:+.1f}% (target < 10%)"
        )

        # 50 agents alive at once.
        t0 = time.monotonic()
        spawned = await asyncio.gather(*(client.spawn("mock_developer") for _ in range(args.agents)))
        ids = [s["terminalId"] for s in spawned]
        spawn_all = time.monotonic() - t0
        await asyncio.sleep(2.0)
        sidecar_pid = client._process.pid
        tmux_pid = int(tmux(socket, "display-message", "-p", "#{pid}").strip())
        hz = os.sysconf("SC_CLK_TCK")
        c0 = cpu_ticks(sidecar_pid) + cpu_ticks(tmux_pid)
        await asyncio.sleep(args.idle_seconds)
        idle_cpu = (cpu_ticks(sidecar_pid) + cpu_ticks(tmux_pid) - c0) / hz / args.idle_seconds * 100
        stats = await client.request("cao/stats", {})
        latencies = []
        for tid in ids[:20]:
            result_at = None
            await client.handoff("echo latency", terminal_id=tid)
            transcript = base / "state" / "cao-sidecar" / "agents" / tid / "transcript.jsonl"
            import json

            last = json.loads(transcript.read_text().splitlines()[-1])
            result_at = statuses.get(tid)
            if result_at and "at" in last:
                latencies.append((result_at - last["at"]) * 1000)
        print(
            f"  50 agents: spawned in {spawn_all:.2f} s, sidecar RSS {stats['rssBytes'] / 2**20:.1f} MB, "
            f"idle CPU sidecar+tmux {idle_cpu:.2f} % of a core over {args.idle_seconds} s, "
            f"status latency median {statistics.median(latencies):.1f} ms (max {max(latencies):.1f} ms, n={len(latencies)})"
        )
        await asyncio.gather(*(client.terminate(t) for t in ids))
    finally:
        await client.close()
        tmux(socket, "kill-server")
        Path(f"/tmp/tmux-{os.getuid()}/{socket}").unlink(missing_ok=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--handoffs", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--idle-seconds", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
