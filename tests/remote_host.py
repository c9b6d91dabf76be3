"""The test "remote host": the account `caoremote` behind the test sshd on 127.0.0.1 that
.ci/sshd-setup.sh makes (and `caonotmux`, whose PATH has no tmux). Used by tests/test_hosts_ssh.py
and bench/bench_remote.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
SSHD_DIR = Path("/etc/cao-test-sshd")
KEY = SSHD_DIR / "client_ed25519"
PORT = int(os.environ.get("CAO_TEST_SSHD_PORT", "2222"))
OPTIONS = [
    "-p", str(PORT), "-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
]  # fmt: skip


def ssh(user: str, command: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-o", "BatchMode=yes", *OPTIONS, f"{user}@127.0.0.1", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _reachable() -> Optional[str]:
    if shutil.which("ssh") is None:
        return "no ssh client"
    if not os.access(KEY, os.R_OK):
        return f"no test key {KEY} (run .ci/sshd-setup.sh as root)"
    try:
        done = ssh("caoremote", "command -v tmux && command -v python3", timeout=15)
    except subprocess.TimeoutExpired:
        return "the test sshd did not answer within 15 s"
    if done.returncode != 0:
        return f"the test sshd refused caoremote: {done.stderr.strip()[-300:]}"
    return None


def sshd_unavailable() -> Optional[str]:
    """Why the test sshd cannot be used (None: it can). As root, it is set up first if need be."""
    reason = _reachable()
    if reason is not None and os.geteuid() == 0 and (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        subprocess.run(["bash", str(ROOT / ".ci" / "sshd-setup.sh")], capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
        reason = _reachable()
    return reason


def hosts_yaml(workspace: str) -> str:
    """hosts.yaml naming box1 (caoremote, its node in `workspace`) and notmux (no tmux)."""
    options = ", ".join(f'"{o}"' for o in OPTIONS)
    return (
        "hosts:\n"
        f"  - name: box1\n    ssh: caoremote@127.0.0.1\n    options: [{options}]\n    workspace: {workspace}\n"
        f"  - name: notmux\n    ssh: caonotmux@127.0.0.1\n    options: [{options}]\n"
    )


def new_workspace() -> str:
    return f"~/cao-test-{uuid.uuid4().hex[:10]}"


def end_node(workspace: str) -> None:
    """Stop the node of `workspace` on caoremote (its orchestrator and tmux server), remove it."""
    script = f"""
ws=$(cd {workspace} 2>/dev/null && pwd) || exit 0
for py in ~/.cache/cao-sidecar/*/bin/python; do
  sock=$($py -c "import sys; from cao_sidecar.paths import project_tmux_socket as s; print(s(sys.argv[1]))" "$ws" 2>/dev/null) && break
done
[ -n "$sock" ] || exit 0
info=~/.local/state/cao-sidecar/orchestrator-$sock.json
[ -f "$info" ] && kill $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$info") 2>/dev/null
tmux -L "$sock" kill-server 2>/dev/null
rm -rf "$ws"
"""
    try:
        ssh("caoremote", script, timeout=30)
    except subprocess.TimeoutExpired:
        pass
