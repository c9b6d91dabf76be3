#!/usr/bin/env python3
"""Warm workers with a real Claude Code, side by side with CAO (not a test).

    python bench/bench_pool.py [--runs 3] [--no-cao] [--cao-venv /tmp/cao-venv] [--json]

Claude Code (`.ci/node`, installed by .ci/run) talks to the local fake model
(tests/fixtures/fake_model_server.py), so the figures are the orchestrators' own time plus the
model's, which is measured apart: the time the fake model spent answering requests during each
handoff ("model" column; union of its request intervals).

Figures, medians of --runs (min-max):
  - spawn -> ready: a new Claude Code worker until it takes input (ours: connected to our MCP
    server too, as a handoff needs);
  - handoff round trip to a new worker: request -> answer (start, task, answer, teardown);
  - the same to a profile with `pool: 1`, once its warm worker has been ready for 2 s: what a
    handoff costs when the CLI has already booted;
  - CAO (`pip install cli-agent-orchestrator` into its own venv, `cao-server` on a free port, its
    own HOME, CAO_HOME_DIR and tmux dir): spawn (`POST /sessions`) until the terminal is idle,
    and its handoff's steps over its HTTP API (create, wait idle, input, wait completed, output,
    delete; polled every 50 ms). CAO has no warm workers.

Isolated: temp XDG dirs and HOME, our own tmux socket; everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "clients" / "python"))
sys.path.insert(0, str(REPO / "tests"))

from cao_client.client import CaoClient  # noqa: E402
from fixtures import fake_model_server  # noqa: E402

NODE_BIN = REPO / ".ci" / "node" / "node_modules" / ".bin"
CLAUDE = shutil.which("claude", path=str(NODE_BIN)) or shutil.which("claude")
WARM_IDLE_SECONDS = 2.0


# ---- the fake model, with the time it spends answering ---------------------------------------------


class ModelClock:
    """Records [start, end] of each request the fake model answers (wall clock)."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        original = fake_model_server._Handler.do_POST
        clock = self

        def timed(handler: Any) -> None:
            start = time.time()
            try:
                original(handler)
            finally:
                with clock._lock:
                    clock.intervals.append((start, time.time()))

        fake_model_server._Handler.do_POST = timed  # type: ignore[method-assign,assignment]

    def first_after(self, start: float) -> Optional[float]:
        """Seconds from `start` to the first request the model got after it."""
        with self._lock:
            starts = [a for a, _b in self.intervals if a >= start]
        return min(starts) - start if starts else None

    def busy(self, start: float, end: float) -> float:
        """Seconds within [start, end] during which at least one request was being answered."""
        with self._lock:
            spans = sorted((max(a, start), min(b, end)) for a, b in self.intervals if b > start and a < end)
        total, current_start, current_end = 0.0, None, None
        for a, b in spans:
            if current_end is None or a > current_end:
                if current_end is not None and current_start is not None:
                    total += current_end - current_start
                current_start, current_end = a, b
            else:
                current_end = max(current_end, b)
        if current_end is not None and current_start is not None:
            total += current_end - current_start
        return total


# ---- figures ------------------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, who: str, what: str, values: list[float], model: Optional[list[float]] = None, note: str = "") -> None:
        self.rows.append({"who": who, "what": what, "values": values, "model": model or [], "note": note})

    def print(self) -> None:
        def cell(values: list[float]) -> str:
            if not values:
                return "-"
            med = statistics.median(values)
            return f"{med:6.2f} s ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else f"{med:6.2f} s"

        print()
        print(f"{'':14} {'measure':44} {'median (min-max)':24} {'model time':22} {'orchestrator':12}")
        for row in self.rows:
            overhead = ""
            if row["model"] and row["values"]:
                overhead = f"{statistics.median([v - m for v, m in zip(row['values'], row['model'], strict=True)]):6.2f} s"
            print(f"{row['who']:14} {row['what']:44} {cell(row['values']):24} {cell(row['model']):22} {overhead:12}")
            if row["note"]:
                print(f"{'':14}   {row['note']}")


