"""Reading an agent's question and its choices from its screen (providers/prompt.py, and the mock
provider's own reader), on captured and built screens from tests/fixtures/screens."""

from __future__ import annotations

from pathlib import Path

import pytest

from cao_sidecar.providers import get_provider
from cao_sidecar.providers.prompt import Choice, ScreenPrompt, match_choice, read_prompt

SCREENS = Path(__file__).parent / "fixtures" / "screens"


def keys(*labels_keys: tuple[str, str]) -> tuple[Choice, ...]:
    return tuple(Choice(label, key=key) for label, key in labels_keys)


def texts(*labels_texts: tuple[str, str]) -> tuple[Choice, ...]:
    return tuple(Choice(label, text=text) for label, text in labels_texts)


CASES = {
    # Real captures.
    "claude_code-real-waiting-permission.txt": (
        "Do you want to proceed?",
        keys(("Yes", "1"), ("Yes, and always allow access to wclaude/ from this project", "2"), ("No", "3")),
        "touch /tmp/cap/wclaude/made-by-claude",
    ),
    "claude_code-real-trust.txt": (
        "Quick safety check: Is this a project you created or one you trust?",
        keys(("Yes, I trust this folder", "1"), ("No, exit", "2")),
        "/tmp/cap/wclaude",
    ),
    "codex-real-trust.txt": (
        "Trust this folder?",
        keys(("Trust and continue", "1"), ("Back to Agent Command Center", "2")),
        "/tmp/cap/wgit",
    ),
    "gemini_cli-real-trust.txt": (
        "Do you trust the files in this folder?",
        keys(("Trust folder (wgemini)", "1"), ("Trust parent folder (cap)", "2"), ("Don't trust", "3")),
        "",
    ),
    "codex-real-waiting-approval.txt": (
        "Would you like to run the following command?",
        keys(
            ("Yes, proceed", "1"),
            (
                "Yes, and don't ask again for commands that start with "
                "`touch /work/main/.pytest_cache/tmpu9mka4dj/ws/made-by-codex`",
                "2",
            ),
            ("No, and tell Codex what to do differently", "3"),
        ),
        "Reason: The user asked to run this command. $ touch /work/main/.pytest_cache/tmpu9mka4dj/ws/made-by-codex",
    ),
    # Built from the CLIs' documented layouts (see tests/fixtures/screens/README).
    "codex-built-waiting-approval.txt": (
        "Would you like to run the following command?",
        keys(
            ("Yes, proceed", "1"),
            ("Yes, and don't ask again for these files", "2"),
            ("No, and tell Codex what to do differently", "3"),
        ),
        "$ rm -rf build",
    ),
    "gemini_cli-built-waiting-tool.txt": (
        "Allow execution of: 'npm'?",
        keys(("Allow once", "1"), ("Allow for this session", "2"), ("No, suggest changes", "3")),
        "npm test",
    ),
    "cursor-built-waiting.txt": ("Run this command?", keys(("Run (once)", "y"), ("Skip", "n")), "$ rm -rf build"),
    "aider-built-waiting-edit.txt": ("Create new file hello.py?", texts(("Yes", "y"), ("No", "n")), "print('hi')"),
    "kiro_cli-built-waiting.txt": (
        "Allow this action? Use 't' to trust (always allow) this tool for the session.",
        texts(("Yes", "y"), ("No", "n"), ("Trust", "t")),
        "rm -rf build/",
    ),
    "copilot-built-waiting.txt": (
        "Do you want to run this command?",
        keys(
            ("Yes", "1"),
            ("Yes, and approve `rm` for the rest of the session", "2"),
            ("No, and tell Copilot what to do differently", "3"),
        ),
        "rm -rf build",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_question_and_choices_from_the_screen(name: str) -> None:
    text, choices, detail_part = CASES[name]
    prompt = read_prompt((SCREENS / name).read_text(encoding="utf-8"))
    assert prompt.text.startswith(text), prompt.text
    assert prompt.choices == choices
    assert detail_part in prompt.detail
    assert len(prompt.text) <= 300 and "\n" not in prompt.text


def test_mock_question_block() -> None:
    mock = get_provider("mock")
    prompt = mock.read_prompt((SCREENS / "mock-waiting.txt").read_text(encoding="utf-8"))
    assert prompt == ScreenPrompt(text="Shall I delete the branch?", choices=texts(("Yes", "y"), ("No", "n")))
    # Not waiting: no question.
    assert mock.read_prompt((SCREENS / "mock-completed-after-ask.txt").read_text(encoding="utf-8")).choices == ()


@pytest.mark.parametrize(
    ("line", "labels", "typed"),
    [
        ("Proceed? [y/n]", ["Yes", "No"], ["y", "n"]),
        ("Overwrite config (y/n)?", None, None),  # marker not at the end: no choices, free text
        ("Apply the patch? [Y/n]", ["Yes", "No"], ["y", "n"]),
        (
            "Add file to the chat? (Y)es/(N)o/(A)ll/(S)kip all/(D)on't ask again [Yes]:",
            ["Yes", "No", "All", "Skip all", "Don't ask again"],
            ["y", "n", "a", "s", "d"],
        ),
    ],
)
def test_marker_questions(line: str, labels, typed) -> None:
    prompt = read_prompt("some output\n\n" + line + "\n")
    if labels is None:
        assert prompt.choices == () and prompt.text == line
        return
    assert [c.label for c in prompt.choices] == labels
    assert [c.text for c in prompt.choices] == typed
    assert "[" not in prompt.text and "(Y)" not in prompt.text


def test_free_text_question_and_nothing_at_all() -> None:
    assert read_prompt("● Which branch should I use?\n> ") == ScreenPrompt(text="Which branch should I use?")
    assert read_prompt("") == ScreenPrompt(text="needs your answer")
    assert read_prompt("just output\nno question here\n").choices == ()


def test_a_long_menu_entry_wrapped_on_two_lines() -> None:
    screen = (
        "Do you want to make this edit to very_long_file_name.py?\n"
        "❯ 1. Yes\n"
        "  2. Yes, allow all edits during this session and also remember this for\n"
        "     the other files of the project\n"
        "  3. No\n"
    )
    prompt = read_prompt(screen)
    assert [c.key for c in prompt.choices] == ["1", "2", "3"]
    assert prompt.text == "Do you want to make this edit to very_long_file_name.py?"


def test_matching_an_answer_to_a_choice() -> None:
    prompt = read_prompt((SCREENS / "claude_code-real-waiting-permission.txt").read_text(encoding="utf-8"))
    assert match_choice(prompt, " no ") == prompt.choices[2]
    assert match_choice(prompt, "2") == prompt.choices[1]
    assert match_choice(prompt, "4") is None
    assert match_choice(prompt, "maybe") is None


def test_a_choice_is_a_key_or_a_text() -> None:
    with pytest.raises(ValueError):
        Choice("Yes")
    with pytest.raises(ValueError):
        Choice("Yes", key="1", text="y")
