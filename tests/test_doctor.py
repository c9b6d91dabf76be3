"""`cao-sidecar doctor`, and the clear start-up errors it goes with, on the real sidecar process:
a provider's CLI not installed (its install command), not logged in (how to log in), tmux missing
(one line, from every door). Fake CLIs are small scripts on a PATH of the test's own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cao_client import CaoClient, CaoError
from conftest import ROOT, agent_windows, isolated_env, kill_tmux

NODE_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
REAL_CLAUDE = shutil.which("claude", path=str(NODE_BIN))
TMUX = shutil.which("tmux")
NOT_READY = -31007

# Claude Code's ready screen when it has no credentials (as 2.1.197 draws it).
LOGGED_OUT_SCREEN = """\
╭─── Claude Code v2.1.197 ───────────────────────────────────────────╮
│                 Welcome back!                                      │
╰────────────────────────────────────────────────────────────────────╯
────────────────────────────────────────────────────────────────────────
❯ 
────────────────────────────────────────────────────────────────────────
  ? for shortcuts · ← for agents                Not logged in · Run /login
"""


def fake_cli(bin_dir: Path, name: str, version_line: str, screen: str | None = None) -> Path:
    """An executable that prints `version_line` for --version, else draws `screen` and waits."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    body = f'if [ "$1" = "--version" ]; then echo {json.dumps(version_line)}; exit 0; fi\n'
    if screen is not None:
        (bin_dir / f"{name}.screen").write_text(screen)
        body += f"cat {json.dumps(str(bin_dir / (name + '.screen')))}\nexec sleep 600\n"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def tool_dir(base: Path, *, tmux: bool = True) -> Path:
    """A PATH directory with only what the sidecar itself needs (tmux) and nothing else."""
    bin_dir = base / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if tmux:
        assert TMUX is not None
        (bin_dir / "tmux").symlink_to(TMUX)
    for tool in ("sh", "sleep", "cat"):  # the fake CLIs' own needs
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return bin_dir


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    env["PATH"] = str(tool_dir(tmp_base))
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cao_sidecar", "doctor", *args], env=env, capture_output=True, text=True, timeout=60
    )


windows = agent_windows


