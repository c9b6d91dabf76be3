"""Shared fixtures: a real sidecar process (pytest-lsp) on its own tmux server and state dirs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from cao_sidecar.terminal.tmux import default_socket_path

ROOT = Path(__file__).resolve().parent.parent


SOCKETS: list[str] = []  # every tmux socket this test process handed out: no orchestrator outlives the run


def _new_socket() -> str:
    socket = f"cao-test-{uuid.uuid4().hex[:10]}"
    SOCKETS.append(socket)
    return socket


def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    for socket in SOCKETS:
        end_orchestrators(socket, signal.SIGKILL)
    for socket in SOCKETS:  # and their tmux servers: a test that kept its agents leaves none running
        if os.path.exists(default_socket_path(socket)):
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def isolated_env(base: Path, *, trusted: bool = True) -> dict[str, str]:
    """Environment for a sidecar that touches nothing of the user's: own XDG dirs, own tmux.

    `trusted`: the test's user trusts `base` (every folder the test makes under it) in its own
    trust store, as `cao-sidecar trust` would, so workspace `.cao/` files take effect. Tests of
    untrusted folders pass False."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base / "home"),
        "XDG_STATE_HOME": str(base / "state"),
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_DATA_HOME": str(base / "data"),
        "CAO_TMUX_SOCKET": _new_socket(),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT) + os.pathsep + str(ROOT / "clients" / "python"),
    }
    for name in ("TMUX_TMPDIR", "CAO_MOCK_DELAY_MS"):
        if name in os.environ:
            env[name] = os.environ[name]
    (base / "home").mkdir(parents=True, exist_ok=True)
    (base / "workspace").mkdir(parents=True, exist_ok=True)
    if trusted:
        from cao_sidecar import trust

        trust.grant(base, file=base / "config" / "cao-sidecar" / trust.FILE_NAME)
    return env


@pytest.fixture
def trusted_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """For in-process tests of a workspace's `.cao/`: `tmp_path`, trusted in a trust store of
    its own (XDG_CONFIG_HOME under tmp_path, also for subprocesses the test starts)."""
    from cao_sidecar import trust

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    trust.grant(tmp_path)
    return tmp_path


def kill_tmux(socket: str) -> None:
    """Remove a test's tmux server. Its orchestrator (which outlives the front ends while agents
    run) is asked to end first; a front end still on its way out could start one again: wait
    for those too."""
    end_orchestrators(socket)
    deadline = time.monotonic() + 10
    while sidecars_on(socket) and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    uid = os.getuid()
    tmpdir = os.environ.get("TMUX_TMPDIR", "/tmp")
    Path(tmpdir, f"tmux-{uid}", socket).unlink(missing_ok=True)


