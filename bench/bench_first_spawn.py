#!/usr/bin/env python3
"""Cold start to the first spawned agent (issue 15's "first spawn ready under 0.3 s"); not a test.

    python bench/bench_first_spawn.py [--runs 5] [--no-breakdown] [--json]

Each run is a cold project: fresh temp XDG dirs, HOME and workspace, its own tmux socket, no
orchestrator running. The bench launches `python -m cao_sidecar --stdio` (the forwarder, which
starts the project's orchestrator `cao-sidecar serve`), speaks LSP framing to it itself, and
times from the launch to:
  - the `initialize` answer;
  - the answer to the first `cao/spawn` of the built-in `mock_developer` (the answer comes when
    the agent is ready for input: status `idle`, protocol/spec.md "cao/spawn").
At the end of a run the team is shut down with its agents and the tmux server killed.

Breakdown (one more run, not in the figures): with PYTHONPROFILEIMPORTTIME=1 (the forwarder,
the orchestrator and the agent inherit it) and CAO_STARTUP_TRACE=1 (the orchestrator logs its
start-up milestones with wall-clock stamps), it prints when each step happened after the launch
and the heaviest imports of each process.

Measured 2026-12-05 on a quiet 2-core machine (`python -c pass` 16-19 ms), 20 cold runs each,
alternating with a checkout of the previous main (--against), first spawn ready:
  before (3cfd04f)   median 302 ms (287-345)    this version   median 237 ms (216-251)   (load 1.8)
  before (3cfd04f)   median 281 ms (259-349)    this version   median 230 ms (218-266)   (load 2.7, 16 runs)
What changed last:
  - the forwarder launches the orchestrator as its first act (daemon.prelaunch: `--stdio` reads the
    editor's `initialize` blocking, before asyncio), at ~27 ms instead of ~54 ms;
  - the MCP SDK (about a second of imports in a thread, one GIL) and the first file watch (anyio's
    backend on the loop) wait until an editor's first requests are served (preload.hold, at most
    1 s), unless a launched CLI connects to the MCP server as it starts;
  - croniter loads only for a cron flow; profile frontmatter is parsed with libyaml.
A traced run (import profiling on, 231 ms; figures are after the editor started the forwarder):
  forwarder start, initialize read, orchestrator launched               30 ms
  orchestrator's Python start, cli and daemon.serve imports, listening  91 ms
  the runtime's own modules (preload.OWN_MODULES: attrs classes)       174 ms
  runtime start (providers, profiles, tmux server, adoption)           206 ms
  mock agent launched, its window, ready                               229 ms
Earlier figures (2026-12-04, a loaded machine: `python -c pass` 58-544 ms) went from 2.5-8 s
before the early door to 0.68-1.23 s with it. What is left is mostly Python importing our own
modules (~75 ms, attrs classes) and the three processes' own start (forwarder, orchestrator,
mock agent); what would go further: wire types without generated attrs methods, provider patterns
compiled on first use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent
PROFILE = "mock_developer"


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any]:
    length = None
    while True:
        line = await reader.readline()
        if not line:
            raise EOFError("the sidecar closed its stdout")
        line = line.strip()
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise ValueError("no Content-Length")
    return json.loads(await reader.readexactly(length))


class Run:
    """One cold project: temp dirs, a workspace, its own tmux socket."""

    def __init__(self, index: int, repo: Path = REPO) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="cao-bench-first-"))
        self.socket = f"cao-bench-first-{os.getpid()}-{index}"
        self.workspace = self.base / "workspace"
        self.workspace.mkdir()
        for name in ("state", "config", "home", "cache", "data"):
            (self.base / name).mkdir()
        self.env = {k: v for k, v in os.environ.items() if k not in ("CAO_MOCK_DELAY_MS", "TMUX", "TMUX_PANE", "CAO_TMUX_SOCKET")}
        self.env.update(
            XDG_STATE_HOME=str(self.base / "state"), XDG_CONFIG_HOME=str(self.base / "config"),
            XDG_CACHE_HOME=str(self.base / "cache"), XDG_DATA_HOME=str(self.base / "data"),
            HOME=str(self.base / "home"), CAO_TMUX_SOCKET=self.socket, PYTHONPATH=str(repo),
        )  # fmt: skip
        self.stderr_path = self.base / "forwarder.err"

    def orchestrator_log(self) -> str:
        path = self.base / "state" / "cao-sidecar" / f"orchestrator-{self.socket}.log"
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    async def measure(self, *, trace: bool = False) -> dict[str, float]:
        env = dict(self.env)
        log_level = "warning"
        if trace:
            env.update(PYTHONPROFILEIMPORTTIME="1", CAO_STARTUP_TRACE="1")
            log_level = "info"
        argv = [sys.executable, "-m", "cao_sidecar", "--stdio", "--log-level", log_level]
        stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - the child process writes to it; closed when it ends
        self.wall0 = time.time()
        t0 = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=self.workspace
        )
        stderr.close()
        assert process.stdin is not None and process.stdout is not None
        figures: dict[str, float] = {}
        try:
            process.stdin.write(frame({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"processId": os.getpid(), "rootUri": self.workspace.as_uri(), "capabilities": {},
                           "initializationOptions": {"askUser": False}},
            }))  # fmt: skip
            process.stdin.write(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
            process.stdin.write(frame({"jsonrpc": "2.0", "id": 2, "method": "cao/spawn", "params": {"profile": PROFILE}}))
            await process.stdin.drain()
            spawned: Optional[dict[str, Any]] = None
            while spawned is None:
                message = await asyncio.wait_for(read_message(process.stdout), 60)
                if message.get("id") == 1:
                    figures["initialize"] = time.perf_counter() - t0
                elif message.get("id") == 2:
                    figures["spawn_ready"] = time.perf_counter() - t0
                    spawned = message
            if "error" in spawned:
                raise RuntimeError(f"cao/spawn failed: {spawned['error']}")
            if spawned["result"].get("status") != "idle":
                raise RuntimeError(f"cao/spawn answered a status other than idle: {spawned['result']}")
            process.stdin.write(frame({"jsonrpc": "2.0", "id": 3, "method": "cao/shutdown", "params": {"terminateAgents": True}}))
            await process.stdin.drain()
            while (await asyncio.wait_for(read_message(process.stdout), 30)).get("id") != 3:
                pass
            process.stdin.close()
            await asyncio.wait_for(process.wait(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await self.wait_orchestrator_gone()
            subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env)
            Path(f"/tmp/tmux-{os.getuid()}/{self.socket}").unlink(missing_ok=True)  # tmux leaves it
        return figures

    async def wait_orchestrator_gone(self) -> None:
        info = self.base / "state" / "cao-sidecar" / f"orchestrator-{self.socket}.json"
        deadline = time.monotonic() + 20
        while info.exists() and time.monotonic() < deadline:  # noqa: ASYNC110 - another process's file
            await asyncio.sleep(0.05)

    def close(self) -> None:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.base, ignore_errors=True)


# ---- breakdown -----------------------------------------------------------------------------------

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")
TRACE_LINE = re.compile(r"startup-trace (.+?) at ([0-9.]+)")


def heavy_imports(text: str, top: int = 8) -> tuple[float, list[tuple[str, float]]]:
    """Sum of top-level imports (ms) and the heaviest top-level ones, from -X importtime output."""
    total, rows = 0.0, []
    for line in text.splitlines():
        match = IMPORT_LINE.match(line)
        if match and len(match.group(3)) == 1:  # one space: imported at top level of the program
            cumulative = int(match.group(2)) / 1000
            total += cumulative
            rows.append((match.group(4), cumulative))
    rows.sort(key=lambda row: -row[1])
    return total, rows[:top]


def print_breakdown(run: Run, figures: dict[str, float]) -> None:
    forwarder = run.stderr_path.read_text(errors="replace")
    orchestrator = run.orchestrator_log()
    print("\nbreakdown (one traced run; import profiling slows it, so its figures are higher):")
    print(
        f"  initialize answered {figures.get('initialize', 0) * 1000:7.0f} ms, spawn ready {figures.get('spawn_ready', 0) * 1000:7.0f} ms"
    )
    marks = []
    for source, text in (("forwarder", forwarder), ("orchestrator", orchestrator)):
        for name, stamp in TRACE_LINE.findall(text):
            marks.append((float(stamp) - run.wall0, source, name))
    for at, source, name in sorted(marks):
        print(f"  {at * 1000:7.0f} ms  {source:12} {name}")
    for source, text in (("forwarder", forwarder), ("orchestrator", orchestrator)):
        total, rows = heavy_imports(text)
        print(f"  {source} imports: {total:.0f} ms at top level; heaviest: " + ", ".join(f"{n} {ms:.0f}" for n, ms in rows))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--against", type=Path, metavar="CHECKOUT",
        help="another checkout of cao-sidecar (e.g. a git worktree of main): its runs alternate with this one's",
    )  # fmt: skip
    args = parser.parse_args()

    floor = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        floor.append(time.perf_counter() - t0)

    # Alternate runs: a machine's load drifts, and both versions then see the same drift.
    trees = [REPO] if args.against is None else [REPO, args.against.resolve()]
    results: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
    for i in range(args.runs):
        for tree in trees if i % 2 == 0 else trees[::-1]:
            run = Run(i, tree)
            try:
                results[tree].append(await run.measure())
            finally:
                run.close()

    def cell(key: str, tree: Path = REPO) -> str:
        values = [r[key] * 1000 for r in results[tree] if key in r]
        return (
            f"min {min(values):6.0f} ms  median {statistics.median(values):6.0f} ms  max {max(values):6.0f} ms" if values else "-"
        )

    print(f"{args.runs} cold runs; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"`python -c pass` takes {statistics.median(floor) * 1000:.0f} ms here (median of 3)")  # fmt: skip
    print(f"  launch -> initialize answer     {cell('initialize')}")
    print(f"  launch -> first spawn ready     {cell('spawn_ready')}   (mock agent, status idle)")
    if args.against is not None:
        print(f"against {args.against} (runs alternating with this checkout's):")
        print(f"  launch -> initialize answer     {cell('initialize', args.against.resolve())}")
        print(f"  launch -> first spawn ready     {cell('spawn_ready', args.against.resolve())}")
    if not args.no_breakdown:
        run = Run(args.runs)
        try:
            print_breakdown(run, await run.measure(trace=True))
        finally:
            run.close()
    if args.json:
        print(json.dumps(results[REPO] if args.against is None else {str(k): v for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
