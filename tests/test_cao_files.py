"""CAO's own profile and flow files work as they are: a profile without `provider` (CAO picks one
at launch) runs on claude_code with a warning, its `cao-mcp-server` entry is left out (the
sidecar serves those tools itself), and a flow's `agent_profile` is its `profile`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cao_client import CaoClient
from conftest import isolated_env, kill_tmux

# As CAO's examples write them (examples/assign/data_analyst.md, examples/flow/local-task.md).
CAO_PROFILE = """---
name: data_analyst
description: Data analyst agent that performs statistical analysis and sends results back
role: developer  # @builtin, fs_*, execute_bash, @cao-mcp-server
skills:
  - cao-worker-protocols
mcpServers:
  cao-mcp-server:
    type: stdio
    command: uvx
    args:
      - "--from"
      - "git+https://github.com/awslabs/cli-agent-orchestrator.git@main"
      - "cao-mcp-server"
---

# DATA ANALYST AGENT

You analyse datasets and send the results back with send_message.
"""

CAO_FLOW = """---
name: local-task-demo
schedule: "*/10 * * * *"
agent_profile: mock_developer
---

echo appended one line
"""


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cao_sidecar", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_a_cao_profile_is_accepted_as_it_is_and_says_what_it_assumed(env, tmp_base):
    workspace = tmp_base / "workspace"
    agents = workspace / ".cao" / "agents"
    agents.mkdir(parents=True)
    (agents / "data_analyst.md").write_text(CAO_PROFILE)

    checked = cli(env, workspace, "profiles", "check", str(agents / "data_analyst.md"))
    assert checked.returncode == 0, checked.stderr
    assert "no 'provider' (as in CAO's profiles): it runs on claude_code" in checked.stderr
    assert "cao-mcp-server" in checked.stderr and "left out" in checked.stderr
    assert ": error:" not in checked.stderr and ": warning: unknown field 'role'" in checked.stderr

    listed = json.loads(cli(env, workspace, "profiles", "list", "--json").stdout)
    analyst = next(p for p in listed if p["name"] == "data_analyst")
    assert analyst["provider"] == "claude_code"


async def test_a_cao_profile_runs_and_a_cao_flow_runs_with_its_agent_profile(env, tmp_base):
    workspace = tmp_base / "workspace"
    (workspace / ".cao" / "agents").mkdir(parents=True)
    (workspace / ".cao" / "agents" / "data_analyst.md").write_text(CAO_PROFILE)
    (workspace / ".cao" / "flows").mkdir(parents=True)
    (workspace / ".cao" / "flows" / "local-task.md").write_text(CAO_FLOW)

    # The profile as it is, on the built-in mock CLI (no credentials here).
    async with CaoClient.start(workspace=workspace, env=env) as cao:
        result = await cao.handoff("echo analysed", profile="data_analyst", provider="mock")
        assert result["output"] == "analysed"

    flows = json.loads(cli(env, workspace, "flows", "list", "--json").stdout)
    assert [(f["name"], f["profile"]) for f in flows] == [("local-task-demo", "mock_developer")]
    ran = cli(env, workspace, "flows", "run", "local-task-demo")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "appended one line"
