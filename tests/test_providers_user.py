"""User-defined providers: configuration files (parsing, errors, `extends`), and end to end through
a real sidecar: a provider written only in YAML drives tests/fixtures/scripted_cli.py (startup
dialog answered, answers, multi-line answers, errors, a question, the exit command), and a
built-in extended by configuration (`extends: mock`) runs the mock agent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from pytest_lsp import LanguageClient

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import builtin_providers, get_provider, user_providers
from cao_sidecar.providers.user import ProviderConfigError, load_config
from conftest import initialize, kill_tmux, request
from fixtures.scripted_cli import provider_yaml
from test_editor_common import error_data, new_sidecar, rpc_error, terminate_all

S = AgentStatus
SCRIPT = Path(__file__).parent / "fixtures" / "scripted_cli.py"

SCRIPTED_YAML = provider_yaml([sys.executable, str(SCRIPT)])

MOCK_EXTENDED_YAML = """
extends: mock
status:
  - waiting_user_answer: 'NEEDS A HUMAN'
    name: the words NEEDS A HUMAN at the bottom
"""

PROFILES = {
    "scripted_dev.md": "---\nname: scripted_dev\ndescription: scripted CLI\nprovider: scripted\n---\nYou script.\n",
    "mock_custom.md": "---\nname: mock_custom\ndescription: mock, extended\nprovider: mock_plus\n---\nYou mock.\n",
}


def _write_providers(workspace: Path) -> None:
    directory = workspace / ".cao" / "providers"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "scripted.yaml").write_text(SCRIPTED_YAML)
    (directory / "mock_plus.yaml").write_text(MOCK_EXTENDED_YAML)
    (directory / "broken.yaml").write_text("command: [x]\nstatus:\n  - idle: '(unclosed'\n")


CONFIG, SIDECAR = new_sidecar("userprov", workspace_profiles=PROFILES)
_write_providers(SIDECAR.workspace)


# ---- configuration ------------------------------------------------------------------------------


def test_scripted_config_reads_screens(tmp_path: Path) -> None:
    path = tmp_path / "scripted.yaml"
    path.write_text(SCRIPTED_YAML)
    provider = load_config(path, builtin_providers())
    assert provider.name == "scripted"
    screen = "Trust this folder? (y/n) y\nscripted ready\nscripted> say hi\n= hi\n\nscripted>"
    assert provider.classify_rule(screen).status is S.COMPLETED
    assert provider.extract_answer(screen) == "hi"
    assert provider.classify("scripted ready\nscripted> say hi\nthinking...") is S.PROCESSING
    assert provider.classify("scripted> fail\nError: something failed\n\nscripted>") is S.ERROR
    assert provider.classify("scripted> fail\nError: x\n\nscripted> say a\n= a\n\nscripted>") is S.COMPLETED
    assert provider.classify("scripted> ask ok? (y/n)") is S.WAITING_USER_ANSWER
    action = provider.startup_action("Trust this folder? (y/n)", {})
    assert action is not None and action.keys == ("y", "Enter")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("status: []\n", "give 'command'"),
        ("command: x\nbogus: 1\n", "unknown fields: bogus"),
        ("command: x\nstatus:\n  - idle: '(unclosed'\n", "bad regular expression"),
        ("command: x\nstatus:\n  - sleepy: 'x'\n", "name exactly one status"),
        ("command: x\nstatus:\n  - idle: 'x'\n    scope: top\n", "'scope' must be one of"),
        ("extends: nothing_like_it\n", "unknown built-in provider"),
        ("command: x\nanswer: {begin: x}\n", "answer: unknown fields"),
        ("- a list\n", "expected a mapping"),
        ("command: [x\n", "not valid YAML"),
    ],
)
def test_config_errors_are_readable(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ProviderConfigError, match=".*") as info:
        load_config(path, builtin_providers())
    assert message in str(info.value)


def test_workspace_file_replaces_a_builtin_and_errors_are_listed(trusted_tmp_path: Path) -> None:
    tmp_path = trusted_tmp_path  # the workspace, trusted
    directory = tmp_path / ".cao" / "providers"
    directory.mkdir(parents=True)
    (directory / "claude_code.yaml").write_text(
        "extends: claude_code\nstatus:\n  - processing: 'Brewing…'\n    name: new spinner word\n"
    )
    (directory / "broken.json").write_text("{not json")
    provider = get_provider("claude_code", workspace=tmp_path)
    assert provider.classify_rule("x\nBrewing… (3s)\n").rule == "claude_code (user rule): new spinner word"
    # Everything else still comes from the built-in, events included.
    real = (Path(__file__).parent / "fixtures" / "screens" / "claude_code-real-completed.txt").read_text()
    assert provider.classify_rule(real).rule.startswith("claude_code: empty prompt")
    assert provider.hook_event("claude_code", {"hook_event_name": "Stop", "last_assistant_message": "x"}, None).answer == "x"
    assert provider.event_statuses == builtin_providers()["claude_code"].event_statuses
    found, errors = user_providers(tmp_path)
    assert "claude_code" in found
    assert any(p.name == "broken.json" and "not valid JSON" in e for p, e in errors.items())


def test_explain_names_user_rules(trusted_tmp_path: Path) -> None:
    tmp_path = trusted_tmp_path  # the workspace, trusted
    directory = tmp_path / ".cao" / "providers"
    directory.mkdir(parents=True)
    (directory / "mock_plus.yaml").write_text(MOCK_EXTENDED_YAML)
    screen = tmp_path / "screen.txt"
    screen.write_text("cao mock agent · profile x · ready\n\n› hi\nNEEDS A HUMAN\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cao_sidecar",
            "explain",
            "--provider",
            "mock_plus",
            "--json",
            "--workspace",
            str(tmp_path),
            str(screen),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(result.stdout) == {
        "status": "waiting_user_answer",
        "rule": "mock_plus (user rule): the words NEEDS A HUMAN at the bottom",
        "answer": None,
    }


# ---- end to end ---------------------------------------------------------------------------------


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: LanguageClient):
    await initialize(lsp_client, SIDECAR)
    yield
    await terminate_all(lsp_client)
    await lsp_client.shutdown_session()
    kill_tmux(SIDECAR.socket)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(90)
async def test_scripted_cli_end_to_end(client: LanguageClient) -> None:
    spawned = await request(client, "cao/spawn", {"profile": "scripted_dev", "name": "scripted"}, timeout=40)
    tid = spawned["terminalId"]
    # The trust question was answered with the configured keys; the agent is ready.
    assert spawned["status"] in ("idle", "completed")
    statuses = SIDECAR.statuses(tid)
    assert "waiting_user_answer" in statuses, statuses

    result = await request(client, "cao/handoff", {"terminalId": tid, "message": "say hello, world > scripted>"})
    assert result["output"] == "hello, world > scripted>"
    result = await request(client, "cao/handoff", {"terminalId": tid, "message": "lines first|second|  third"})
    assert result["output"] == "first\nsecond\n  third"

    # A question: the agent waits for the user.
    await request(client, "cao/sendMessage", {"terminalId": tid, "message": "ask Go ahead?"})
    await SIDECAR.wait_for(
        "cao/agentStatus",
        lambda p: (
            p["terminalId"] == tid
            and p["status"] == "waiting_user_answer"
            and SIDECAR.statuses(tid).count("waiting_user_answer") >= 2
        ),
    )
    SIDECAR.tmux("send-keys", "-t", _pane(tid), "y", "Enter")
    await SIDECAR.wait_for(
        "cao/agentStatus",
        lambda p: p["terminalId"] == tid and p["status"] == "completed" and SIDECAR.statuses(tid)[-1] == "completed",
    )
    output = await request(client, "cao/getOutput", {"terminalId": tid, "mode": "full"})
    assert "= answered: y" in output["output"]

    # The exit command ends the CLI itself: the process is gone before the window is removed.
    pane = _pane(tid)
    await request(client, "cao/terminate", {"terminalId": tid})
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "exited")
    assert pane not in SIDECAR.tmux("list-panes", "-a", "-F", "#{pane_id}").split()

    # An error ends the turn as an agent error (a new worker, torn down afterwards).
    exc = await rpc_error(request(client, "cao/handoff", {"profile": "scripted_dev", "message": "fail"}, timeout=40))
    assert exc.code == -31005, exc
    assert "Error: something failed" in error_data(exc)["screenTail"]


def _pane(terminal_id: str) -> str:
    for line in SIDECAR.tmux("list-panes", "-a", "-F", "#{pane_id} #{window_name}").splitlines():
        pane, _, window = line.partition(" ")
        if window.endswith(terminal_id) or window == "scripted":
            return pane
    raise AssertionError(f"no pane for {terminal_id}")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(60)
async def test_builtin_extended_by_configuration(client: LanguageClient) -> None:
    result = await request(client, "cao/handoff", {"profile": "mock_custom", "message": "echo extended works"})
    assert result["output"] == "extended works"
