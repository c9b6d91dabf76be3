"""Launch commands built from a profile, for every provider: model, system prompt, our MCP server
with the agent's own credential (files 0600, the token never on the command line), hooks or
notify wiring, permission mode and tools, the profile's own MCP servers and extra arguments.
Also the orchestrator's fallback when an event never comes.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.profiles.profile import McpServer, Profile
from cao_sidecar.providers import builtin_providers, get_provider, own_python
from cao_sidecar.providers.base import LaunchContext, LaunchSpec, profile_options
from cao_sidecar.providers.mcp_config import TEAM_TOOLS

TOKEN = "secret-token-abc"
S = AgentStatus


def context(tmp_path: Path, **options: Any) -> LaunchContext:
    agent_dir = tmp_path / "agents" / "1a2b3c4d"
    agent_dir.mkdir(parents=True, exist_ok=True)
    (agent_dir / "credential").write_text(TOKEN)  # as CredentialStore.issue writes it: 0600
    (agent_dir / "credential").chmod(0o600)
    return LaunchContext(
        terminal_id="1a2b3c4d",
        session="cao",
        working_directory=str(tmp_path),
        agent_dir=agent_dir,
        model="model-x",
        system_prompt="You are a careful reviewer.\nSecond line.",
        env={
            "PATH": "/nonexistent",
            "HOME": str(tmp_path / "home"),
            "CAO_MCP_URL": "http://127.0.0.1:4567/mcp",
            "CAO_MCP_TOKEN": TOKEN,
            "CAO_MCP_SOCKET": str(tmp_path / "mcp.sock"),
        },
        options=options,
    )


def opt(argv: list[str], flag: str) -> str:
    """The value of `flag=VALUE` in argv (values are always attached: never a separate argument)."""
    return next(a[len(flag) + 1 :] for a in argv if a.startswith(flag + "="))


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", sorted(set(builtin_providers()) - {"mock"}))
def test_token_never_on_the_command_line(tmp_path: Path, name: str) -> None:
    spec = get_provider(name).launch(context(tmp_path))
    assert isinstance(spec, LaunchSpec)
    assert not any(TOKEN in arg for arg in spec.argv), spec.argv
    assert not any(TOKEN in value for value in spec.env.values())
    for path in (tmp_path / "agents" / "1a2b3c4d").iterdir():
        if path.is_file() and TOKEN in path.read_text():
            assert private(path), path


def test_claude_code(tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        permission_mode="acceptEdits",
        allowed_tools=["Read", "Bash(git:*)"],
        disallowed_tools=["WebFetch"],
        args=["--verbose"],
    )
    spec = get_provider("claude_code").launch(ctx)
    argv = spec.argv
    assert argv[0] == "claude"
    assert opt(argv, "--model") == "model-x"
    assert opt(argv, "--append-system-prompt") == ctx.system_prompt
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    # The profile's tools, then our own (the team's tools never ask).
    assert [a for a in argv if a.startswith("--allowedTools=")] == ["--allowedTools=Read", "--allowedTools=Bash(git:*)"] + [
        f"--allowedTools=mcp__cao__{tool}" for tool in TEAM_TOOLS
    ]
    assert "--disallowedTools=WebFetch" in argv and argv[-1] == "--verbose"
    assert "--strict-mcp-config" in argv
    assert spec.env["DISABLE_AUTOUPDATER"] == "1" and spec.events
    session = argv[argv.index("--session-id") + 1]
    assert (ctx.agent_dir / "claude-session-id").read_text() == session
    settings = json.loads(Path(argv[argv.index("--settings") + 1]).read_text())
    for event in ("UserPromptSubmit", "Stop", "StopFailure", "Notification", "PermissionRequest", "PreToolUse"):
        hook = settings["hooks"][event][0]["hooks"][0]
        assert hook["type"] == "http" and hook["url"] == "http://127.0.0.1:4567/hooks/claude_code"
        assert hook["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert "skipDangerousModePermissionPrompt" not in settings


def test_claude_code_bypass_and_profile_mcp_servers(tmp_path: Path) -> None:
    servers = [
        McpServer("files", "stdio", command="mcp-files", args=("--root", "."), env=(("A", "1"),)),
        McpServer("web", "http", url="https://example.invalid/mcp", headers=(("X-Key", "k"),)),
    ]
    spec = get_provider("claude_code").launch(context(tmp_path, permission_mode="bypassPermissions", mcp_servers=servers))
    assert "--dangerously-skip-permissions" in spec.argv and "--permission-mode" not in spec.argv
    settings = json.loads(Path(spec.argv[spec.argv.index("--settings") + 1]).read_text())
    assert settings["skipDangerousModePermissionPrompt"] is True
    mcp = json.loads(Path(spec.argv[spec.argv.index("--mcp-config") + 1]).read_text())["mcpServers"]
    assert mcp["files"] == {"type": "stdio", "command": "mcp-files", "args": ["--root", "."], "env": {"A": "1"}}
    assert mcp["web"] == {"type": "http", "url": "https://example.invalid/mcp", "headers": {"X-Key": "k"}}
    assert mcp["cao"]["url"] == "http://127.0.0.1:4567/mcp"


def test_claude_code_without_sidecar_endpoint(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    for key in ("CAO_MCP_URL", "CAO_MCP_TOKEN", "CAO_MCP_SOCKET"):
        ctx.env.pop(key)
    spec = get_provider("claude_code").launch(ctx)
    assert "--settings" not in spec.argv and "--mcp-config" not in spec.argv and not spec.events


def test_codex(tmp_path: Path) -> None:
    servers = [McpServer("files", "stdio", command="mcp-files", args=("x",))]
    spec = get_provider("codex").launch(
        context(tmp_path, approval_policy="on-request", sandbox_mode="workspace-write", mcp_servers=servers)
    )
    argv = spec.argv
    assert argv[:2] == ["codex", "--no-alt-screen"] and spec.events
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    assert "check_for_update_on_startup=false" in overrides
    assert 'developer_instructions="You are a careful reviewer.\\u000ASecond line."' in overrides
    assert 'mcp_servers.cao.url="http://127.0.0.1:4567/mcp"' in overrides
    assert 'mcp_servers.cao.bearer_token_env_var="CAO_MCP_TOKEN"' in overrides
    assert "mcp_servers.cao.startup_timeout_sec=60" in overrides
    assert 'mcp_servers.files.command="mcp-files"' in overrides and 'mcp_servers.files.args=["x"]' in overrides
    assert 'approval_policy="on-request"' in overrides and 'sandbox_mode="workspace-write"' in overrides
    notify = tomllib.loads(next(o for o in overrides if o.startswith("notify=")))["notify"]
    assert notify[1].endswith("hook_relay.py") and notify[notify.index("--url") + 1] == "http://127.0.0.1:4567/hooks/codex"
    assert notify[notify.index("--token-file") + 1].endswith("1a2b3c4d/credential")
    assert opt(argv, "--model") == "model-x"
    yolo = get_provider("codex").launch(context(tmp_path, permission_mode="bypassPermissions")).argv
    assert "--dangerously-bypass-approvals-and-sandbox" in yolo


def gemini_settings_file(spec: Any) -> Path:
    """Our settings for Gemini CLI: a system settings file, or a private Gemini home's (gemini_home.py)."""
    if "GEMINI_CLI_SYSTEM_SETTINGS_PATH" in spec.env:
        return Path(spec.env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"])
    return Path(spec.env["GEMINI_CLI_HOME"]) / ".gemini" / "settings.json"


def test_gemini_cli(tmp_path: Path) -> None:
    spec = get_provider("gemini_cli").launch(context(tmp_path, permission_mode="bypassPermissions"))
    argv = spec.argv
    assert opt(argv, "--approval-mode") == "yolo" and opt(argv, "--model") == "model-x"
    settings_path = gemini_settings_file(spec)
    assert private(settings_path) and spec.events
    # The working directory trusted up front: no folder-trust dialog, no restart before it connects.
    assert spec.env["GEMINI_CLI_TRUST_WORKSPACE"] == "true" and spec.connects_to_sidecar
    settings = json.loads(settings_path.read_text())
    assert settings["mcpServers"]["cao"] == {
        "httpUrl": "http://127.0.0.1:4567/mcp",
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "trust": True,
    }
    for event in ("BeforeAgent", "AfterAgent", "Notification"):
        command = settings["hooks"][event][0]["hooks"][0]["command"]
        assert "hook_relay.py" in command and "--stdin" in command and "/hooks/gemini_cli" in command
    context_dir = Path(opt(argv, "--include-directories"))
    assert (context_dir / "GEMINI.md").read_text().startswith("You are a careful reviewer.")
    assert settings["context"]["loadMemoryFromIncludeDirectories"] is True


def test_opencode(tmp_path: Path) -> None:
    spec = get_provider("opencode").launch(context(tmp_path, permission_mode="bypassPermissions"))
    config = json.loads(Path(spec.env["OPENCODE_CONFIG"]).read_text())
    assert spec.env["OPENCODE_DISABLE_AUTOUPDATE"] == "1"
    assert config["mcp"]["cao"]["type"] == "remote" and config["mcp"]["cao"]["url"] == "http://127.0.0.1:4567/mcp"
    assert Path(config["instructions"][0]).read_text().startswith("You are a careful reviewer.")
    assert config["permission"]["bash"] == "allow"
    assert opt(spec.argv, "--model") == "model-x"


def test_aider(tmp_path: Path) -> None:
    argv = get_provider("aider").launch(context(tmp_path)).argv
    assert {"--no-check-update", "--no-analytics", "--no-show-release-notes", "--no-gitignore"} <= set(argv)
    assert Path(argv[argv.index("--read") + 1]).read_text().startswith("You are a careful reviewer.")
    assert "--yes-always" in get_provider("aider").launch(context(tmp_path, permission_mode="bypassPermissions")).argv


@pytest.mark.parametrize(("name", "directory"), [("kiro_cli", ".kiro/agents"), ("q_cli", ".aws/amazonq/cli-agents")])
def test_kiro_and_q_agent_files(tmp_path: Path, name: str, directory: str) -> None:
    agents = tmp_path / "home" / directory
    agents.mkdir(parents=True)
    (agents / "cao-deadbeef.json").write_text("{}")  # an agent that no longer exists
    (agents / "mine.json").write_text("{}")  # the user's own
    argv = get_provider(name).launch(context(tmp_path, allowed_tools=["fs_read"])).argv
    assert opt(argv, "--agent") == "cao-1a2b3c4d" and "--trust-tools=fs_read" in argv
    data = json.loads((agents / "cao-1a2b3c4d.json").read_text())
    assert data["prompt"].startswith("You are a careful reviewer.")
    assert data["mcpServers"]["cao"]["args"][:3] == own_python.module_argv("cao_sidecar")[1:]  # never the cwd's
    assert not (agents / "cao-deadbeef.json").exists() and (agents / "mine.json").exists()


def test_copilot_and_cursor(tmp_path: Path) -> None:
    argv = get_provider("copilot").launch(context(tmp_path, disallowed_tools=["shell(rm)"])).argv
    config = Path(argv[argv.index("--additional-mcp-config") + 1].lstrip("@"))
    assert private(config) and json.loads(config.read_text())["mcpServers"]["cao"]["tools"] == ["*"]
    assert "--deny-tool=shell(rm)" in argv and argv[argv.index("--model") + 1] == "model-x"
    cursor = get_provider("cursor").launch(context(tmp_path, permission_mode="bypassPermissions")).argv
    assert cursor[0] == "cursor-agent" and "--force" in cursor


def test_command_option_and_path_resolution(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "claude"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    ctx = context(tmp_path)
    ctx.env["PATH"] = str(bindir)
    assert get_provider("claude_code").launch(ctx).argv[0] == str(exe)
    ctx = context(tmp_path, command="npx -y @anthropic-ai/claude-code@2.1.197")
    assert get_provider("claude_code").launch(ctx).argv[:3] == ["npx", "-y", "@anthropic-ai/claude-code@2.1.197"]


def team_tool_settings(tmp_path: Path, name: str, **options: Any) -> Any:
    """What a launch of provider `name` says about our tools' approval, in that CLI's terms."""
    spec = get_provider(name).launch(context(tmp_path, **options))
    argv = spec.argv
    if name == "claude_code":
        return [a for a in argv if a.startswith("--allowedTools=")]
    if name == "codex":
        return [argv[i + 1] for i, a in enumerate(argv) if a == "-c" and ".tools." in argv[i + 1]]
    if name == "gemini_cli":
        return json.loads(gemini_settings_file(spec).read_text())["mcpServers"]["cao"]["trust"]
    if name == "opencode":
        return json.loads(Path(spec.env["OPENCODE_CONFIG"]).read_text()).get("permission")
    if name == "copilot":
        return [a for a in argv if a.startswith("--allow-tool=")]
    data = json.loads((tmp_path / "home" / ".kiro" / "agents" / "cao-1a2b3c4d.json").read_text())
    return data.get("allowedTools")


TEAM_TOOL_APPROVALS = {
    "claude_code": [f"--allowedTools=mcp__cao__{tool}" for tool in TEAM_TOOLS],
    "codex": [f'mcp_servers.cao.tools.{tool}.approval_mode="approve"' for tool in TEAM_TOOLS],
    "gemini_cli": True,
    "opencode": {f"cao_{tool}": "allow" for tool in TEAM_TOOLS},
    "copilot": [f"--allow-tool=cao({tool})" for tool in TEAM_TOOLS],
    "kiro_cli": [f"@cao/{tool}" for tool in TEAM_TOOLS],
}
OPTED_OUT = {"claude_code": [], "codex": [], "gemini_cli": False, "opencode": None, "copilot": [], "kiro_cli": None}


@pytest.mark.parametrize("name", sorted(TEAM_TOOL_APPROVALS))
def test_team_tools_never_ask_unless_the_profile_opts_out(tmp_path: Path, name: str) -> None:
    assert team_tool_settings(tmp_path, name) == TEAM_TOOL_APPROVALS[name]
    assert team_tool_settings(tmp_path, name, ask_for_team_tools=True) == OPTED_OUT[name]


def test_team_tools_are_pre_approved_only_with_our_server(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    for key in ("CAO_MCP_URL", "CAO_MCP_TOKEN", "CAO_MCP_SOCKET"):
        ctx.env.pop(key)
    assert not [a for a in get_provider("claude_code").launch(ctx).argv if "mcp__cao__" in a]
    assert not [a for a in get_provider("codex").launch(ctx).argv if "mcp_servers.cao" in a]


def test_ready_waits_for_the_mcp_connection_only_where_the_cli_connects_at_start(tmp_path: Path) -> None:
    connects = {name for name in builtin_providers() if get_provider(name).launch(context(tmp_path)).connects_to_sidecar}
    # Aider gets no MCP server; the mock agent connects only when a task calls a tool.
    assert connects == {"claude_code", "codex", "gemini_cli", "opencode", "qwen_code"}
    ctx = context(tmp_path)
    ctx.env.pop("CAO_MCP_URL")
    assert not get_provider("claude_code").launch(ctx).connects_to_sidecar


def test_profile_options_carry_the_profile_settings() -> None:
    profile = Profile(
        name="p",
        provider="codex",
        permission_mode="plan",
        allowed_tools=["Read"],
        extra={"args": ["--x"], "approval_policy": "never"},
    )
    assert profile_options(profile) == {
        "args": ["--x"],
        "approval_policy": "never",
        "permission_mode": "plan",
        "allowed_tools": ["Read"],
    }
    opted_out = Profile(name="p", provider="codex", ask_for_team_tools=True)
    assert profile_options(opted_out) == {"ask_for_team_tools": True}


def test_workspace_is_searched_for_providers(trusted_tmp_path: Path) -> None:
    tmp_path = trusted_tmp_path  # the workspace, trusted
    directory = tmp_path / ".cao" / "providers"
    directory.mkdir(parents=True)
    (directory / "tiny.yaml").write_text("command: [tiny]\nexit_command: bye\n")
    assert get_provider("tiny", workspace=tmp_path).exit_command == "bye"
    assert os.path.basename(get_provider("tiny", workspace=tmp_path).source) == "tiny.yaml"


# ---- hostile profile values -------------------------------------------------------------------

HOSTILE_MODEL = "--yolo"
HOSTILE_TOOLS = ["--dangerously-skip-permissions", "-Z"]
HOSTILE_PROMPT = '--yolo\n"\n[evil]\nsandbox_mode = "danger-full-access"\n'


@pytest.mark.parametrize("name", sorted(set(builtin_providers()) - {"mock"}))
def test_a_value_beginning_with_a_dash_never_stands_alone_as_a_flag(tmp_path: Path, name: str) -> None:
    ctx = context(tmp_path, allowed_tools=HOSTILE_TOOLS, disallowed_tools=HOSTILE_TOOLS)
    ctx.model, ctx.system_prompt = HOSTILE_MODEL, HOSTILE_PROMPT
    argv = get_provider(name).launch(ctx).argv
    hostile = {HOSTILE_MODEL, HOSTILE_PROMPT, *HOSTILE_TOOLS}
    assert not hostile & set(argv), argv
    # ... and the orchestrator refuses them before any launch (profile validation does too).
    from cao_sidecar.providers.base import flag_like_value

    assert "model '--yolo'" in (flag_like_value(ctx) or "")
    ctx.model = "ok"
    assert "allowed_tools entry '--dangerously-skip-permissions'" in (flag_like_value(ctx) or "")


def test_codex_overrides_are_one_toml_key_each_whatever_the_values(tmp_path: Path) -> None:
    evil = 'x"\nsandbox_mode = "danger-full-access"\n["\\\x7f😀'
    servers = [
        McpServer("files", "stdio", command=evil, args=(evil, "--yolo"), env=(("A", evil),)),
        McpServer("web", "http", url="https://h/" + evil, headers=(("X-K", evil),)),
    ]
    ctx = context(tmp_path, mcp_servers=servers)
    ctx.system_prompt = evil
    argv = get_provider("codex").launch(ctx).argv
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    parsed = {}
    for override in overrides:
        table = tomllib.loads(override)  # the key=value codex reads: valid TOML, one top-level key
        assert len(table) == 1, override
        _merge(parsed, table)
    assert "sandbox_mode" not in parsed and "evil" not in parsed
    assert parsed["developer_instructions"] == evil
    files = parsed["mcp_servers"]["files"]
    assert files["command"] == evil and files["args"] == [evil, "--yolo"] and files["env"] == {"A": evil}
    assert parsed["mcp_servers"]["web"]["http_headers"] == {"X-K": evil}
    # A server name that is no TOML bare key could move the override to another key: refused.
    with pytest.raises(ValueError):
        get_provider("codex").launch(context(tmp_path, mcp_servers=[McpServer("a.b", "stdio", command="x")]))


@pytest.mark.parametrize("name", ["gemini_cli", "opencode", "claude_code", "copilot", "kiro_cli"])
def test_json_settings_carry_hostile_values_exactly(tmp_path: Path, name: str) -> None:
    evil = '"}, "evil": {"command": "sh"}, "x": {"a": "\n\\'
    servers = [McpServer("files", "stdio", command=evil, args=(evil,), env=(("A", evil),))]
    ctx = context(tmp_path, mcp_servers=servers)
    ctx.model = evil
    spec = get_provider(name).launch(ctx)
    written = list(ctx.agent_dir.parent.parent.rglob("*.json")) + list((tmp_path / "home").rglob("*.json"))
    texts = [json.loads(p.read_text()) for p in written]
    found = json.dumps(texts)
    assert '"evil"' not in [k for t in texts for k in _keys(t)]
    assert json.dumps(evil) in found  # the value is there, as one JSON string
    assert spec.argv


def _merge(into: dict, table: dict) -> None:
    for key, value in table.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return list(value) + [k2 for v in value.values() for k2 in _keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_user_provider_templates_attach_a_dash_value_to_its_option(tmp_path: Path) -> None:
    from cao_sidecar.providers.patterns import fill_template

    assert fill_template(["--model", "{model}"], "{model}", "--yolo") == ["--model=--yolo"]
    assert fill_template(["--model", "{model}"], "{model}", "gpt") == ["--model", "gpt"]
    with pytest.raises(ValueError):
        fill_template(["-m", "{model}"], "{model}", "--yolo")
    with pytest.raises(ValueError):
        fill_template(["{model}"], "{model}", "-x")
