"""Qwen Code and Grok CLI providers without their CLIs: launch (argv, settings file), hooks, the
questions they ask (screens captured from the real CLIs, tests/fixtures/screens)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import get_provider
from test_providers_launch import TOKEN, context

SCREENS = Path(__file__).parent / "fixtures" / "screens"


def qwen_settings(tmp_path: Path, **options) -> tuple[list[str], dict]:
    spec = get_provider("qwen_code").launch(context(tmp_path, **options))
    path = Path(spec.env["QWEN_CODE_SYSTEM_SETTINGS_PATH"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return spec.argv, json.loads(path.read_text())


def test_qwen_code_launch_wires_our_server_trusted_hooks_and_no_auto_update(tmp_path: Path) -> None:
    argv, settings = qwen_settings(tmp_path, allowed_tools=["read_file"], disallowed_tools="web_fetch")
    assert argv[1:] == [
        "--model=model-x",
        "--allowed-tools=read_file",
        "--exclude-tools=web_fetch",
        "--append-system-prompt=You are a careful reviewer.\nSecond line.",
    ]
    assert TOKEN not in " ".join(argv)  # the credential stays in the 0600 settings file
    cao = settings["mcpServers"]["cao"]
    assert cao == {"httpUrl": "http://127.0.0.1:4567/mcp", "headers": {"Authorization": f"Bearer {TOKEN}"}, "trust": True}
    assert settings["general"]["enableAutoUpdate"] is False
    assert sorted(settings["hooks"]) == ["PermissionRequest", "Stop", "UserPromptSubmit"]
    command = settings["hooks"]["Stop"][0]["hooks"][0]["command"]
    assert "hook_relay.py" in command and "/hooks/qwen_code" in command and TOKEN not in command
    spec = get_provider("qwen_code").launch(context(tmp_path))
    assert spec.events and spec.connects_to_sidecar


def test_qwen_code_team_tools_ask_when_the_profile_opts_out(tmp_path: Path) -> None:
    assert qwen_settings(tmp_path, ask_for_team_tools=True)[1]["mcpServers"]["cao"]["trust"] is False
    argv, _ = qwen_settings(tmp_path, permission_mode="bypassPermissions")
    assert "--approval-mode=yolo" in argv


def test_qwen_code_hooks_give_statuses_and_the_exact_answer() -> None:
    qwen = get_provider("qwen_code")
    assert qwen.hook_event("hook", {"hook_event_name": "UserPromptSubmit", "prompt": "x"}, "x").status is AgentStatus.PROCESSING
    assert qwen.hook_event("hook", {"hook_event_name": "PermissionRequest"}, None).status is AgentStatus.WAITING_USER_ANSWER
    stop = qwen.hook_event("hook", {"hook_event_name": "Stop", "last_assistant_message": "**exact**"}, None)
    assert stop.status is AgentStatus.COMPLETED and stop.answer == "**exact**"
    assert qwen.hook_event("hook", {"hook_event_name": "Stop", "last_assistant_message": 3}, None).answer is None
    assert qwen.hook_event("hook", ["not", "a", "dict"], None) is None
    assert qwen.hook_event("hook", {"hook_event_name": "SessionStart"}, None) is None


def test_qwen_code_confirmation_and_login_screens() -> None:
    qwen = get_provider("qwen_code")
    for version, choices in (("0.15.10", 4), ("0.24.4", 3)):
        prompt = qwen.read_prompt((SCREENS / f"qwen_code-real-waiting-shell-{version}.txt").read_text())
        assert prompt.text == "Allow execution of: 'touch'?" and len(prompt.choices) == choices, prompt
        assert prompt.choices[0].label == "Yes, allow once" and prompt.choices[0].key == "1"
        assert prompt.choices[-1].label == "No, suggest changes"
        auth = qwen.startup_action((SCREENS / f"qwen_code-real-waiting-auth-{version}.txt").read_text(), {})
        assert auth is not None and auth.fail and "OPENAI_API_KEY" in auth.fail
    answer = qwen.extract_answer((SCREENS / "qwen_code-real-completed-after-tool-0.15.10.txt").read_text())
    assert answer == "The answer is 42."


def test_grok_cli_launch_and_its_menu_without_digits(tmp_path: Path) -> None:
    grok = get_provider("grok_cli")
    spec = grok.launch(context(tmp_path, args=["--max-tool-rounds", "5"]))
    assert spec.argv[1:] == ["--model=model-x", "--max-tool-rounds", "5"] and not spec.connects_to_sidecar
    prompt = grok.read_prompt((SCREENS / "grok_cli-real-waiting-shell-0.0.34.txt").read_text())
    assert prompt.text == "Do you want to proceed with this operation?"
    assert [(c.label, c.key) for c in prompt.choices] == [("Yes", "Enter"), ("No", "Escape")]
    assert "touch /tmp/project-xy/gws/made-by-grok" in prompt.detail
    screen = (SCREENS / "grok_cli-real-completed-after-tool-0.0.34.txt").read_text()
    assert grok.extract_answer(screen) == "The answer is 42."
    assert grok.cli.login_state({"GROK_API_KEY": "k", "HOME": str(tmp_path)}) is True
