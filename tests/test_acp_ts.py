"""`cao-sidecar --acp` driven by the TypeScript ACP SDK (`@agentclientprotocol/sdk`, from npm;
.ci/run installs it into .ci/node). Skipped when node or the SDK is not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, isolated_env, kill_tmux

SDK = Path(os.environ.get("CAO_ACP_TS_SDK", ROOT / ".ci" / "node" / "node_modules" / "@agentclientprotocol" / "sdk"))


@pytest.mark.skipif(shutil.which("node") is None or not (SDK / "package.json").exists(), reason="node or the TS ACP SDK missing")
def test_typescript_client_drives_the_acp_face():
    base = Path(tempfile.mkdtemp(prefix="cao-acp-ts-"))
    env = isolated_env(base)
    env["CAO_ACP_DEFAULT_PROFILE"] = "mock_supervisor"
    try:
        done = subprocess.run(
            [
                "node",
                str(ROOT / "tests" / "acp_ts_client.mjs"),
                str(SDK),
                str(base / "workspace"),
                sys.executable,
                "-m",
                "cao_sidecar",
                "--acp",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["ok"] and result["permissions"] == 1
    finally:
        kill_tmux(env["CAO_TMUX_SOCKET"])
        shutil.rmtree(base, ignore_errors=True)