def test_doctor_reports_clis_present_and_absent_with_versions_logins_and_install_commands(env, tmp_base):
    bin_dir = Path(env["PATH"])
    fake_cli(bin_dir, "claude", "2.1.197 (Claude Code)")
    fake_cli(bin_dir, "codex", "codex-cli 0.169.0")
    home = Path(env["HOME"])
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text("{}")
    env["GEMINI_API_KEY"] = ""  # set but empty: not a login

    result = doctor(env, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["tmux"]["found"] and report["tmux"]["version"][0].isdigit()
    by_name = {entry["provider"]: entry for entry in report["providers"]}
    assert by_name["mock"]["found"] and by_name["mock"]["builtIn"]

    claude = by_name["claude_code"]
    assert claude["found"] and claude["path"] == str(bin_dir / "claude") and claude["version"] == "2.1.197"
    assert claude["loggedIn"] is True and claude["credential"].endswith(".claude/.credentials.json")
    assert claude["ok"] is True and "install" not in claude

    codex = by_name["codex"]  # installed, never logged in
    assert codex["found"] and codex["version"] == "0.169.0"
    assert codex["loggedIn"] is False and "codex login" in codex["login"] and codex["ok"] is False

    gemini = by_name["gemini_cli"]  # not installed
    assert gemini["found"] is False and gemini["install"] == "npm install -g @google/gemini-cli"
    assert gemini["loggedIn"] is False and "GEMINI_API_KEY" in gemini["login"]
    assert by_name["cursor"]["loggedIn"] is None  # keeps its login where we cannot cheaply look

    assert {e["editor"] for e in report["editors"]} == {"Neovim", "Emacs", "VS Code"}
    assert all(e["found"] is False for e in report["editors"])  # none on this PATH

    text = doctor(env).stdout
    assert "claude_code: Claude Code 2.1.197" in text and "logged in" in text
    assert "NOT LOGGED IN - run `codex login`" in text
    assert "missing  gemini_cli: Gemini CLI (`gemini`) - install: npm install -g @google/gemini-cli" in text

    # An API key in the environment counts as logged in.
    env["OPENAI_API_KEY"] = "sk-test"
    codex = {e["provider"]: e for e in json.loads(doctor(env, "--json").stdout)["providers"]}["codex"]
    assert codex["loggedIn"] is True and codex["credential"] == "$OPENAI_API_KEY"


def test_doctor_without_tmux_says_how_to_install_it(env, tmp_base):
    env["PATH"] = str(tool_dir(tmp_base / "no-tmux", tmux=False))
    result = doctor(env)
    assert result.returncode == 1
    assert "tmux is not installed: install tmux (apt-get install tmux)" in result.stdout
    report = json.loads(doctor(env, "--json").stdout)
    assert report["ok"] is False and report["tmux"] == {
        "found": False,
        "path": None,
        "version": None,
        "install": "apt-get install tmux",
    }


@pytest.mark.skipif(REAL_CLAUDE is None, reason="Claude Code is not installed in .ci/node")
def test_doctor_reads_the_real_claude_codes_version(env):
    env["PATH"] = str(NODE_BIN) + os.pathsep + env["PATH"]
    expected = subprocess.run([REAL_CLAUDE, "--version"], capture_output=True, text=True, timeout=60).stdout.split()[0]
    claude = {e["provider"]: e for e in json.loads(doctor(env, "--json").stdout)["providers"]}["claude_code"]
    assert claude["found"] and claude["version"] == expected and claude["loggedIn"] is False


async def test_a_cli_that_is_not_installed_fails_the_spawn_at_once_with_its_install_command(env, tmp_base):
    started = time.monotonic()
    async with CaoClient.start(workspace=tmp_base / "workspace", env=env) as cao:
        with pytest.raises(CaoError) as refused:
            await cao.spawn("developer")  # provider claude_code; no `claude` on this PATH
        assert time.monotonic() - started < 20
        message = refused.value.message
        assert refused.value.code == NOT_READY
        assert "Claude Code's command `claude` is not installed" in message
        assert "npm install -g @anthropic-ai/claude-code" in message and "cao-sidecar doctor" in message
        assert await cao.list_agents() == []
    assert windows(env) == ""


async def test_a_cli_whose_screen_says_not_logged_in_fails_at_start_with_how_to_log_in(env, tmp_base):
    fake_cli(Path(env["PATH"]), "claude", "2.1.197 (Claude Code)", screen=LOGGED_OUT_SCREEN)
    async with CaoClient.start(workspace=tmp_base / "workspace", env=env) as cao:
        with pytest.raises(CaoError) as refused:
            await cao.handoff("write the parser", profile="developer", timeout_seconds=60)
        assert refused.value.code == NOT_READY
        assert "Claude Code is not logged in" in refused.value.message
        assert "/login" in refused.value.message and "ANTHROPIC_API_KEY" in refused.value.message
        assert "Not logged in" in refused.value.data["screenTail"]
        # Nothing was typed into it: the task never reached a CLI that cannot do it.
        log = await cao.request("cao/getLog", {})
        assert not [e for e in log["events"] if e["event"] == "input"]
    assert windows(env) == ""


@pytest.mark.real_cli
@pytest.mark.skipif(REAL_CLAUDE is None, reason="Claude Code is not installed in .ci/node")
async def test_the_real_claude_code_without_credentials_fails_at_start_with_how_to_log_in(env, tmp_base):
    env["PATH"] = str(NODE_BIN) + os.pathsep + os.path.dirname(shutil.which("node") or "/usr/bin/node") + os.pathsep + env["PATH"]
    env["CAO_READY_TIMEOUT"] = "60"
    (Path(env["HOME"]) / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
    async with CaoClient.start(workspace=tmp_base / "workspace", env=env) as cao:
        with pytest.raises(CaoError) as refused:
            await cao.spawn("developer")
        assert refused.value.code == NOT_READY, refused.value.message
        assert "Claude Code is not logged in" in refused.value.message
    assert windows(env) == ""


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and "TmuxError" not in text, text


def test_without_tmux_every_door_says_install_tmux_in_one_line(env, tmp_base, capfd):
    env["PATH"] = str(tool_dir(tmp_base / "no-tmux", tmux=False))
    for verb in (["run", "--profile", "mock_developer", "echo hi"], ["demo"]):
        result = subprocess.run(
            [sys.executable, "-m", "cao_sidecar", *verb],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 1
        assert result.stderr.strip() == "cao-sidecar: tmux is not installed: install tmux (apt-get install tmux)"
        assert result.stdout == ""


async def test_the_editor_face_reports_the_same_facts_as_the_command(env, tmp_base):
    fake_cli(Path(env["PATH"]), "codex", "codex-cli 0.169.0")
    async with CaoClient.start(workspace=tmp_base / "workspace", env=env) as cao:
        assert "cao/doctor" in cao.capabilities["experimental"]["cao"]["methods"]
        report = await cao.request("cao/doctor", {})
    assert report == json.loads(doctor(env, "--json").stdout)
    codex = {e["provider"]: e for e in report["providers"]}["codex"]
    assert codex["version"] == "0.169.0" and codex["loggedIn"] is False


async def test_without_tmux_the_editor_face_answers_with_install_tmux(env, tmp_base, capfd):
    env["PATH"] = str(tool_dir(tmp_base / "no-tmux", tmux=False))
    async with CaoClient.start(workspace=tmp_base / "workspace", env=env) as cao:
        with pytest.raises(CaoError) as refused:
            await cao.spawn("mock_developer")
        assert refused.value.message.startswith("tmux is not installed: install tmux (apt-get install tmux)")
        report = await cao.request("cao/doctor", {})  # still answered: it needs no tmux
        assert report["ok"] is False and report["tmux"]["install"] == "apt-get install tmux"
    # The orchestrator (started by the front end) logs to its log file in the state dir.
    log = Path(env["XDG_STATE_HOME"]) / "cao-sidecar" / f"orchestrator-{env['CAO_TMUX_SOCKET']}.log"
    stderr = capfd.readouterr().err + log.read_text()
    _no_traceback(stderr)
    assert "install tmux (apt-get install tmux)" in stderr