def isolated_env(base: Path, model_url: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("CAO_MOCK_DELAY_MS", "CAO_TMUX_SOCKET", "TMUX", "TMUX_PANE", "ANTHROPIC_API_KEY"):
        env.pop(key, None)
    for name in ("state", "config", "home", "cache", "data"):
        (base / name).mkdir(parents=True, exist_ok=True)
    env.update(
        XDG_STATE_HOME=str(base / "state"), XDG_CONFIG_HOME=str(base / "config"), XDG_CACHE_HOME=str(base / "cache"),
        XDG_DATA_HOME=str(base / "data"), HOME=str(base / "home"), PYTHONPATH=str(REPO),
        PATH=os.pathsep.join([str(NODE_BIN), env.get("PATH", "")]),
        ANTHROPIC_BASE_URL=model_url, ANTHROPIC_AUTH_TOKEN="fake-token", DISABLE_AUTOUPDATER="1",
    )  # fmt: skip
    (base / "home" / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
    return env


def profile(name: str, model_url: str, pool: int = 0) -> str:
    pool_line = f"pool: {pool}\n" if pool else ""
    return (
        f"---\nname: {name}\ndescription: Claude Code against the fake model\nprovider: claude_code\n{pool_line}"
        f"env:\n  ANTHROPIC_BASE_URL: {model_url}\n  ANTHROPIC_AUTH_TOKEN: fake-token\n---\nYou are a worker.\n"
    )


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(interval)


# ---- ours -------------------------------------------------------------------------------------------


async def bench_first_spawn_directly(table: Table) -> None:
    """The orchestrator's runtime started in this process (modules imported already), then the
    first spawn of the mock agent: what is left of the wait for the MCP endpoint."""
    base = Path(tempfile.mkdtemp(prefix="cao-bench-first-"))
    env = isolated_env(base, "http://127.0.0.1:9")
    saved = {k: os.environ.get(k) for k in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "HOME")}
    os.environ.update({k: env[k] for k in saved})
    socket_name = f"cao-bench-first-{os.getpid()}"
    import cao_sidecar.app  # what the orchestrator process has imported when its first client joins
    import cao_sidecar.core.orchestrator
    import cao_sidecar.profiles.live  # noqa: F401
    from cao_sidecar import preload
    from cao_sidecar.runtime import Runtime

    await preload.editor_modules()  # as the orchestrator has, when its first client joins (daemon.hub)
    try:
        t0 = time.perf_counter()
        async with Runtime.start(tmux_socket=socket_name, session="cao", workspace=base / "home") as runtime:
            agent = runtime.core.create("mock_developer")
            await runtime.core.launch(agent)
            t_ready = time.perf_counter()
            await runtime.agent_face_ready.wait()
            t_face = time.perf_counter()
            await runtime.core.teardown(agent)
        table.add(
            "cao-sidecar", "runtime start -> first spawn ready (mock)", [t_ready - t0],
            note=f"directly, in this process; the MCP server itself was serving after {t_face - t0:.2f} s",
        )  # fmt: skip
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        subprocess.run(["tmux", "-L", socket_name, "kill-server"], capture_output=True)  # at the end
        shutil.rmtree(base, ignore_errors=True)


async def bench_sidecar(table: Table, clock: ModelClock, model_url: str, runs: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="cao-bench-pool-"))
    env = isolated_env(base, model_url)
    socket_name = f"cao-bench-pool-{os.getpid()}"
    env["CAO_TMUX_SOCKET"] = socket_name
    env["CAO_READY_TIMEOUT"] = "60"
    workspace = base / "workspace"
    agents_dir = workspace / ".cao" / "agents"
    agents_dir.mkdir(parents=True)
    (agents_dir / "cc_worker.md").write_text(profile("cc_worker", model_url))
    from cao_sidecar import trust

    trust.grant(base, file=base / "config" / "cao-sidecar" / trust.FILE_NAME)
    try:
        # First spawn after process start (mock agent: the orchestrator's own start-up).
        t0 = time.perf_counter()
        command = [sys.executable, "-m", "cao_sidecar", "--stdio", "--log-level", os.environ.get("BENCH_LOG_LEVEL", "warning")]
        cao = await CaoClient.start(workspace=workspace, env=env, tmux_socket=socket_name, command=command)
        t_init = time.perf_counter()
        first = await cao.spawn("mock_developer")
        t_ready = time.perf_counter()
        table.add(
            "cao-sidecar", "process start -> first spawn ready (mock)", [t_ready - t0],
            note=f"through --stdio starting a fresh orchestrator; initialize answered after {t_init - t0:.2f} s, "
            f"the spawn itself {t_ready - t_init:.2f} s",
        )  # fmt: skip
        await cao.terminate(first["terminalId"])

        spawn_times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            agent = await cao.spawn("cc_worker")
            spawn_times.append(time.perf_counter() - t0)
            await cao.terminate(agent["terminalId"])
        table.add("cao-sidecar", "spawn -> ready, Claude Code", spawn_times, note="ready = prompt drawn and MCP connected")

        cold, cold_model = [], []
        for i in range(runs):
            t0, w0 = time.perf_counter(), time.time()
            result = await cao.handoff(f"say: cold-{i}", profile="cc_worker", timeout_seconds=120)
            cold.append(time.perf_counter() - t0)
            cold_model.append(clock.busy(w0, time.time()))
            assert f"cold-{i}" in result["output"], result
        table.add("cao-sidecar", "handoff round trip, new worker", cold, cold_model)

        (agents_dir / "cc_warm.md").write_text(profile("cc_warm", model_url, pool=1))
        warm, warm_model, replaced, first_request = [], [], [], []
        for i in range(runs):
            w_ready = time.perf_counter()
            await wait_for(lambda: warm_ready(cao, "cc_warm"), 90, "a warm cc_warm worker")
            replaced.append(time.perf_counter() - w_ready)
            # A pool is there ahead of the work: its worker has been idle a moment, as it would be
            # (Claude Code keeps busy for a second or so after its prompt shows).
            await asyncio.sleep(WARM_IDLE_SECONDS)
            t0, w0 = time.perf_counter(), time.time()
            result = await cao.handoff(f"say: warm-{i}", profile="cc_warm", timeout_seconds=120)
            warm.append(time.perf_counter() - t0)
            warm_model.append(clock.busy(w0, time.time()))
            first_request.append(clock.first_after(w0) or 0.0)
            assert f"warm-{i}" in result["output"], result
        table.add("cao-sidecar", "handoff round trip, pooled worker (pool: 1)", warm, warm_model)
        table.add(
            "cao-sidecar", "  pooled: handoff -> model's first request", first_request,
            note="the orchestrator's part (take the worker, type the task) plus Claude Code's own until it asks the model",
        )  # fmt: skip
        table.add(
            "cao-sidecar", "  pooled: replacement ready again after", replaced[1:] or replaced,
            note="from one handoff's answer until the pool's next warm worker is ready (in the background)",
        )  # fmt: skip
        await cao.shutdown_team(terminate_agents=True)
        await cao.close()
    finally:
        subprocess.run(["tmux", "-L", socket_name, "kill-server"], capture_output=True, env=env)  # at the end
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


