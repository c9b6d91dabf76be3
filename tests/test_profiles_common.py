"""Shared helpers of the profile and flow tests (tests/test_profiles_*.py, tests/test_flows_*.py).
No tests here.

Each of those modules starts one real sidecar (`python -m cao_sidecar --stdio`, through
pytest-lsp) on its own tmux server and XDG dirs, with a client that records every notification
the tests look at (cao/profilesChanged, cao/flowsChanged, textDocument/publishDiagnostics, ...)
with its arrival time, so a test can wait for "the next one after my edit" and measure latency.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from conftest import Sidecar, _plain, isolated_env, kill_tmux

RECORDED = (
    "cao/agentStatus",
    "cao/workerCompleted",
    "cao/profilesChanged",
    "cao/flowsChanged",
    "cao/trustChanged",
    "textDocument/publishDiagnostics",
    "window/showMessage",
)
ROOT = Path(__file__).resolve().parent.parent


class Recorder(Sidecar):
    """The sidecar's env and dirs, and every recorded notification with its arrival time."""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        super().__init__(base, env)
        self.arrivals: dict[str, list[float]] = {m: [] for m in RECORDED}
        self.config_dir = base / "config" / "cao-sidecar"
        self.state_db = base / "state" / "cao-sidecar" / "state.db"

    def record(self, method: str, params: Any) -> None:
        self.arrivals.setdefault(method, []).append(time.monotonic())
        super().record(method, params)

    def mark(self, method: str) -> int:
        return len(self.notifications[method])

    async def next(
        self, method: str, predicate: Callable[[Any], bool] = lambda p: True, *, since: int, timeout: float = 10.0
    ) -> tuple[Any, float]:
        """The first notification at index >= since that matches, and its arrival time."""
        deadline = time.monotonic() + timeout
        index = since
        while True:
            seen = self.notifications[method]
            while index < len(seen):
                if predicate(seen[index]):
                    return seen[index], self.arrivals[method][index]
                index += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching {method} within {timeout} s; got {seen[since:]!r}"[:3000])
            await asyncio.sleep(0.002)

    def diagnostics_for(self, path: Path) -> Optional[list[dict[str, Any]]]:
        """The last diagnostics published for a file (None: never published)."""
        uri = path.as_uri()
        for note in reversed(self.notifications["textDocument/publishDiagnostics"]):
            if note["uri"] == uri:
                return note["diagnostics"]
        return None

    async def diagnostics_after(
        self, path: Path, since: int, predicate: Callable[[list[dict[str, Any]]], bool] = lambda d: True, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        uri = path.as_uri()
        note, _ = await self.next(
            "textDocument/publishDiagnostics",
            lambda n: n["uri"] == uri and predicate(n["diagnostics"]),
            since=since,
            timeout=timeout,
        )
        return note["diagnostics"]


def _diagnostics_params(params: types.PublishDiagnosticsParams) -> dict[str, Any]:
    return {
        "uri": params.uri,
        "diagnostics": [
            {
                "line": d.range.start.line + 1,  # 1-based, as the files are read
                "character": d.range.start.character,
                "severity": int(d.severity) if d.severity is not None else None,
                "message": d.message,
                "source": d.source,
            }
            for d in params.diagnostics
        ],
    }


def live_sidecar(
    prefix: str, extra_env: Optional[dict[str, str]] = None, *, trusted: bool = True
) -> tuple[ClientServerConfig, Recorder]:
    """`trusted`: the test's trust store trusts every folder under its base dir (conftest)."""
    base = Path(tempfile.mkdtemp(prefix=f"cao-{prefix}-"))
    env = isolated_env(base, trusted=trusted)
    env.update(extra_env or {})
    recorder = Recorder(base, env)
    atexit.register(shutil.rmtree, base, True)
    atexit.register(kill_tmux, recorder.socket)

    def client_factory() -> LanguageClient:
        from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, LanguageClient as Client, default_converter

        client = Client(converter_factory=default_converter)
        for method, func in DEFAULT_CLIENT_FEATURES.items():
            if method not in (types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, types.WINDOW_SHOW_MESSAGE):
                client.feature(method)(func)

        @client.feature(types.WINDOW_SHOW_MESSAGE)
        def on_message(ls: Client, params: types.ShowMessageParams) -> None:
            ls.messages.append(params)
            recorder.record(types.WINDOW_SHOW_MESSAGE, {"type": int(params.type), "message": params.message})

        @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def on_diagnostics(ls: Client, params: types.PublishDiagnosticsParams) -> None:
            ls.diagnostics[params.uri] = params.diagnostics
            recorder.record(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, _diagnostics_params(params))

        for method in RECORDED:
            if method.startswith("cao/"):

                def handler(params: Any, method: str = method) -> None:
                    recorder.record(method, _plain(params))

                client.feature(method)(handler)
        return client

    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "cao_sidecar", "--stdio"],
        server_env=env,
        client_factory=client_factory,
    )
    return config, recorder


async def start(
    config: ClientServerConfig,
    recorder: Recorder,
    folders: Optional[list[Path]] = None,
    initialization_options: Optional[dict[str, Any]] = None,
) -> LanguageClient:
    client = await config.start()
    folders = folders or [recorder.workspace]
    await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(window=types.WindowClientCapabilities(work_done_progress=True)),
            root_uri=folders[0].as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in folders],
            initialization_options=initialization_options,
        )
    )
    return client


async def stop(client: LanguageClient, recorder: Recorder) -> None:
    try:
        await asyncio.wait_for(client.shutdown_session(), 15)
    finally:
        await client.stop()
        kill_tmux(recorder.socket)


async def request(client: LanguageClient, method: str, params: Any, timeout: float = 30.0) -> Any:
    return _plain(await asyncio.wait_for(client.protocol.send_request_async(method, params), timeout))


async def rpc_error(client: LanguageClient, method: str, params: Any) -> JsonRpcException:
    with pytest.raises(JsonRpcException) as info:
        await request(client, method, params)
    return info.value


def atomic_write(path: Path, text: str | bytes) -> float:
    """Save like an editor: a temp file in the same directory, then rename over the target.
    Returns the time of the rename (time.monotonic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    moment = time.monotonic()
    os.replace(temp, path)
    return moment


def profile_text(
    name: str, *, provider: str = "mock", description: str = "Test profile.", extra: str = "", body: str = "You test things."
) -> str:
    return f"---\nname: {name}\ndescription: {description}\nprovider: {provider}\n{extra}---\n{body}\n"


def flow_text(
    name: str, *, schedule: str = "0 0 1 1 *", profile: str = "mock_developer", extra: str = "", task: str = "echo hello"
) -> str:
    return f'---\nname: {name}\nschedule: "{schedule}"\nprofile: {profile}\n{extra}---\n{task}\n'


def cli(recorder: Recorder, *args: str, cwd: Optional[Path] = None, timeout: float = 60.0) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "cao_sidecar", *args],
        cwd=str(cwd or recorder.workspace),
        env=recorder.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}
