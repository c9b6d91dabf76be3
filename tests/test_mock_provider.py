"""MockProvider: launch command, screen classification and answer extraction on screens captured
from the real mock agent (tests/fixtures/screens/mock-*.txt), and reading the transcript.

The screens were captured with `tmux capture-pane -p -J` from a 220x50 window; to capture them
again (after a change to what the agent draws):

    PYTHONPATH=. python tests/test_mock_provider.py --capture
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import pytest

import cao_sidecar
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import get_provider
from cao_sidecar.providers import own_python
from cao_sidecar.providers.base import LaunchContext
from cao_sidecar.providers.mock import MockProvider

SCREENS = Path(__file__).parent / "fixtures" / "screens"

S = AgentStatus
MULTILINE = "first line\n\n  indented line\n\x1b[31mred\x1b[0m and a bell\x07\nlast line"
TRAP = "new answer\n● a fake answer head\n› a fake prompt\n⠋ working (esc to interrupt)"

# fixture name → (status, extracted answer)
CASES: dict[str, tuple[AgentStatus, Optional[str]]] = {
    "mock-starting": (S.STARTING, None),
    "mock-idle": (S.IDLE, None),
    "mock-typed": (S.IDLE, None),
    "mock-processing": (S.PROCESSING, None),
    "mock-completed": (S.COMPLETED, "hello world"),
    "mock-completed-multiline": (
        S.COMPLETED,
        "first line\n\n  indented line\n␛[31mred␛[0m and a bell^G\nlast line",
    ),
    "mock-error": (S.ERROR, None),
    "mock-waiting": (S.WAITING_USER_ANSWER, None),
    "mock-waiting-typed": (S.WAITING_USER_ANSWER, None),
    "mock-completed-after-ask": (S.COMPLETED, "answered: yes"),
    "mock-interrupted": (S.IDLE, None),
    "mock-completed-second": (S.COMPLETED, "second answer\n⠋ working (esc to interrupt)"),
    "mock-processing-second": (S.PROCESSING, None),
    "mock-completed-history": (S.COMPLETED, TRAP),
    "mock-completed-tall": (S.COMPLETED, None),
}


def screen(name: str) -> str:
    return (SCREENS / f"{name}.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def provider() -> MockProvider:
    return MockProvider()


@pytest.mark.parametrize("name", sorted(CASES))
def test_classify_captured_screen(provider: MockProvider, name: str) -> None:
    assert provider.classify(screen(name)) is CASES[name][0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_extract_answer_from_captured_screen(provider: MockProvider, name: str) -> None:
    assert provider.extract_answer(screen(name)) == CASES[name][1]


def test_every_fixture_has_a_case() -> None:
    assert sorted(p.stem for p in SCREENS.glob("mock-*.txt")) == sorted(CASES)


def test_old_spinner_and_answers_are_history(provider: MockProvider) -> None:
    text = screen("mock-completed-history")
    lines = text.split("\n")
    # What makes the fixture a trap: a left-over spinner and an older answer higher up ...
    assert any(line.endswith(" working (esc to interrupt)") and line[0] in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" for line in lines)
    assert "● old answer" in lines
    # ... and the bottom still decides.
    assert provider.classify(text) is S.COMPLETED


def test_screen_variants(provider: MockProvider) -> None:
    banner = "cao mock agent · profile p · ready\n\n"
    # tmux keeps spaces an app wrote, and a capture ends with the window's empty rows
    assert provider.classify(banner + "› \n\n\n") is S.IDLE
    assert provider.classify("\n\n\n") is S.STARTING
    assert provider.classify("Python 3.11.7 something\n") is S.STARTING  # nothing of ours yet
    # something of ours, then an unrecognised bottom line: drawing in progress
    assert provider.classify(banner + "› echo x\nsomething else\n") is S.PROCESSING
    assert provider.classify(banner + "› echo x\n● x\n\n› typed\n") is S.IDLE
    assert provider.classify(banner + "› ask q\n? q\n  [y/n] › ye\n") is S.WAITING_USER_ANSWER
    # an answer taller than the window: only continuation lines above the prompt
    assert provider.classify("  more\n  lines\n\n›\n") is S.COMPLETED
    assert provider.classify("› echo\n●\n\n›\n") is S.COMPLETED  # an empty answer
    assert provider.extract_answer("› echo\n●\n\n›\n") == ""
    assert provider.extract_answer(banner + "›\n") is None
    assert provider.extract_answer("") is None


def test_launch(tmp_path: Path, provider: MockProvider) -> None:
    ctx = LaunchContext(
        terminal_id="t1", session="s", working_directory=str(tmp_path), agent_dir=tmp_path / "a1",
        env={"CAO_PROFILE": "developer"},
    )  # fmt: skip
    spec = provider.launch(ctx)
    # -P: never the working directory's own cao_sidecar package (own_python.py); -S: no
    # site-packages set-up (the mock needs the standard library only), our package via PYTHONPATH.
    assert spec.argv[:5] == (
        [sys.executable, "-S", "-P", "-m", "cao_sidecar.mock_agent"] if sys.version_info >= (3, 11) else spec.argv[:5]
    )
    base = own_python.module_argv("cao_sidecar.mock_agent")
    assert spec.argv == [
        base[0], "-S", *base[1:],
        "--transcript", str(tmp_path / "a1" / "transcript.jsonl"), "--profile=developer",
    ]  # fmt: skip
    ours = str(Path(cao_sidecar.__file__).resolve().parent.parent)
    assert spec.env == {"PYTHONPATH": ours}
    ctx.env["PYTHONPATH"] = f"/abs/x{os.pathsep}relative{os.pathsep}{ours}"
    assert provider.launch(ctx).env == {"PYTHONPATH": f"{ours}{os.pathsep}/abs/x"}
    del ctx.env["PYTHONPATH"]
    ctx.env["CAO_MOCK_DELAY_MS"] = "5"
    assert provider.launch(ctx).argv[-1:] == ["--delay-ms=5"]
    # What the orchestrator does to the agent's PYTHONPATH: '' and relative entries mean the cwd.
    dirty = {"PYTHONPATH": f"/abs/one{os.pathsep}{os.pathsep}relative{os.pathsep}/abs/two"}
    assert own_python.safe_pythonpath(dirty) == {"PYTHONPATH": f"/abs/one{os.pathsep}/abs/two"}
    assert (provider.name, provider.exit_command, provider.interrupt_key) == ("mock", "exit", "Escape")
    assert get_provider("mock").name == "mock"


def _write(path: Path, *records: object, raw: bytes = b"") -> None:
    path.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    (path / "transcript.jsonl").write_bytes("".join(line + "\n" for line in lines).encode() + raw)


def test_read_answer(tmp_path: Path, provider: MockProvider) -> None:
    agent_dir = tmp_path / "agent"
    assert provider.read_answer(agent_dir) is None  # no directory, no file
    _write(agent_dir)
    assert provider.read_answer(agent_dir) is None  # empty
    _write(agent_dir, {"type": "user", "text": "echo a"}, {"type": "assistant", "text": "a"})
    assert provider.read_answer(agent_dir) == "a"
    _write(agent_dir, {"type": "assistant", "text": "a"}, {"type": "user", "text": "echo b"})
    assert provider.read_answer(agent_dir) is None  # the last record is not an answer
    _write(agent_dir, {"type": "assistant", "text": "a"}, {"type": "interrupted"})
    assert provider.read_answer(agent_dir) is None
    _write(agent_dir, {"type": "assistant", "text": "a"}, raw=b'{"type": "assistant", "te')
    assert provider.read_answer(agent_dir) is None  # the last record is still being written
    _write(agent_dir, {"type": "assistant", "text": "a"}, raw=b"not json\n")
    assert provider.read_answer(agent_dir) is None
    _write(agent_dir, {"type": "assistant", "text": 42})
    assert provider.read_answer(agent_dir) is None
    _write(agent_dir, ["a list"])
    assert provider.read_answer(agent_dir) is None
    (agent_dir / "transcript.jsonl").write_bytes(b"\xff\xfe\n")
    assert provider.read_answer(agent_dir) is None


def test_read_answer_megabyte_records(tmp_path: Path, provider: MockProvider) -> None:
    big = ("line with ünicode and a separator \u2028 ;\n" * 30000)[:-1]
    assert len(big.encode()) > 1024 * 1024
    _write(tmp_path, {"type": "user", "text": "echo " + big}, {"type": "assistant", "text": big})
    assert provider.read_answer(tmp_path) == big
    _write(tmp_path, {"type": "assistant", "text": big})  # the only record: read up to the start
    assert provider.read_answer(tmp_path) == big


# ---- capturing the fixtures ---------------------------------------------------------------------


def capture_fixtures() -> None:  # pragma: no cover - run by hand
    import shlex
    import signal
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from test_mock_agent import TmuxAgent, wait_for

    SCREENS.mkdir(parents=True, exist_ok=True)

    def bottom(agent: TmuxAgent) -> str:
        return agent.screen().rstrip().rsplit("\n", 1)[-1].rstrip()

    def save(name: str, text: str) -> None:
        (SCREENS / f"{name}.txt").write_text(text, encoding="utf-8")
        print(f"{name}: {len(text.splitlines())} lines")

    def answered(agent: TmuxAgent, count: int) -> str:
        """Wait until the transcript holds `count` records and the prompt is back; the screen."""
        agent.wait_records(count)
        wait_for(lambda: bottom(agent) == "›", what="the prompt")
        return agent.screen()

    def screen_when(agent: TmuxAgent, predicate) -> str:
        def check() -> Optional[str]:
            text = agent.screen()
            last = text.rstrip().rsplit("\n", 1)[-1].rstrip()
            return text if predicate(text, last) else None

        return wait_for(check)

    def spinning(agent: TmuxAgent) -> str:
        return screen_when(agent, lambda text, last: last.endswith("working (esc to interrupt)"))

    def session(run) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            agent = TmuxAgent(Path(tmp))
            try:
                if run is not basics:  # basics captures the start itself
                    screen_when(agent, lambda text, last: last == "›")
                run(agent)
            finally:
                agent.kill()

    def basics(agent: TmuxAgent) -> None:
        save("mock-starting", agent.first_screen)
        idle = screen_when(agent, lambda text, last: last == "›")
        save("mock-idle", idle)
        agent.paste("echo typed but\nnot submitted")
        save("mock-typed", screen_when(agent, lambda text, last: "[+1 lines]" in last))
        agent.keys("C-c")
        agent.send("echo hello world")
        save("mock-completed", answered(agent, 2))

    def multiline(agent: TmuxAgent) -> None:
        agent.send("echo " + MULTILINE)
        save("mock-completed-multiline", answered(agent, 2))

    def processing_and_interrupt(agent: TmuxAgent) -> None:
        agent.send("sleep 30 never")
        save("mock-processing", spinning(agent))
        agent.keys("Escape")
        wait_for(lambda: agent.records()[-1:] == [{"type": "interrupted"}])
        save("mock-interrupted", screen_when(agent, lambda text, last: last == "›"))

    def error(agent: TmuxAgent) -> None:
        agent.send("fail the build is broken")
        save("mock-error", answered(agent, 2))

    def ask(agent: TmuxAgent) -> None:
        agent.send("ask Shall I delete the branch?")
        agent.wait_records(2)
        save("mock-waiting", screen_when(agent, lambda text, last: last == "  [y/n] ›"))
        agent.keys("-l", "ye")
        save("mock-waiting-typed", screen_when(agent, lambda text, last: last.endswith("› ye")))
        agent.keys("-l", "s")
        agent.keys("Enter")
        save("mock-completed-after-ask", answered(agent, 4))

    def second(agent: TmuxAgent) -> None:
        agent.send("echo first answer")
        answered(agent, 2)
        agent.send("sleep 0.3 second answer\n⠋ working (esc to interrupt)")
        save("mock-processing-second", spinning(agent))
        save("mock-completed-second", answered(agent, 4))

    def tall(agent: TmuxAgent) -> None:
        agent.send("echo " + "\n".join(f"line {i}" for i in range(80)))
        save("mock-completed-tall", answered(agent, 2))

    for run in (basics, multiline, processing_and_interrupt, error, ask, second, tall):
        session(run)

    # An old spinner left on screen: a first agent terminated while busy, a second one started in
    # the same window.
    with tempfile.TemporaryDirectory() as tmp:
        argv = shlex.join(TmuxAgent.agent_argv_for(Path(tmp)))
        agent = TmuxAgent(Path(tmp), command=["sh", "-c", f"{argv}; exec {argv}"])
        try:
            screen_when(agent, lambda text, last: last == "›")
            agent.send("echo old answer")
            answered(agent, 2)
            agent.send("sleep 30 never")
            spinning(agent)
            shell = agent.pane_pid()
            (child,) = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
            import os

            os.kill(int(child), signal.SIGTERM)
            wait_for(lambda: agent.screen().count("cao mock agent") == 2 and bottom(agent) == "›")
            agent.send("echo " + TRAP)
            save("mock-completed-history", answered(agent, 5))
        finally:
            agent.kill()


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] != ["--capture"]:
        raise SystemExit(__doc__)
    capture_fixtures()