async def warm_ready(cao: CaoClient, name: str) -> bool:
    agents = (await cao.request("cao/listAgents", {"includePooled": True}))["agents"]
    return any(a["pooled"] and a["profile"] == name and a["status"] == "idle" for a in agents)


# ---- CAO ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CaoServer:
    """`cao-server` from its own venv, isolated (HOME, CAO_HOME_DIR, TMUX_TMPDIR, port)."""

    def __init__(self, venv: Path, base: Path, model_url: str) -> None:
        self.venv = venv
        self.base = base
        self.env = isolated_env(base, model_url)
        self.env.pop("PYTHONPATH", None)
        self.port = free_port()
        self.home = Path(self.env["HOME"])
        self.env.update(CAO_API_PORT=str(self.port), CAO_HOME_DIR=str(self.home / ".aws" / "cli-agent-orchestrator"))
        (base / "tmux").mkdir()
        self.env["TMUX_TMPDIR"] = str(base / "tmux")
        # CAO types `claude ...` into a login shell, whose /etc/profile resets PATH: the shell's own
        # start files put our Claude Code first, as a user's would with it installed.
        self.home.mkdir(parents=True, exist_ok=True)
        for name in (".profile", ".bashrc"):
            (self.home / name).write_text(f'export PATH="{NODE_BIN}:$PATH"\n')
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.workspace = base / "workspace"
        self.workspace.mkdir()

    def install_profile(self, name: str) -> None:
        store = self.home / ".aws" / "cli-agent-orchestrator" / "agent-store"
        store.mkdir(parents=True, exist_ok=True)
        # permissionMode: else CAO starts `claude --dangerously-skip-permissions`, which Claude Code
        # refuses to run as root (this bench's machines run as root).
        (store / f"{name}.md").write_text(
            f"---\nname: {name}\ndescription: Claude Code against the fake model\npermissionMode: default\n---\nYou are a worker.\n"
        )

    def start(self) -> None:
        with open(self.base / "cao-server.log", "wb") as log:  # the server keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [str(self.venv / "bin" / "cao-server")], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workspace, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, urllib.error.URLError):
                if self.call("GET", "/health", timeout=2) is not None:
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"cao-server did not start; its log: {self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.base / "cao-server.log").read_text(errors="replace")[-2000:]
        return ""

    def call(self, method: str, path: str, params: Optional[dict[str, Any]] = None, timeout: float = 120) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else {}

    def status(self, terminal_id: str) -> str:
        return str(self.call("GET", f"/terminals/{terminal_id}").get("status"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        subprocess.run(["tmux", "kill-server"], env=self.env, capture_output=True)


async def bench_cao(table: Table, clock: ModelClock, model_url: str, runs: int, venv: Path) -> None:
    if not (venv / "bin" / "cao-server").exists():
        table.add("CAO", "not measured", [], note=f"no cao-server in {venv} (pip install cli-agent-orchestrator there)")
        return
    version = subprocess.run([str(venv / "bin" / "pip"), "show", "cli-agent-orchestrator"], capture_output=True, text=True).stdout
    version = next((line.split(":", 1)[1].strip() for line in version.splitlines() if line.startswith("Version:")), "?")
    who = f"CAO {version}"
    base = Path(tempfile.mkdtemp(prefix="cao-bench-cao-"))
    server = CaoServer(venv, base, model_url)
    server.install_profile("bench_worker")
    try:
        await asyncio.to_thread(server.start)
        params = {"agent_profile": "bench_worker", "provider": "claude_code", "working_directory": str(server.workspace)}

        async def spawn() -> tuple[str, str]:
            created = await asyncio.to_thread(server.call, "POST", "/sessions", params)
            terminal_id = created["id"]
            await wait_for(lambda: server.status(terminal_id) == "idle", 120, "CAO terminal idle")
            return terminal_id, created.get("session_name", "")

        spawn_times, sessions = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            terminal_id, session = await spawn()
            spawn_times.append(time.perf_counter() - t0)
            sessions.append(session)
            await asyncio.to_thread(server.call, "DELETE", f"/terminals/{terminal_id}")
        table.add(who, "spawn -> ready, Claude Code", spawn_times, note="POST /sessions until GET /terminals/ID says idle")

        round_trips, model = [], []
        for i in range(runs):
            t0, w0 = time.perf_counter(), time.time()
            terminal_id, _session = await spawn()
            await asyncio.to_thread(server.call, "POST", f"/terminals/{terminal_id}/input", {"message": f"say: cao-{i}"})
            done = functools.partial(lambda tid: server.status(tid) == "completed", terminal_id)
            await wait_for(done, 120, "CAO terminal completed")
            output = await asyncio.to_thread(server.call, "GET", f"/terminals/{terminal_id}/output", {"mode": "last"})
            await asyncio.to_thread(server.call, "DELETE", f"/terminals/{terminal_id}")
            round_trips.append(time.perf_counter() - t0)
            model.append(clock.busy(w0, time.time()))
            if f"cao-{i}" not in json.dumps(output):
                table.add(who, f"handoff run {i}: answer not found", [], note=json.dumps(output)[:200])
        table.add(
            who, "handoff round trip, new worker", round_trips, model, note="its handoff's steps over HTTP; no warm workers"
        )
    except Exception as exc:  # noqa: BLE001 - say why CAO could not be measured, keep our figures
        table.add(who, "failed", [], note=f"{type(exc).__name__}: {exc}; cao-server log: {server.log_tail()[-600:]!r}")
    finally:
        if os.environ.get("BENCH_KEEP"):
            screens = subprocess.run(
                ["tmux", "list-panes", "-a", "-F", "#{pane_id}"], env=server.env, capture_output=True, text=True
            )
            for pane in screens.stdout.split():
                shot = subprocess.run(["tmux", "capture-pane", "-p", "-t", pane], env=server.env, capture_output=True, text=True)
                print(f"CAO pane {pane}:\n{shot.stdout.rstrip()}")
        await asyncio.to_thread(server.stop)
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-cao", action="store_true")
    parser.add_argument("--cao-venv", type=Path, default=Path("/tmp/pool-cao-venv"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if CLAUDE is None:
        print("Claude Code is not installed (.ci/run installs it under .ci/node): nothing to measure")
        return 1
    clock = ModelClock()
    model = fake_model_server.FakeModelServer(delay=0.02).start()
    table = Table()
    try:
        await bench_first_spawn_directly(table)
        await bench_sidecar(table, clock, model.url, args.runs)
        if not args.no_cao:
            await bench_cao(table, clock, model.url, args.runs, args.cao_venv)
    finally:
        model.stop()
    claude_version = subprocess.run([CLAUDE, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"Claude Code {claude_version}; fake model (20 ms per streamed piece); {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    table.print()
    if args.json:
        print(json.dumps(table.rows))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
