"""Every provider on its captured screens: status, deciding rule, extracted answer, startup dialog
answers, and `cao-sidecar explain` (text and --json) on them.

Fixtures: tests/fixtures/screens/<provider>-real-*.txt are captures of the real CLIs,
<provider>-built-*.txt are built from provider-notes.md or edited captures (traps); see the
README there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from cao_sidecar.core.agent import Turn
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import builtin_providers, get_provider
from cao_sidecar.providers.explain import explain
from cao_sidecar.providers.screen import strip_ansi

SCREENS = Path(__file__).parent / "fixtures" / "screens"
S = AgentStatus
ANY = object()

# fixture → (status, answer, words the deciding rule must contain)
CASES: dict[str, tuple[AgentStatus, object, str]] = {
    # ---- Claude Code (2.1.197 real unless "built")
    "claude_code-real-trust": (S.WAITING_USER_ANSWER, None, "trust"),
    "claude_code-real-idle": (S.IDLE, None, "no input yet"),
    "claude_code-real-idle-2.1.330": (S.IDLE, None, "no input yet"),
    "claude_code-real-typed-paste": (S.IDLE, None, "typed text"),
    "claude_code-real-typed-exit": (S.IDLE, ANY, "typed text"),
    "claude_code-real-processing": (S.PROCESSING, None, "esc to interrupt"),
    "claude_code-real-processing-tip": (S.PROCESSING, None, "esc to interrupt"),
    "claude_code-real-completed": (S.COMPLETED, "hello from claude ❯ with a prompt char", "answer"),
    "claude_code-real-completed-after-tool": (S.COMPLETED, "The answer is 42.", "answer"),
    "claude_code-real-waiting-permission": (S.WAITING_USER_ANSWER, None, "dialog"),
    "claude_code-real-exited": (S.EXITED, ANY, "dead"),
    "claude_code-real-error-no-service": (S.ERROR, None, "Anthropic"),
    "claude_code-real-error-not-logged-in": (S.ERROR, None, "error"),
    "claude_code-real-error-tall-paste": (S.ERROR, None, "scrolled away"),
    "claude_code-built-completed-traps": (
        S.COMPLETED,
        "Here is the result:\n❯ not a prompt, part of the answer\n● not a new answer either\n> quoted\n\nlast paragraph",
        "answer",
    ),
    "claude_code-built-half-drawn": (S.PROCESSING, ANY, "half way"),
    "claude_code-built-idle-effort-footer": (S.IDLE, None, "no input yet"),
    "claude_code-built-interrupted": (S.IDLE, None, "no answer"),
    "claude_code-built-bypass-consent": (S.WAITING_USER_ANSWER, None, "bypass"),
    "claude_code-built-error-api": (S.ERROR, None, "error"),
    "claude_code-real-completed-2.1.332": (S.COMPLETED, "hello from claude 332", "summary"),
    "claude_code-built-completed-footer-esc-2.1.332": (S.COMPLETED, "hello from claude 332", "summary"),
    "claude_code-real-error-api-401-2.1.332": (S.ERROR, ANY, "API error"),
    "claude_code-real-processing-retrying-2.1.332": (S.PROCESSING, None, "esc to interrupt"),
    "claude_code-ext-completed-feedback-survey": (
        S.COMPLETED,
        "Pedí la confirmación a ambos y espero sus respuestas en el siguiente turno.\n\n"
        "CAO-TURN-RECEIPT-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "summary",
    ),
    "claude_code-ext-processing-streaming-2.1.288": (S.PROCESSING, ANY, "no turn summary"),
    "claude_code-ext-processing-api-retry-2.1.288": (S.PROCESSING, None, "retried"),
    # ---- Codex 0.169.0
    "codex-real-login": (S.WAITING_USER_ANSWER, None, "login"),
    "codex-real-login-api-key": (S.WAITING_USER_ANSWER, None, "login"),
    "codex-real-trust": (S.WAITING_USER_ANSWER, None, "trust"),
    "codex-real-idle": (S.IDLE, None, "no input yet"),
    "codex-real-processing": (S.PROCESSING, None, "esc to interrupt"),
    "codex-real-processing-reconnecting": (S.PROCESSING, None, "esc to interrupt"),
    "codex-real-completed": (S.COMPLETED, "hello from codex > with › chars", "Worked for"),
    "codex-real-completed-no-summary": (S.COMPLETED, "hello from codex > with › chars", "answer"),
    "codex-real-exited": (S.EXITED, ANY, "dead"),
    "codex-built-completed-traps": (
        S.COMPLETED,
        "Done: the answer mentions › a prompt\nand • a bullet, and ■ a square",
        "Worked for",
    ),
    "codex-built-waiting-approval": (S.WAITING_USER_ANSWER, None, "approval"),
    "codex-real-waiting-approval": (S.WAITING_USER_ANSWER, None, "approval"),
    "codex-built-error": (S.ERROR, None, "error"),
    "codex-built-interrupted": (S.IDLE, None, "no answer"),
    "codex-real-completed-0.171.0": (S.COMPLETED, "hello from codex > with › chars", "Worked for"),
    "codex-real-completed-0.150.0": (S.COMPLETED, "hello from codex > with › chars", "answer"),
    "codex-ext-error-usage-limit-prompt": (S.ERROR, None, "error notice"),
    "codex-ext-error-usage-limit": (S.ERROR, None, "error notice"),
    # ---- Gemini CLI 0.61.0
    "gemini_cli-real-trust": (S.WAITING_USER_ANSWER, None, "trust"),
    "gemini_cli-real-auth-existing-key": (S.WAITING_USER_ANSWER, None, "API key"),
    "gemini_cli-real-auth-key-prefilled": (S.WAITING_USER_ANSWER, None, "pre-filled API key"),
    "gemini_cli-real-trust-included-dir": (S.WAITING_USER_ANSWER, None, "included directory"),
    "gemini_cli-real-idle": (S.IDLE, None, "no input yet"),
    "gemini_cli-real-processing": (S.PROCESSING, None, "esc to cancel"),
    "gemini_cli-built-completed": (S.COMPLETED, "hello from gemini > ✦ chars\nsecond line of the answer", "✦"),
    "gemini_cli-built-completed-stale-spinner": (S.COMPLETED, "second answer", "✦"),
    "gemini_cli-built-waiting-tool": (S.WAITING_USER_ANSWER, None, "confirmation"),
    "gemini_cli-built-error": (S.ERROR, None, "error"),
    "gemini_cli-ext-completed-yolo": (S.COMPLETED, "Hi! How can I help you today?", "✦"),
    "gemini_cli-real-completed-0.61.0": (S.COMPLETED, "hello from gemini > with ✦ chars", "✦"),
    "gemini_cli-real-completed-second-0.61.0": (S.COMPLETED, "second answer", "✦"),
    "gemini_cli-real-error-401-0.61.0": (S.ERROR, None, "error"),
    # ---- OpenCode 1.18.33
    "opencode-real-idle-home": (S.IDLE, None, "no input yet"),
    "opencode-real-processing": (S.PROCESSING, None, "esc interrupt"),
    "opencode-real-completed": (S.COMPLETED, "hello from opencode", "marker"),
    "opencode-real-completed-second": (S.COMPLETED, "second", "marker"),
    "opencode-built-waiting-permission": (S.WAITING_USER_ANSWER, ANY, "permission"),
    "opencode-real-completed-1.18.33": (S.COMPLETED, "hello from opencode", "marker"),
    "opencode-real-processing-esc-again-1.18.33": (S.PROCESSING, None, "esc interrupt"),
    "opencode-ext-idle-after-reject-1.14.19": (S.IDLE, None, "cut short"),
    "opencode-ext-error-mini-2.0.18": (S.ERROR, None, "mini"),
    # ---- Aider 0.86.2
    "aider-real-startup-question": (S.WAITING_USER_ANSWER, None, "(Y)es/(N)o"),
    "aider-real-idle": (S.IDLE, None, "no input yet"),
    "aider-real-submitted": (S.IDLE, None, "typed text"),
    # The same text, three moments: pasted (cursor on the input row, 28,10), taken with the spinner
    # cleared and the answer not drawn yet (cursor on the blank row below, 0,12), spinner.
    "aider-real-pasted": (S.IDLE, None, "typed text"),
    "aider-real-answer-pending": (S.IDLE, None, "typed text"),
    "aider-real-processing": (S.PROCESSING, None, "spinner"),
    "aider-real-completed": (S.COMPLETED, "hello from aider > with prompt", "Tokens"),
    "aider-built-completed-multiline": (
        S.COMPLETED,
        "Here is how:\n> this line looks like a prompt but is part of the answer\n\n- step one",
        "Tokens",
    ),
    # the screen of a real run with a read-only file in the chat (--read), retyped from a test log
    "aider-built-completed-readonly-file": (S.COMPLETED, "aider > answer", "Tokens"),
    "aider-built-error": (S.ERROR, ANY, "error"),
    "aider-built-waiting-edit": (S.WAITING_USER_ANSWER, ANY, "(Y)es/(N)o"),
    "aider-built-processing": (S.PROCESSING, ANY, "no prompt yet"),
    # ---- Kiro CLI / Amazon Q (built)
    "kiro_cli-built-starting": (S.PROCESSING, None, "busy"),
    "kiro_cli-built-idle": (S.IDLE, None, "prompt"),
    "kiro_cli-built-processing": (S.PROCESSING, None, "busy"),
    "kiro_cli-built-waiting": (S.WAITING_USER_ANSWER, None, "[y/n/t]"),
    "kiro_cli-built-completed": (
        S.COMPLETED,
        "I deleted the build/ directory.\nIt held 3 files; > and λ here are part of the answer.",
        "answer",
    ),
    "kiro_cli-built-error": (S.ERROR, None, "error"),
    "kiro_cli-ext-idle-classic-placeholder-2.19.0": (S.IDLE, None, "placeholder"),
    "kiro_cli-ext-completed-tui-2.25-second-turn": (S.COMPLETED, "SECOND42", "Credits"),
    "kiro_cli-ext-completed-classic-agent-prompt": (S.COMPLETED, ANY, "answer"),
    "kiro_cli-ext-error-tui-usage-limit": (S.ERROR, None, "error"),
    "q_cli-built-idle": (S.IDLE, None, "prompt"),
    "q_cli-built-completed": (S.COMPLETED, "6 × 7 = 42.", "answer"),
    "q_cli-built-error": (S.ERROR, None, "error"),
    # ---- GitHub Copilot CLI (built)
    "copilot-built-trust": (S.WAITING_USER_ANSWER, None, "choices"),
    "copilot-built-idle": (S.IDLE, None, "prompt"),
    "copilot-built-processing": (S.PROCESSING, None, "esc to cancel"),
    "copilot-built-completed": (S.COMPLETED, "There are three files: a.py, b.py and ❯ notes.md.\nNothing else.", "answer"),
    "copilot-built-waiting": (S.WAITING_USER_ANSWER, ANY, "choices"),
    "copilot-real-waiting-trust-1.0.102": (S.WAITING_USER_ANSWER, None, "choices"),
    "copilot-real-waiting-login-1.0.102": (S.WAITING_USER_ANSWER, None, "/login"),
    # ---- Cursor (built)
    "cursor-built-idle": (S.IDLE, None, "prompt"),
    "cursor-built-processing": (S.PROCESSING, None, "ctrl+c to stop"),
    "cursor-built-completed": (
        S.COMPLETED,
        "There are three files: a.py, b.py and notes.md.\n→ is only an arrow here.",
        "answer",
    ),
    "cursor-built-waiting": (S.WAITING_USER_ANSWER, ANY, "choices"),
    "cursor-ext-completed-welcome": (
        S.COMPLETED,
        "Here is a comprehensive response from the Cursor agent.\n\nIt contains multiple paragraphs "
        "explaining the implementation\nchoices and trade-offs involved in the refactor.",
        "answer",
    ),
    "cursor-ext-completed-v2026.06.15": (S.COMPLETED, None, "Add a follow-up"),
    "cursor-ext-processing-v2026.06.15": (S.PROCESSING, None, "ctrl+c to stop"),
    # ---- Qwen Code (0.15.10, 0.24.4 real) and Grok CLI (0.0.34 real)
    "qwen_code-real-idle-0.15.10": (S.IDLE, None, "no input yet"),
    "qwen_code-real-idle-0.24.4": (S.IDLE, None, "no input yet"),
    "qwen_code-real-processing-0.15.10": (S.PROCESSING, None, "esc to cancel"),
    "qwen_code-real-processing-0.24.4": (S.PROCESSING, None, "esc to cancel"),
    "qwen_code-real-completed-0.15.10": (S.COMPLETED, "qwen › answer", "answer"),
    "qwen_code-real-completed-0.24.4": (S.COMPLETED, "qwen › answer", "answer"),
    "qwen_code-real-completed-after-tool-0.24.4": (S.COMPLETED, "The answer is 42.", "answer"),
    "qwen_code-real-waiting-shell-0.15.10": (S.WAITING_USER_ANSWER, None, "confirmation"),
    "qwen_code-real-waiting-auth-0.24.4": (S.WAITING_USER_ANSWER, None, "login"),
    "qwen_code-real-error-connection-0.24.4": (S.ERROR, None, "error"),
    "qwen_code-built-completed-traps": (
        S.COMPLETED,
        "first line\n> quoted, not an input\n───────────────────────────────\nlast line",
        "answer",
    ),
    "grok_cli-real-idle-0.0.34": (S.IDLE, None, "no input yet"),
    "grok_cli-real-processing-0.0.34": (S.PROCESSING, None, "esc to interrupt"),
    "grok_cli-real-completed-0.0.34": (S.COMPLETED, "grok › answer", "answer"),
    "grok_cli-real-waiting-shell-0.0.34": (S.WAITING_USER_ANSWER, None, "confirmation"),
    "grok_cli-real-error-connection-0.0.34": (S.ERROR, None, "error"),
    "grok_cli-built-completed-traps": (S.COMPLETED, "first line\n│ ❯ quoted\nlast line", "answer"),
    "grok_cli-built-completed-parenthesis": (S.COMPLETED, "Command executed successfully (no output)", "answer"),
}

# Startup dialogs the core answers (keys) or gives up on (fail).
DIALOGS: dict[str, tuple[str, Optional[tuple[str, ...]], bool]] = {
    "claude_code-real-trust": ("claude_code", ("Enter",), False),
    "claude_code-built-bypass-consent": ("claude_code", None, True),  # not asked for: refuse
    "codex-real-trust": ("codex", ("1", "Enter"), False),
    "codex-real-login": ("codex", None, True),
    "codex-real-login-api-key": ("codex", None, True),
    "gemini_cli-real-trust": ("gemini_cli", ("Enter",), False),
    "gemini_cli-real-auth-existing-key": ("gemini_cli", ("Enter",), False),
    "gemini_cli-real-auth-key-prefilled": ("gemini_cli", ("Enter",), False),
    "gemini_cli-real-trust-included-dir": ("gemini_cli", ("Enter",), False),
    "aider-real-startup-question": ("aider", ("n", "Enter"), False),
    "copilot-built-trust": ("copilot", ("Enter",), False),
    "copilot-real-waiting-trust-1.0.102": ("copilot", ("Enter",), False),
    "copilot-real-waiting-login-1.0.102": ("copilot", None, True),
}


def provider_of(name: str):
    return get_provider(name.split("-", 1)[0])


def screen(name: str) -> str:
    return (SCREENS / f"{name}.txt").read_text(encoding="utf-8")


def test_every_case_has_a_fixture() -> None:
    # Every fixture's status is in corpus.tsv (tests/test_screen_corpus.py); these cases add the
    # answer and the deciding rule.
    fixtures = {p.stem for p in SCREENS.glob("*.txt") if not p.stem.startswith("mock-")}
    assert set(CASES) <= fixtures


def test_every_builtin_provider_has_fixtures() -> None:
    names = {n.split("-", 1)[0] for n in CASES}
    assert names == set(builtin_providers()) - {"mock"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_classify(name: str) -> None:
    status, _answer, words = CASES[name]
    result = provider_of(name).classify_rule(screen(name))
    assert result.status is status, result.rule
    assert words.lower() in result.rule.lower()
    assert provider_of(name).classify(screen(name)) is status


@pytest.mark.parametrize("name", sorted(CASES))
def test_extract_answer(name: str) -> None:
    expected = CASES[name][1]
    if expected is ANY:
        return
    assert provider_of(name).extract_answer(screen(name)) == expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_classification_survives_ansi_colours(name: str) -> None:
    """The same screen captured with escapes (`capture-pane -e`) reads the same."""
    plain = screen(name)
    coloured = "\n".join(
        f"\x1b[38;5;{i % 200}m{line}\x1b[0m\x1b]8;;http://x\x07\x1b]8;;\x07" for i, line in enumerate(plain.split("\n"))
    )
    assert strip_ansi(coloured) == plain
    provider = provider_of(name)
    assert explain(provider, coloured) == explain(provider, plain)


@pytest.mark.parametrize("name", sorted(DIALOGS))
def test_startup_dialog_action(name: str) -> None:
    provider_name, keys, fails = DIALOGS[name]
    action = get_provider(provider_name).startup_action(screen(name), {})
    assert action is not None
    if fails:
        assert action.fail
    else:
        assert action.keys == keys and action.fail is None


def test_bypass_consent_is_accepted_only_when_asked_for() -> None:
    provider = get_provider("claude_code")
    action = provider.startup_action(screen("claude_code-built-bypass-consent"), {"permission_mode": "bypassPermissions"})
    assert action is not None and action.keys == ("2",) and action.fail is None


@pytest.mark.parametrize(
    "name", ["claude_code-real-idle", "codex-real-completed", "gemini_cli-real-processing", "aider-real-completed"]
)
def test_no_startup_action_once_a_dialog_is_history(name: str) -> None:
    # The trust dialog's text may still be in the scrollback above the prompt.
    assert provider_of(name).startup_action(screen(name), {}) is None


def test_aider_reads_its_input_line() -> None:
    aider = get_provider("aider")
    assert aider.typed_input(screen("aider-real-pasted")) == "please say: aider > answer"
    assert aider.typed_input(screen("aider-real-answer-pending")) == "pause: 2 then please say: aider > answer"
    assert aider.typed_input(screen("aider-real-submitted")) == "please say: hello from aider > with prompt"
    for name in ("aider-real-idle", "aider-real-processing", "aider-real-completed", "aider-built-waiting-edit"):
        assert aider.typed_input(screen(name)) is None, name
    assert get_provider("codex").typed_input(screen("codex-real-idle")) is None  # a provider that does not say


async def test_a_turn_never_ends_on_its_own_input_line() -> None:
    """The real sequence of one Aider turn: the input line alone (taken, nothing drawn), the
    spinner, the input line alone again (spinner cleared, answer not streamed yet), the answer."""
    aider = get_provider("aider")
    turn = Turn(text="pause: 2 then please say: aider > answer", screen_before=screen("aider-real-idle"))

    def observe(text: str):
        status = aider.classify(text)
        return turn.observe(status, text, status is S.IDLE and turn.shows_input(aider.typed_input(text)))

    assert observe(screen("aider-real-answer-pending")) is None
    assert observe(screen("aider-real-processing")) is None and turn.seen_busy
    assert observe(screen("aider-real-answer-pending")) is None  # idle after busy, but not the end
    assert observe(screen("aider-real-idle")).status is S.COMPLETED  # an empty prompt is (interrupted)
    # Only this turn's text counts; spacing may differ, a multi-line text shows its last line.
    assert not turn.shows_input("please say: aider > answer") and not turn.shows_input("  ") and not turn.shows_input(None)
    assert turn.shows_input("pause: 2  then please say: aider > answer ")
    assert Turn(text="first line\nsecond  line", screen_before="").shows_input("second line")


def test_shell_prompt_at_the_bottom_is_exited() -> None:
    text = screen("aider-real-completed") + "\nuser@host:~/work$ "
    result = get_provider("aider").classify_rule(text)
    assert result.status is S.EXITED and "shell" in result.rule


def test_empty_screen_is_starting() -> None:
    for provider in builtin_providers().values():
        assert provider.classify("\n\n  \n") in (S.STARTING,)


# ---- cao-sidecar explain ------------------------------------------------------------------------


def run_explain(*args: str, stdin: Optional[bytes] = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "cao_sidecar", "explain", *args], capture_output=True, input=stdin, timeout=30)


def test_explain_json_is_exact(tmp_path: Path) -> None:
    name = "claude_code-real-completed"
    coloured = tmp_path / "screen.txt"
    coloured.write_text("\x1b[1m" + screen(name).replace("●", "\x1b[38;5;15m●\x1b[0m") + "\x1b[0m\r\n")
    result = run_explain("--provider", "claude_code", "--json", str(coloured))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == ["status", "rule", "answer"]
    assert data["status"] == "completed"
    assert data["answer"] == "hello from claude ❯ with a prompt char"
    assert data["rule"] == get_provider("claude_code").classify_rule(screen(name)).rule


def test_explain_text_and_stdin() -> None:
    result = run_explain("--provider", "codex", "-", stdin=screen("codex-real-processing").encode())
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "status:   processing" in out and "esc to interrupt" in out and "answer:   (none)" in out


def test_explain_null_answer_and_errors(tmp_path: Path) -> None:
    data = json.loads(run_explain("--provider", "gemini_cli", "--json", str(SCREENS / "gemini_cli-real-idle.txt")).stdout)
    assert data == {"status": "idle", "rule": "input prompt, no input yet", "answer": None}
    unknown = run_explain("--provider", "nope", str(SCREENS / "gemini_cli-real-idle.txt"))
    assert unknown.returncode == 2 and b"unknown provider 'nope'" in unknown.stderr
    missing = run_explain("--provider", "codex", str(tmp_path / "missing.txt"))
    assert missing.returncode == 2 and b"cannot read" in missing.stderr


def test_explain_does_not_load_the_server() -> None:
    code = (
        "import sys; from cao_sidecar.cli import main; "
        f"main(['explain', '--provider', 'aider', '--json', {str(SCREENS / 'aider-real-idle.txt')!r}]); "
        "heavy = [m for m in ('pygls', 'mcp', 'uvicorn', 'libtmux') if m in sys.modules]; "
        "sys.stderr.write(repr(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stderr.strip() == "[]"
