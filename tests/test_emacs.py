"""The Emacs client (clients/emacs/cao.el on eglot) driven headless by ERT against a real sidecar.

`emacs --batch` runs clients/emacs/test/cao-test.el: the sidecar is started by cao.el itself
through eglot, in an environment of its own (HOME, XDG_* dirs), on the tmux socket cao.el derives
from the workspace path; the agents are the mock agent. Skips when Emacs or eglot is missing
(.ci/editors/emacs.sh installs both from Debian).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, isolated_env, kill_tmux
from editor_trust import write_trust_store

CLIENT = ROOT / "clients" / "emacs"
TEST_FILE = CLIENT / "test" / "cao-test.el"
# Debian's elpa-eglot lives here; `emacs -Q` does not activate it by itself.
ACTIVATE_PACKAGES = (
    "(progn (require 'package)"
    ' (when (file-directory-p "/usr/share/emacs/site-lisp/elpa")'
    '   (add-to-list \'package-directory-list "/usr/share/emacs/site-lisp/elpa"))'
    " (package-activate-all))"
)


def _emacs() -> str:
    emacs = shutil.which("emacs")
    if emacs is None:
        pytest.skip("emacs is not installed (.ci/editors/emacs.sh installs Debian's emacs-nox)")
    probe = subprocess.run(
        [
            emacs,
            "--batch",
            "-Q",
            "--eval",
            ACTIVATE_PACKAGES,
            "--eval",
            "(progn (require 'eglot) (require 'jsonrpc) (princ emacs-version))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if probe.returncode != 0:
        pytest.skip("eglot is not installed for Emacs (.ci/editors/emacs.sh installs Debian's elpa-eglot)")
    major = int(probe.stdout.strip().split(".")[0])
    if major < 28:
        pytest.skip(f"Emacs {probe.stdout.strip()} is older than 28.1, which cao.el needs")
    return emacs


def ert_env(tmp_base: Path) -> dict[str, str]:
    """The environment of an ERT run: isolated dirs, the test workspace trusted in the user's
    store (a workspace .cao/ is in force there)."""
    env = isolated_env(tmp_base)
    workspace = tmp_base / "workspace"
    write_trust_store(Path(env["XDG_CONFIG_HOME"]), workspace)
    # A repository, for the workers with a git worktree (cao-test-worktrees).
    git_env = {
        **env,
        "GIT_AUTHOR_NAME": "Ana",
        "GIT_AUTHOR_EMAIL": "ana@example.com",
        "GIT_COMMITTER_NAME": "Ana",
        "GIT_COMMITTER_EMAIL": "ana@example.com",
    }
    if not (workspace / ".git").exists():
        (workspace / "README.md").write_text("# shop\n")
        for git_args in (["init", "-q", "--initial-branch=main"], ["add", "."], ["commit", "-qm", "start"]):
            subprocess.run(["git", *git_args], cwd=workspace, env=git_env, check=True)
    env.update(
        CAO_TEST_WORKSPACE=str(workspace),
        CAO_TEST_SIDECAR=sys.executable,
        CAO_TEST_SOCKET="cao-" + hashlib.sha256(str(workspace).encode("utf-8")).hexdigest()[:12],
        TERM="dumb",
    )
    return env


def run_ert(emacs: str, env: dict[str, str], files: list[Path], selector: str = "t") -> str:
    """emacs --batch running the ERT tests of FILES that SELECTOR selects; its output."""
    argv = [emacs, "--batch", "-Q", "--eval", ACTIVATE_PACKAGES, "-L", str(CLIENT), "-L", str(TEST_FILE.parent)]
    for file in files:
        argv += ["-l", str(file)]
    try:
        proc = subprocess.run(
            [*argv, "--eval", f"(ert-run-tests-batch-and-exit '{selector})"],
            cwd=env["CAO_TEST_WORKSPACE"],
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
            stdin=subprocess.DEVNULL,
        )
    finally:
        kill_tmux(env["CAO_TEST_SOCKET"])
        kill_tmux(env["CAO_TMUX_SOCKET"])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"ERT failed (exit {proc.returncode}):\n{output[-20000:]}"
    return output


def test_emacs_client_ert(tmp_base: Path) -> None:
    emacs = _emacs()
    output = run_ert(emacs, ert_env(tmp_base), [TEST_FILE])
    ran = re.search(r"Ran (\d+) tests, (\d+) results as expected", output)
    assert ran and ran.group(1) == ran.group(2) and int(ran.group(1)) >= 14, output[-5000:]
    timing = re.search(r"TIMING cao-start-ready ([\d.]+)", output)
    assert timing, output[-5000:]
    print(f"emacs: {ran.group(1)} ERT tests; cao-start to ready: {float(timing.group(1)):.2f} s")
