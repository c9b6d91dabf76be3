"""Gemini CLI reads a system settings file only if root owns it and every directory above it, none
writable by group or others. Elsewhere (an ordinary user; a state directory under /tmp) the
sidecar gives the agent a private Gemini home (providers/gemini_home.py). Checked here: the
choice, the home's layout and merged settings, the real Gemini CLI reading our MCP server from it
(as root under /tmp, and as an ordinary user), and a real Gemini worker whose sidecar keeps its
state under /tmp connecting to our server and answering a handoff.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from pytest_lsp import LanguageClient

from cao_sidecar.providers import get_provider, gemini_home
from cao_sidecar.providers.base import LaunchContext
from fixtures.real_cli import NEEDS_GEMINI, RealCliTeam, which

TOKEN = "tok-gemini-home"
WORLD_WRITABLE = Path(tempfile.gettempdir())


def launch(agent_dir: Path, home: Path) -> dict[str, str]:
    env = {"HOME": str(home), "CAO_MCP_URL": "http://127.0.0.1:9/mcp", "CAO_MCP_TOKEN": TOKEN}
    agent_dir.mkdir(parents=True, exist_ok=True)
    return get_provider("gemini_cli").launch(LaunchContext("1a2b3c4d", "s", str(agent_dir), agent_dir, env=env)).env


def test_system_settings_only_where_gemini_reads_them(tmp_path: Path) -> None:
    assert stat.S_IMODE(WORLD_WRITABLE.stat().st_mode) & stat.S_IWOTH
    assert not gemini_home.system_settings_accepted(tmp_path)  # under the world-writable /tmp
    env = launch(tmp_path / "agent", tmp_path / "home")
    assert "GEMINI_CLI_SYSTEM_SETTINGS_PATH" not in env
    assert Path(env["GEMINI_CLI_HOME"]) == tmp_path / "agent" / gemini_home.HOME_DIR
    private = Path(__file__).resolve().parent.parent / ".pytest_cache"  # the real-CLI tests' state
    private.mkdir(exist_ok=True)
    if os.geteuid() == 0 and gemini_home.system_settings_accepted(private):
        agent = Path(tempfile.mkdtemp(dir=private))
        try:
            assert "GEMINI_CLI_SYSTEM_SETTINGS_PATH" in launch(agent, tmp_path / "home")
        finally:
            shutil.rmtree(agent)


def test_the_private_home_merges_the_users_settings_and_links_the_rest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".gemini" / "extensions").mkdir(parents=True)
    (home / ".gemini" / "oauth_creds.json").write_text("{}")
    (home / ".env").write_text("GEMINI_API_KEY=x\n")
    user = {
        "mcpServers": {"theirs": {"command": "x"}, "cao": {"httpUrl": "http://elsewhere"}},
        "hooks": {"AfterAgent": [{"matcher": "*", "hooks": [{"type": "command", "command": "their-hook"}]}]},
        "hooksConfig": {"enabled": False},
        "ui": {"theme": "GitHub"},
    }
    (home / ".gemini" / "settings.json").write_text(json.dumps(user))
    gemini_dir = Path(launch(tmp_path / "agent", home)["GEMINI_CLI_HOME"]) / ".gemini"
    settings = json.loads((gemini_dir / "settings.json").read_text())
    assert stat.S_IMODE((gemini_dir / "settings.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(gemini_dir.stat().st_mode) == 0o700
    assert settings["mcpServers"]["theirs"] == {"command": "x"} and settings["ui"] == {"theme": "GitHub"}
    assert settings["mcpServers"]["cao"]["headers"] == {"Authorization": f"Bearer {TOKEN}"}
    assert settings["hooksConfig"]["enabled"] is True
    after = [h["hooks"][0]["command"] for h in settings["hooks"]["AfterAgent"]]
    assert after[0] == "their-hook" and "hook_relay.py" in after[1]
    assert (gemini_dir / "oauth_creds.json").resolve() == home / ".gemini" / "oauth_creds.json"
    assert (gemini_dir / "extensions").resolve() == home / ".gemini" / "extensions"
    assert (gemini_dir.parent / ".env").resolve() == home / ".env"
    assert TOKEN not in (home / ".gemini" / "settings.json").read_text()  # the user's file untouched
    # A settings file Gemini reads with comments (not plain JSON): our settings alone.
    (home / ".gemini" / "settings.json").write_text('{ // mine\n "ui": {} }')
    again = Path(launch(tmp_path / "agent2", home)["GEMINI_CLI_HOME"]) / ".gemini" / "settings.json"
    assert "ui" not in json.loads(again.read_text()) and "cao" in json.loads(again.read_text())["mcpServers"]


def mcp_list(env: dict[str, str], cwd: Path, user: str | None = None) -> str:
    """`gemini mcp list` with a launch's environment (no model needed: it reads the settings)."""
    command = [str(which("gemini")), "mcp", "list"]
    full = {"PATH": os.environ["PATH"], "GEMINI_CLI_TRUST_WORKSPACE": "true", **env}
    if user is not None:
        command = ["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in full.items()), *command]
    done = subprocess.run(command, cwd=cwd, env=full, capture_output=True, text=True, timeout=90)
    return done.stdout + done.stderr


@NEEDS_GEMINI
def test_the_real_gemini_cli_reads_our_server_under_a_world_writable_directory(tmp_path: Path) -> None:
    env = launch(tmp_path / "agent", tmp_path / "home")
    out = mcp_list(env, tmp_path)
    assert "cao: http://127.0.0.1:9/mcp" in out and "Skipping" not in out, out
    # What the sidecar did before: the same settings as a system settings file here are skipped.
    system = tmp_path / "system.json"
    shutil.copy(Path(env["GEMINI_CLI_HOME"]) / ".gemini" / "settings.json", system)
    skipped = mcp_list({"HOME": str(tmp_path / "home"), "GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(system)}, tmp_path)
    assert "Skipping system settings file" in skipped and "cao:" not in skipped, skipped


def ordinary_user() -> str | None:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return None
    for name in ("caoremote", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    return None


@NEEDS_GEMINI
@pytest.mark.skipif(ordinary_user() is None, reason="needs root and an ordinary user account to run Gemini CLI as")
def test_the_real_gemini_cli_run_by_an_ordinary_user_reads_our_server() -> None:
    user = ordinary_user()
    assert user is not None
    account = pwd.getpwnam(user)
    base = Path(tempfile.mkdtemp(prefix="cao-gh-", dir=WORLD_WRITABLE))  # pytest's own tmp is root's alone
    try:
        base.chmod(0o755)
        env = launch(base / "agent", base / "home")
        for root, dirs, files in os.walk(base):
            for name in [".", *dirs, *files]:
                os.lchown(os.path.join(root, name), account.pw_uid, account.pw_gid)
        out = mcp_list(env, base, user=user)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert "cao: http://127.0.0.1:9/mcp" in out and "Skipping" not in out, out


TEAM = RealCliTeam("cao-gh-", ready_timeout=40, under=WORLD_WRITABLE)
TEAM.write_profiles(
    {
        "gemini_worker": f"""---
name: gemini_worker
description: Gemini CLI against the fake model
provider: gemini_cli
model: gemini-2.5-flash
env:
  GEMINI_API_KEY: fake-key
  GOOGLE_GEMINI_BASE_URL: {TEAM.model.url}
---
You are the gemini test worker.
"""
    }
)
client = TEAM.client_fixture()


@NEEDS_GEMINI
@pytest.mark.real_cli
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(150)
async def test_a_gemini_worker_connects_with_the_state_under_tmp(client: LanguageClient) -> None:
    lsp = client  # type: ignore[assignment]
    assert stat.S_IMODE(TEAM.base.parent.stat().st_mode) & stat.S_IWOTH
    tid = await TEAM.spawn_ready(lsp, "gemini_worker")
    kinds = [e["event"] for e in TEAM.logged_events() if e.get("terminalId") == tid]
    assert "mcp.connected" in kinds and kinds.index("mcp.connected") < kinds.index("ready"), kinds
    assert await TEAM.handoff(lsp, tid, "please say: gemini-home-ok") == "gemini-home-ok", TEAM.screen_of(tid)
