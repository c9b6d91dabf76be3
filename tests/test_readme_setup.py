"""The README's set-up works as written on a system Python that refuses global installs.

Debian's /usr/bin/python3 is "externally managed": `python3 -m pip install` stops with
externally-managed-environment. The README's first command is run as it stands, in a copy of the
checkout, with that python3 first on PATH. `apt-get` is a stand-in that only checks the packages
the command names are installed (CI's .ci/run installs them for real), so the test does not change
the machine. pip fetches the dependencies from the package index as the README's reader's pip
would (its cache makes later runs quick): they are not all on this machine's local index, so an
offline install is not possible here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

SYSTEM_PYTHON = Path("/usr/bin/python3")


def readme_commands() -> tuple[str, list[str]]:
    """The README's opening (up to the first rule) and the commands it gives there."""
    opening = (ROOT / "README.md").read_text().split("\n---\n", 1)[0]
    commands = [line.strip() for line in opening.splitlines() if line.startswith("    ") and line.strip()]
    return opening, commands


def test_the_readme_opens_with_two_set_up_commands_and_ci_runs_the_test_one():
    opening, commands = readme_commands()
    assert "git clone" in opening
    assert len(commands) == 2, commands
    demo, tests = commands
    for command in commands:
        assert command.startswith("apt-get update && apt-get install -y tmux python3-venv && python3 -m venv .venv")
    assert demo.endswith("&& .venv/bin/cao-sidecar demo")
    assert tests.endswith("&& .venv/bin/python -m pytest")
    # .ci/run runs the test command's steps in order (quietly, without standard input).
    ci = _plain((ROOT / ".ci" / "run").read_text())
    position = 0
    for step in tests.split(" && "):
        found = ci.find(_plain(step), position)
        assert found >= 0, f"step {step!r} is not in .ci/run (after what came before)"
        position = found + len(_plain(step))


def _plain(shell: str) -> str:
    """Shell text without quiet flags, redirections and quotes, one space between words."""
    shell = re.sub(r"[<>]/dev/null|2>&1", " ", shell).replace('"', "")
    return " ".join(w for w in shell.split() if w not in ("-q", "-qq", "-y", "&&"))


def _externally_managed() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    probe = subprocess.run(
        [
            str(SYSTEM_PYTHON),
            "-c",
            "import sys, sysconfig, os, venv, ensurepip; "
            "sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')) else 1)",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


def _copy_checkout(dest: Path) -> None:
    listed = (
        subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = ROOT / name
        if name.startswith(".ci/") or not source.is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


APT_GET_STAND_IN = """#!/bin/sh
# Stand-in for apt-get: `update` does nothing; `install` checks each named package is installed.
[ "$1" = update ] && exit 0
[ "$1" = install ] || { echo "apt-get stand-in: unexpected $*" >&2; exit 2; }
shift
for package in "$@"; do
  case "$package" in -*) continue;; esac
  dpkg -s "$package" >/dev/null 2>&1 || { echo "apt-get stand-in: $package is not installed" >&2; exit 1; }
done
"""


@pytest.mark.timeout(900)
@pytest.mark.skipif(not _externally_managed(), reason="no externally managed system Python with venv here")
@pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("git") is None, reason="needs dpkg and git")
def test_the_readme_demo_command_works_where_pip_refuses_global_installs(tmp_path, tmp_base):
    checkout = tmp_path / "cao-sidecar"
    _copy_checkout(checkout)
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    (stand_ins / "apt-get").write_text(APT_GET_STAND_IN)
    (stand_ins / "apt-get").chmod(0o755)
    (stand_ins / "python3").symlink_to(SYSTEM_PYTHON)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYENV", "CAO_"))}
    env.update(
        PATH=os.pathsep.join([str(stand_ins), "/usr/local/bin", "/usr/bin", "/bin"]),
        # A short path: the sidecar's MCP Unix socket lives under it (at most 107 bytes), and
        # pytest-xdist's tmp_path is longer (popen-gwN/).
        XDG_STATE_HOME=str(tmp_base / "state"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        LANG="C.UTF-8",
    )

    # What the README said before: refused on this Python.
    refused = subprocess.run(
        ["python3", "-m", "pip", "install", "-e", "."],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stdout + refused.stderr

    _, (demo, _tests) = readme_commands()
    result = subprocess.run(
        ["sh", "-c", demo],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Combined answer:" in result.stdout and "[mock_developer]" in result.stdout, result.stdout
    config = (checkout / ".venv" / "pyvenv.cfg").read_text()
    assert re.search(r"^executable = /usr/bin/python3", config, re.M), config  # the system Python's venv