def agent_windows(env: dict[str, str]) -> str:
    """The agents' windows left on a team's tmux server, one name a line (each session keeps its
    placeholder window while the orchestrator runs: cao_sidecar/terminal/clients.py)."""
    from cao_sidecar.terminal.clients import PLACEHOLDER_WINDOW

    names = subprocess.run(
        ["tmux", "-L", env["CAO_TMUX_SOCKET"], "list-windows", "-a", "-F", "#{window_name}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    return "\n".join(name for name in names if name != PLACEHOLDER_WINDOW)


def agent_panes(socket: str, fmt: str = "#{pane_id}") -> list[str]:
    """`fmt` for each agent's pane on a team's tmux server (not the sessions' placeholder windows)."""
    from cao_sidecar.terminal.clients import PLACEHOLDER_WINDOW

    out = subprocess.run(
        ["tmux", "-L", socket, "list-panes", "-a", "-F", "#{window_name}\t" + fmt], capture_output=True, text=True
    ).stdout
    rows = [line.split("\t", 1) for line in out.splitlines() if "\t" in line]
    return [row for name, row in rows if name != PLACEHOLDER_WINDOW]


def sidecars_on(socket: str) -> list[int]:
    """Sidecar processes (not agents) whose command line or environment names this tmux socket."""
    needle = socket.encode()
    found: list[int] = []
    if not Path("/proc").is_dir():
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"cao_sidecar" not in cmdline and b"cao-sidecar" not in cmdline:
                continue
            if any(part in cmdline for part in (b"mock_agent", b"mock-agent", b"mcp-bridge", b"hook_relay")):
                continue  # an agent's own process: it goes with the tmux server
            if needle in cmdline or needle + b"\0" in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def orchestrators_on(socket: str) -> list[int]:
    """The orchestrator processes (`cao-sidecar serve`) of this tmux socket."""
    found = []
    for pid in sidecars_on(socket):
        try:
            if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            continue
    return found


def end_orchestrators(socket: str, sig: int = signal.SIGTERM) -> None:
    for pid in orchestrators_on(socket):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def orchestrator_pid(env: dict[str, str], timeout: float = 10.0) -> int:
    """The pid of the running orchestrator of this test env (from its info file)."""
    import json

    info = Path(env["XDG_STATE_HOME"]) / "cao-sidecar" / f"orchestrator-{env['CAO_TMUX_SOCKET']}.json"
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid = json.loads(info.read_text())["pid"]
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
                raise OSError("a zombie: a killed orchestrator's info file, not yet replaced")
            return pid
        except (OSError, ValueError, KeyError):
            if time.monotonic() > deadline:
                raise AssertionError(f"no orchestrator runs for {env['CAO_TMUX_SOCKET']}") from None
            time.sleep(0.05)


def process_env(pid: int) -> dict[str, str]:
    """The environment a process (a front end: it names its orchestrator's state dir and socket) runs with."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode(errors="replace").partition("=")[::2] for e in environ if b"=" in e)


def kill_orchestrator(env: dict[str, str]) -> int:
    """SIGKILL the orchestrator (what "the sidecar crashed" means now); waits until it is gone."""
    pid = orchestrator_pid(env)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
                break  # a zombie: dead, its parent (init) reaps it
        except OSError:
            break
        time.sleep(0.02)
    return pid


class Sidecar:
    """What a test needs besides the client: its env, its workspace, the notifications seen."""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base = base
        self.env = env
        self.workspace = base / "workspace"
        self.socket = env["CAO_TMUX_SOCKET"]
        self.notifications: dict[str, list[Any]] = defaultdict(list)
        self._waiters: list[tuple[str, Any, asyncio.Future[Any]]] = []
        # How the client answers window/showMessageRequest (the sidecar asking about an agent's
        # question): params -> the title to click, or None (dismissed). Requests are recorded too.
        self.answer_message: Any = lambda params: None

    def record(self, method: str, params: Any) -> None:
        params = _plain(params)
        self.notifications[method].append(params)
        for waiter in list(self._waiters):
            wanted, predicate, future = waiter
            if wanted == method and not future.done() and predicate(params):
                future.set_result(params)
                self._waiters.remove(waiter)

    async def wait_for(self, method: str, predicate=lambda p: True, timeout: float = 15.0) -> Any:
        """Wait for a notification (including one that already arrived)."""
        for params in self.notifications[method]:
            if predicate(params):
                return params
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, predicate, future))
        return await asyncio.wait_for(future, timeout)

    def statuses(self, terminal_id: str) -> list[str]:
        return [n["status"] for n in self.notifications["cao/agentStatus"] if n["terminalId"] == terminal_id]

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True).stdout


def _plain(value: Any) -> Any:
    """pygls hands custom notification params over as namedtuples; make them dicts."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def sidecar_config(base: Path, env: dict[str, str] | None = None) -> tuple[ClientServerConfig, Sidecar]:
    """A pytest-lsp editor on its own isolated env, or (`env` given) another editor of the same
    project: it joins the same orchestrator."""
    env = isolated_env(base) if env is None else env
    sidecar = Sidecar(base, env)

    def client_factory() -> LanguageClient:
        from pytest_lsp.client import make_test_lsp_client

        client = make_test_lsp_client()
        for method in ("cao/agentStatus", "cao/workerCompleted", "cao/openTerminal"):

            def handler(params: Any, method: str = method) -> None:
                sidecar.record(method, params)

            client.feature(method)(handler)

        @client.feature("window/showMessageRequest")
        async def show_message_request(params: Any) -> Any:
            from lsprotocol.converters import get_converter

            params = get_converter().unstructure(params)  # an lsprotocol type: as JSON
            sidecar.record("window/showMessageRequest", params)
            title = sidecar.answer_message(params)
            if asyncio.iscoroutine(title):
                title = await title
            return None if title is None else types.MessageActionItem(title=title)

        return client

    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "cao_sidecar", "--stdio"],
        server_env=env,
        client_factory=client_factory,
    )
    return config, sidecar


async def initialize(client: LanguageClient, sidecar: Sidecar) -> types.InitializeResult:
    return await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(window=types.WindowClientCapabilities(work_done_progress=True)),
            root_uri=sidecar.workspace.as_uri(),
        )
    )


async def request(client: LanguageClient, method: str, params: Any, timeout: float = 30.0) -> Any:
    result = await asyncio.wait_for(client.protocol.send_request_async(method, params), timeout)
    return _plain(result)


@pytest.fixture
def tmp_base():
    base = Path(tempfile.mkdtemp(prefix="cao-test-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def team_env(tmp_base):
    """An isolated env whose orchestrator ends 1 s after its last client; its tmux goes at the end."""
    env = isolated_env(tmp_base)
    env["CAO_ORCHESTRATOR_GRACE"] = "1"
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])
