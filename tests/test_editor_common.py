"""Shared helpers of the end-to-end editor-face tests (tests/test_editor_*.py). No tests here.

Every test_editor_* module starts its own real sidecar (`python -m cao_sidecar --stdio` through
pytest-lsp) on its own tmux server, and drives real mock agents through the cao/* methods.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import pytest
import pytest_asyncio
import pytest_lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from conftest import Sidecar, initialize, kill_tmux, request, sidecar_config

MOCK_PROFILES = ("mock_developer", "mock_reviewer", "mock_supervisor")


def new_sidecar(
    prefix: str,
    *,
    extra_env: Optional[dict[str, str]] = None,
    workspace_profiles: Optional[dict[str, str]] = None,
    user_profiles: Optional[dict[str, str]] = None,
) -> tuple[ClientServerConfig, Sidecar]:
    """A sidecar config on a fresh base dir; profile files are written before it starts."""
    base = Path(tempfile.mkdtemp(prefix=f"cao-e2e-{prefix}-"))
    config, sidecar = sidecar_config(base)
    # Safety net for runs cut short: the fixtures kill their tmux server themselves.
    atexit.register(shutil.rmtree, base, True)
    atexit.register(kill_tmux, sidecar.socket)
    # server_env is the same dict object as sidecar.env: extend both at once.
    sidecar.env.update(extra_env or {})
    assert config.server_env is sidecar.env
    for directory, files in (
        (sidecar.workspace / ".cao" / "agents", workspace_profiles),
        (base / "config" / "cao-sidecar" / "agents", user_profiles),
    ):
        if files:
            directory.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (directory / name).write_text(text, encoding="utf-8")
    return config, sidecar


def module_fixtures(config: ClientServerConfig, sidecar: Sidecar) -> tuple[Any, Any]:
    """The usual fixtures of a test_editor_* module: `client` (one sidecar for the module,
    initialized; at the end its agents are terminated, it is shut down and its tmux server
    killed) and the autouse `clean` (terminates every agent after each test). Use as
    `client, clean = module_fixtures(CONFIG, SIDECAR)`."""

    @pytest_lsp.fixture(config=config, scope="module")
    async def client(lsp_client: LanguageClient):
        await initialize(lsp_client, sidecar)
        yield
        await close_client(lsp_client, sidecar)

    @pytest_asyncio.fixture(loop_scope="module", autouse=True)
    async def clean(client: LanguageClient):
        yield
        await terminate_all(client)

    return client, clean


async def close_client(client: LanguageClient, sidecar: Sidecar) -> None:
    """End of a module's sidecar: its agents terminated, shut down, its tmux server killed."""
    await terminate_all(client)
    await client.shutdown_session()
    kill_tmux(sidecar.socket)


def profile_text(name: str, description: str, provider: str = "mock") -> str:
    return f"---\nname: {name}\ndescription: {description}\nprovider: {provider}\n---\nTest profile.\n"


async def rpc_error(awaitable: Awaitable[Any]) -> JsonRpcException:
    """Await a request that must fail; return the JSON-RPC error."""
    with pytest.raises(JsonRpcException) as info:
        result = await awaitable
        pytest.fail(f"expected a JSON-RPC error, got result {result!r}")  # pragma: no cover
    return info.value


def error_data(exc: JsonRpcException) -> dict[str, Any]:
    data = exc.data
    if hasattr(data, "_asdict"):
        data = data._asdict()
    return dict(data) if isinstance(data, dict) else {}


async def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")
        await asyncio.sleep(interval)


async def list_agents(client: LanguageClient, **params: Any) -> dict[str, dict[str, Any]]:
    result = await request(client, "cao/listAgents", params)
    return {a["terminalId"]: a for a in result["agents"]}


async def terminate_all(client: LanguageClient) -> None:
    """Clean-up between tests: end every agent still listed (errors ignored)."""
    try:
        agents = await list_agents(client)
    except Exception:  # noqa: BLE001 - the server may be gone after a failed test
        return
    for tid in agents:
        try:
            await request(client, "cao/terminate", {"terminalId": tid}, timeout=10)
        except Exception:  # noqa: BLE001
            pass


def _proc_env(pid: str) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def panes(sidecar: Sidecar) -> list[dict[str, str]]:
    """Every pane of the sidecar's tmux server, with the CAO_TERMINAL_ID of its process."""
    fmt = "#{pane_id}\t#{pane_pid}\t#{pane_dead}\t#{session_name}\t#{window_name}\t#{pane_current_path}"
    out = sidecar.tmux("list-panes", "-a", "-F", fmt)
    result = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) != 6:
            continue
        pane_id, pid, dead, session, window, cwd = parts
        result.append(
            {
                "pane_id": pane_id,
                "pid": pid,
                "dead": dead,
                "session": session,
                "window": window,
                "cwd": cwd,
                "terminal_id": _proc_env(pid).get("CAO_TERMINAL_ID", ""),
            }
        )
    return result


def pane_of(sidecar: Sidecar, terminal_id: str) -> Optional[dict[str, str]]:
    """The live pane whose process is agent `terminal_id` (found by its CAO_TERMINAL_ID)."""
    for pane in panes(sidecar):
        if pane["terminal_id"] == terminal_id:
            return pane
    return None


def window_gone(sidecar: Sidecar, terminal_id: str) -> bool:
    """No pane runs agent `terminal_id` and no window is named after it."""
    return all(p["terminal_id"] != terminal_id and terminal_id not in p["window"] for p in panes(sidecar))


def transcript_path(sidecar: Sidecar, terminal_id: str) -> Path:
    return sidecar.base / "state" / "cao-sidecar" / "agents" / terminal_id / "transcript.jsonl"


def transcript(sidecar: Sidecar, terminal_id: str) -> list[dict[str, Any]]:
    """The mock agent's transcript (one JSON record per line: user/assistant/error/...)."""
    try:
        text = transcript_path(sidecar, terminal_id).read_text(encoding="utf-8")
    except OSError:
        return []
    records = []
    for line in text.split("\n"):
        if line:
            try:
                records.append(json.loads(line))
            except ValueError:
                break  # a record still being written
    return records


async def spawn(client: LanguageClient, profile: str = "mock_developer", **params: Any) -> dict[str, Any]:
    return await request(client, "cao/spawn", {"profile": profile, **params})
