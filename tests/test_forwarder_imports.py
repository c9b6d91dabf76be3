"""The front ends `cao-sidecar --stdio` / `--acp` are forwarders: they relay bytes to the project's
orchestrator and must start fast, so they import no protocol, validation or server library
(issue 15: the first spawn's wait begins with the forwarder's own start).

Real processes under `python -X importtime`: the forwarder answers `initialize`, tries to join
(its state dir is a file, so joining fails at once, with no orchestrator started) and answers
the next request with the reason; every module it imported on that path is listed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import isolated_env

# Heavy or not a forwarder's business: the orchestrator imports these, a forwarder never does.
HEAVY = (
    "mcp", "pygls", "lsprotocol", "pydantic", "uvicorn", "starlette", "attr", "attrs", "cattrs", "yaml",
    "jsonschema", "watchfiles", "croniter", "sqlite3", "cao_client",
    "cao_sidecar.wire", "cao_sidecar.wire_types", "cao_sidecar.core.orchestrator", "cao_sidecar.runtime", "cao_sidecar.handlers",
    "cao_sidecar.profiles", "cao_sidecar.providers", "cao_sidecar.terminal", "cao_sidecar.editor.server",
)  # fmt: skip

pytestmark = [pytest.mark.timeout(60)]


def frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def imported_modules(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def heavy_among(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def run_forwarder(tmp_path: Path, flag: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    env = isolated_env(tmp_path)
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")
    env["XDG_STATE_HOME"] = str(blocker)  # joining fails at once: no orchestrator is started
    (tmp_path / "in").write_bytes(stdin)
    with open(tmp_path / "in", "rb") as stdin_file:
        return subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "cao_sidecar", flag],
            stdin=stdin_file, capture_output=True, env=env, cwd=tmp_path, timeout=45,
        )  # fmt: skip


def test_stdio_forwarder_imports_nothing_heavy(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    stdin = (
        frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"rootUri": workspace.as_uri(), "capabilities": {}}})
        + frame({"jsonrpc": "2.0", "id": 2, "method": "cao/listAgents", "params": {}})
        + frame({"jsonrpc": "2.0", "method": "exit"})
    )
    done = run_forwarder(tmp_path, "--stdio", stdin)
    out, err = done.stdout.decode(), done.stderr.decode()
    # It did walk the whole path: initialize answered, the join tried and refused with the reason.
    assert '"id": 1' in out and '"serverInfo"' in out, out
    assert '"id": 2' in out and "cao-sidecar:" in out, out
    assert "cannot join the orchestrator" in err, err[-2000:]
    modules = imported_modules(err)
    assert "cao_sidecar.daemon.forward" in modules, "the importtime listing is missing"
    assert heavy_among(modules) == []


@pytest.mark.parametrize("front_end", ["--acp", "mcp"])
def test_acp_and_mcp_host_forwarders_import_nothing_heavy(tmp_path, front_end):
    done = run_forwarder(tmp_path, front_end, b"")
    err = done.stderr.decode()
    assert done.returncode == 1 and "cannot join the orchestrator" in err, err[-2000:]
    modules = imported_modules(err)
    assert "cao_sidecar.daemon.forward" in modules, "the importtime listing is missing"
    assert heavy_among(modules) == []


def test_advertised_lists_match_the_wire_and_providers():
    """What `initialize` lists without importing wire or the providers is what they hold."""
    from cao_sidecar import wire
    from cao_sidecar.editor import advertised
    from cao_sidecar.providers import builtin_providers

    assert list(advertised.COMMANDS) == sorted(wire.COMMANDS)
    assert list(advertised.METHODS) == sorted(wire.METHODS)
    assert list(advertised.NOTIFICATIONS) == sorted(wire.NOTIFICATIONS)
    assert list(advertised.PROVIDERS) == sorted(builtin_providers())
