"""Workspace trust in the Neovim client (clients/nvim), in real headless Neovims, real sidecar.

tests/nvim/trust_test.lua opens a folder laid out like a hostile clone (a `.cao/` and its own
`.venv/bin/cao-sidecar`, which leaves a marker file when run) and checks: before trust the folder's
program never runs (the sidecar is the `cao-sidecar` on PATH), the trust question comes once per
folder, `cao/trustChanged` is shown, `:Cao trust` / `:Cao untrust` go through the running sidecar
(cao/setTrust) or, without one, through `cao-sidecar trust` from PATH; a folder trusted in the
user's store (or under a trusted parent, or through a symlink) runs its own program.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, isolated_env, kill_tmux
from editor_trust import (
    NO_SET_TRUST,
    NO_TRUST_CLI,
    has_trust_cli,
    hostile_folder,
    path_sidecar,
    trusted_in_store,
    write_trust_store,
)
from test_nvim import INIT, NVIMS, PLUGIN, _usable, passed

pytestmark = pytest.mark.timeout(150)

SCRIPT = ROOT / "tests" / "nvim" / "trust_test.lua"


@pytest.fixture(scope="module", params=sorted(NVIMS))
def run(request: pytest.FixtureRequest) -> Any:
    path, what = NVIMS[request.param]
    if not _usable(path):
        pytest.skip(f"{what} is not installed; run .ci/editors/nvim.sh")
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    base = Path(tempfile.mkdtemp(prefix="cao-nvim-trust-"))
    env = isolated_env(base)
    socket = env["CAO_TMUX_SOCKET"]
    path_program = path_sidecar(base / "bin")
    env["PATH"] = f"{base / 'bin'}{os.pathsep}{env['PATH']}"
    hostile_folder(base / "hostile", base / "hostile.marker")
    hostile_folder(base / "trusted-parent" / "child", base / "child.marker")
    (base / "link").symlink_to(base / "trusted-parent" / "child")
    config_home = Path(env["XDG_CONFIG_HOME"])
    write_trust_store(config_home, base / "trusted-parent")
    (base / "corrupt-config" / "cao-sidecar").mkdir(parents=True)
    (base / "corrupt-config" / "cao-sidecar" / "trust.json").write_text('{"version": 1, "trusted": {"' + str(base))
    sidecar_env = {k: env[k] for k in ("HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "PYTHONPATH", "LANG")}
    sidecar_env["CAO_TMUX_SOCKET"] = socket
    trust_cli = has_trust_cli(env)
    out = base / "results.json"
    env.update(
        CAO_NVIM_PLUGIN=str(PLUGIN),
        CAO_TEST_OUT=str(out),
        CAO_TEST_BASE=str(base),
        CAO_TEST_SOCKET=socket,
        CAO_TEST_ENV=json.dumps(sidecar_env),
        CAO_TEST_TRUST_CLI="1" if trust_cli else "0",
    )
    argv = [path, "--headless", "--clean", "-u", str(INIT), "-c", f"luafile {SCRIPT}"]
    try:
        proc = subprocess.run(argv, env=env, cwd=base / "hostile", capture_output=True, text=True, timeout=120)
        if not out.exists():
            pytest.fail(f"nvim {request.param} wrote no results (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        results = json.loads(out.read_text())
        results.update(
            version=request.param,
            exit_code=proc.returncode,
            stderr=proc.stderr,
            base=str(base),
            path_program=str(path_program),
            trust_cli=trust_cli,
            store=trusted_in_store(config_home),
            env=env,
        )
        yield results
    finally:
        kill_tmux(socket)
        shutil.rmtree(base, ignore_errors=True)


def test_every_step_passed(run):
    failed = {name: s["error"] for name, s in run["steps"].items() if not s["ok"]}
    assert not failed, failed
    assert run["exit_code"] == 0, run["stderr"]
    for bad in ("stack traceback", "E5108", "Error executing"):
        assert bad not in run["stderr"] and bad not in run["data"]["messages"]


def test_the_folders_own_sidecar_runs_only_once_trusted(run):
    data = passed(run, "binary_choice")
    base = run["base"]
    assert data["path_sidecar"] == run["path_program"]
    assert data["hostile_program"] == run["path_program"]
    # Trusted through its parent folder in the user's store; and through a symlink to it.
    assert data["child_program"] == f"{base}/trusted-parent/child/.venv/bin/cao-sidecar"
    assert data["link_program"] == f"{base}/link/.venv/bin/cao-sidecar"
    assert data["link_trusted_by"] == os.path.realpath(f"{base}/trusted-parent")
    # A corrupt or missing store trusts nothing.
    assert data["corrupt_child_program"] == run["path_program"]
    assert data["missing_child_program"] == run["path_program"]
    # Not on PATH either: an error that says why, not the folder's program.
    assert data["hostile_program_no_path"].startswith("none: ")
    assert "is not trusted" in data["hostile_program_no_path"]


def test_an_untrusted_folder_starts_the_path_sidecar(run):
    data = passed(run, "untrusted_start")
    assert data["cmd"][0] == run["path_program"]
    assert data["hostile_marker_after_start"] is False
    assert passed(run, "asked_once")["hostile_marker_after_restart"] is False


def test_the_trust_question_is_asked_once_per_folder(run):
    data = passed(run, "untrusted_start")
    asked = [s for s in data["trust_selects"] if s["kind"] == "cao.trust"]
    assert len(asked) == 1, data["trust_selects"]
    assert asked[0]["items"] == ["Trust", "Not now"]
    assert f"{run['base']}/hostile has a .cao/" in asked[0]["prompt"]
    assert data["not_now_notified"]
    # Remembered in the editor's own state dir (data dir on 0.7), by real path.
    env = run["env"]
    state_dir = env["XDG_DATA_HOME"] if run["version"] == "0.7" else env["XDG_STATE_HOME"]
    assert data["asked_path"] == f"{state_dir}/nvim/cao/trust-asked.json"
    assert list(data["asked_file"]) == [os.path.realpath(f"{run['base']}/hostile")]
    assert passed(run, "asked_once")["trust_selects_after_restart"] == 0


def test_trust_changed_is_shown(run):
    data = passed(run, "trust_changed_notification")
    assert data["statusline_untrusted"].endswith(" · untrusted")
    assert "untrusted" not in data["statusline_trusted"]
    assert data["trusted_notified"]
    assert "no longer trusted" in data["untrusted_notification"]
    assert "profile helper: env, permissionMode not applied" in data["untrusted_notification"]


def test_the_profile_picker_marks_untrusted_profiles(run):
    data = passed(run, "untrusted_profile_in_picker")
    assert data["profile_picker"] == ["helper  (untrusted: its settings are held back)", "mock_developer"]


def test_checkhealth_shows_the_trust_state(run):
    health = "\n".join(passed(run, "checkhealth")["health"])
    assert "workspace trust" in health
    assert f"{run['env']['XDG_CONFIG_HOME']}/cao-sidecar/trust.json" in health
    assert f"{run['base']}/hostile has a .cao/ and is not trusted" in health
    assert "running sidecar: " in health and "held back: profile helper" in health


def test_trust_and_untrust_through_the_running_sidecar(run):
    data = passed(run, "trust_via_sidecar")
    if not data["sidecar_has_set_trust"]:
        pytest.skip(NO_SET_TRUST)
    assert data["set_trust"]["err"] is None
    assert data["set_trust"]["result"]["via"] == "sidecar"
    hostile = os.path.realpath(f"{run['base']}/hostile")
    assert data["is_trusted_after_set"] is True
    assert any(f["path"] in (hostile, f"{run['base']}/hostile") and f["trusted"] for f in data["state_trust_after_set"])
    assert data["is_trusted_after_untrust"] is False


def test_trust_and_untrust_without_a_sidecar_use_the_command_line(run):
    if not run["trust_cli"]:
        pytest.skip(NO_TRUST_CLI)
    data = passed(run, "trust_via_cli")
    assert data["cli_is_trusted"] is True
    hostile = f"{run['base']}/hostile"
    assert data["cli_program"] == f"{hostile}/.venv/bin/cao-sidecar"
    # Trusted: the folder's own program runs now.
    assert data["cli_started_cmd"][0] == f"{hostile}/.venv/bin/cao-sidecar"
    assert data["hostile_marker_after_trust"] is True
    assert data["cli_is_trusted_after_untrust"] is False
    assert data["cli_program_after_untrust"] == run["path_program"]
    # "Trust" to the question: recorded through the command line.
    assert passed(run, "question_answered_trust")["question_trust_is_trusted"] is True
    assert os.path.realpath(hostile) in run["store"]


def test_without_sidecar_or_path_trust_is_a_clear_error(run):
    data = passed(run, "cli_missing")
    assert "not on $PATH" in data["cli_missing_error"]
    assert data["cli_missing_notified"]
