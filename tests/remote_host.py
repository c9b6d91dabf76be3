"""The test "remote host": the account `caoremote` behind the test sshd on 127.0.0.1 that
.ci/sshd-setup.sh makes (and `caonotmux`, whose PATH has no tmux). Used by tests/test_hosts_ssh.py
and bench/bench_remote.py."""

from __future__ import annotations

import os
import shlex
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


def _home(user: str = "caoremote") -> str:
    import pwd

    return pwd.getpwnam(user).pw_dir


def _absolute(workspace: str) -> str:
    return _home() + workspace[1:] if workspace.startswith("~/") else workspace


def node_socket(workspace: str) -> str:
    """The tmux socket of the node of `workspace` (cao_sidecar.paths.project_tmux_socket there)."""
    from cao_sidecar.paths import project_tmux_socket

    return project_tmux_socket(_absolute(workspace))


def node_processes(workspace: str, wait: float = 0) -> list[str]:
    """caoremote's processes of the node of `workspace` ("pid command"): its link relays, its
    orchestrator, its tmux server and whatever runs in or below the workspace (the test "host"
    is this machine: /proc shows them). `wait`: seconds to wait for them to be gone."""
    import time

    deadline = time.monotonic() + wait
    while (found := _node_processes(workspace)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def _node_processes(workspace: str) -> list[str]:
    import pwd

    folder, socket = _absolute(workspace), node_socket(workspace)
    uid = pwd.getpwnam("caoremote").pw_uid
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if folder in command or socket in command or cwd == folder or cwd.startswith(folder + "/"):
            found.append(f"{entry.name} {command}")
    return found


def end_node(workspace: str) -> None:
    """Stop the node of `workspace` on caoremote and remove its folder: its link relays first (a
    relay still running could start the orchestrator again), then its orchestrator, then its
    tmux server (and agents). The processes are found by their command lines, not by asking an
    installed version of the program (an older one may name the socket otherwise). Run it after
    the orchestrator that links to the node has ended: a live link reconnects, starting it again."""
    script = f"""
ws=$(cd {workspace} 2>/dev/null && pwd -P) || exit 0
sock={shlex.quote(node_socket(workspace))}
for round in 1 2 3 4 5 6 7 8 9 10; do
  left=
  for kind in "node --workspace" "serve --project"; do
    for d in /proc/[0-9]*; do
      cmd=$(tr '\\0' ' ' < "$d/cmdline" 2>/dev/null) || continue
      case "$cmd" in *"cao_sidecar $kind $ws"*) kill "${{d#/proc/}}" 2>/dev/null && left=1;; esac
    done
  done
  tmux -L "$sock" kill-server 2>/dev/null && left=1
  [ -n "$left" ] || break
  sleep 0.3
done
rm -rf "$ws"
"""
    try:
        ssh("caoremote", script, timeout=60)
    except subprocess.TimeoutExpired:
        pass


def children(pid: int, name: str) -> list[int]:
    """The processes named `name` whose parent is `pid` (the orchestrator's ssh links)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            if int(rest[1]) == pid and comm == name:
                found.append(int(entry.name))
    return found


def host_screen(workspace: str, window: str) -> str:
    """What the window `window` of the node of `workspace` shows now, read on the host itself
    (not over the orchestrator's link)."""
    tmux = f"tmux -L {shlex.quote(node_socket(workspace))}"
    script = (
        f"pane=$({tmux} list-panes -a -F '#{{window_name}} #{{pane_id}}' | awk -v w={shlex.quote(window)} '$1 == w {{print $2}}')"
        f' && [ -n "$pane" ] && {tmux} capture-pane -p -J -S -200 -t "$pane"'
    )
    return ssh("caoremote", script).stdout
