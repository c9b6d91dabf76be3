#!/usr/bin/env python3
"""One team per project: what joining costs (issue 17). Prints figures, not a test.

    python bench/bench_join.py [--json] [--rounds 10]

Isolated like bench/bench.py (own XDG dirs, own tmux socket `cao-bench-join-<pid>`, killed at the
end). Each front end is a real `cao-sidecar --stdio` process (a forwarder) started by `cao_client`.

Figures (medians, p90, min):
  j1. cold start: no orchestrator runs; front end start -> `initialize` answer (the forwarder
      answers it) and -> first cao/listAgents answer (the orchestrator started, tmux up)
  j2. join: an orchestrator runs; a new front end start -> `initialize` answer and -> first
      cao/listAgents answer
  j3. status latency with 1, 2, 5 and 10 connected clients: the mock agent's transcript record
      -> the cao/agentStatus `completed` notification, at every client (all arrivals pooled)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from bench import Notifications, Report, status_is  # noqa: E402
from cao_client.client import CaoClient  # noqa: E402


class JoinBench:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.report = Report()
        self.tmp = Path(tempfile.mkdtemp(prefix="cao-bench-join-"))
        self.socket = f"cao-bench-join-{os.getpid()}"
        self.workspace = self.tmp / "workspace"
        self.workspace.mkdir()
        self.env = {k: v for k, v in os.environ.items() if k not in ("CAO_MOCK_DELAY_MS", "TMUX", "TMUX_PANE")}
        for name in ("state", "config", "home", "data"):
            (self.tmp / name).mkdir()
        self.env.update(
            XDG_STATE_HOME=str(self.tmp / "state"), XDG_CONFIG_HOME=str(self.tmp / "config"),
            XDG_DATA_HOME=str(self.tmp / "data"), HOME=str(self.tmp / "home"), CAO_TMUX_SOCKET=self.socket,
            CAO_ORCHESTRATOR_GRACE="0.2",
            PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "clients" / "python")]),  # this checkout's sidecar
        )  # fmt: skip
        self.info = self.tmp / "state" / "cao-sidecar" / f"orchestrator-{self.socket}.json"

    async def start(self, notes: Any = None) -> CaoClient:
        return await CaoClient.start(workspace=self.workspace, env=self.env, on_notification=notes)

    async def no_orchestrator(self) -> None:
        deadline = time.monotonic() + 20
        while self.info.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the orchestrator did not end")
            await asyncio.sleep(0.02)

    async def timed_start(self) -> tuple[float, float, CaoClient]:
        t0 = time.perf_counter()
        client = await self.start()
        t_init = time.perf_counter()
        await client.list_agents()
        t_first = time.perf_counter()
        return (t_init - t0) * 1000, (t_first - t0) * 1000, client

    async def cold(self) -> None:
        inits, firsts = [], []
        for _ in range(max(3, self.rounds // 2)):
            await self.no_orchestrator()
            init, first, client = await self.timed_start()
            inits.append(init)
            firsts.append(first)
            await client.close()  # no agent: the orchestrator ends after its grace
        self.report.add("j1", "cold start -> initialize answer", inits, "ms")
        self.report.add("j1b", "cold start -> first cao/listAgents answer", firsts, "ms")

    async def join(self) -> None:
        holder = await self.start()
        await holder.list_agents()
        inits, firsts = [], []
        try:
            for _ in range(self.rounds):
                init, first, client = await self.timed_start()
                inits.append(init)
                firsts.append(first)
                await client.close()
        finally:
            await holder.close()
        self.report.add("j2", "join a running orchestrator -> initialize answer", inits, "ms")
        self.report.add("j2b", "join a running orchestrator -> first cao/listAgents answer", firsts, "ms")

    async def latency(self, clients: int) -> None:
        notes = [Notifications() for _ in range(clients)]
        joined = [await self.start(n) for n in notes]
        lead = joined[0]
        try:
            agent = (await lead.spawn("mock_developer"))["terminalId"]
            values = []
            for i in range(self.rounds):
                arrivals = [n.expect(status_is(agent, "completed")) for n in notes]
                text = f"echo status {i}"
                await lead.handoff(text, terminal_id=agent)
                times = await asyncio.wait_for(asyncio.gather(*arrivals), 10)
                answer = await self.record(agent, f"status {i}")
                values += [(t - answer["at"]) * 1000 for t in times]
            await lead.terminate(agent)
        finally:
            for client in joined:
                await client.close()
        self.report.add(f"j3-{clients}", f"status latency with {clients} client(s) connected", values, "ms")

    async def record(self, agent: str, text: str) -> dict[str, Any]:
        path = self.tmp / "state" / "cao-sidecar" / "agents" / agent / "transcript.jsonl"
        for _ in range(500):
            with_text = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            found = [r for r in with_text if r.get("type") == "assistant" and r.get("text") == text]
            if found:
                return found[-1]
            await asyncio.sleep(0.01)
        raise SystemExit(f"no transcript record {text!r}")

    async def run(self) -> None:
        await self.cold()
        await self.join()
        for clients in (1, 2, 5, 10):
            await self.latency(clients)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        Path(f"/tmp/tmux-{os.getuid()}/{self.socket}").unlink(missing_ok=True)  # tmux leaves it
        try:
            pid = json.loads(self.info.read_text())["pid"]
            os.kill(pid, 15)
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    bench = JoinBench(args.rounds)
    try:
        asyncio.run(bench.run())
    finally:
        bench.close()
    if args.json:
        print(json.dumps(bench.report.rows, indent=2))
    else:
        bench.report.print_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
