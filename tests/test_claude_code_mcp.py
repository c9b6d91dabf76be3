"""Real Claude Code health-checks our MCP endpoint with the configuration we generate.

Claude Code installs from npm (.ci/run puts it in .ci/node); it cannot reach a model here, but
`claude mcp list` connects to every configured server and reports "Connected".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from pytest_lsp import LanguageClient

from cao_sidecar.providers import mcp_config
from conftest import ROOT, agent_panes, initialize, kill_tmux, request, sidecar_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLAUDE = shutil.which("claude", path=str(ROOT / ".ci" / "node" / "node_modules" / ".bin")) or shutil.which("claude")
BASE = Path(tempfile.mkdtemp(prefix="cao-claude-"))
CONFIG, SIDECAR = sidecar_config(BASE)


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: LanguageClient):
    await initialize(lsp_client, SIDECAR)
    yield
    await lsp_client.shutdown_session()
    kill_tmux(SIDECAR.socket)


@pytest.mark.skipif(CLAUDE is None, reason="Claude Code is not installed (npm install @anthropic-ai/claude-code)")
async def test_claude_mcp_list_sees_our_server_connected(client, tmp_path):
    agent = (await request(client, "cao/spawn", {"profile": "mock_developer", "name": "claude_check"}))["terminalId"]
    (pid,) = agent_panes(SIDECAR.socket, "#{pane_pid}")
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    env = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)

    # The file our Claude Code launch passes with --mcp-config ...
    args = mcp_config.claude_code_args(env, tmp_path)
    config_file = Path(args[args.index("--mcp-config") + 1])
    assert config_file.stat().st_mode & 0o777 == 0o600
    servers = json.loads(config_file.read_text())["mcpServers"]
    # ... placed where `claude mcp list` looks (user scope of an isolated home).
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").write_text(json.dumps({"mcpServers": servers}))
    result = subprocess.run(
        [CLAUDE, "mcp", "list"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env={"HOME": str(home), "PATH": os.environ["PATH"], "DISABLE_AUTOUPDATER": "1"},
    )
    assert "cao:" in result.stdout, result.stdout + result.stderr
    assert "Connected" in result.stdout, result.stdout + result.stderr

    # A wrong credential is not connected.
    servers["cao"]["headers"]["Authorization"] = "Bearer wrong"
    (home / ".claude.json").write_text(json.dumps({"mcpServers": servers}))
    refused = subprocess.run(
        [CLAUDE, "mcp", "list"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env={"HOME": str(home), "PATH": os.environ["PATH"], "DISABLE_AUTOUPDATER": "1"},
    )
    assert "✔ Connected" not in refused.stdout
    await request(client, "cao/terminate", {"terminalId": agent})
