"""End to end, editor face: agents' questions. The prompt in cao/agentStatus and cao/listAgents,
cao/answer, the sidecar asking the user with window/showMessageRequest (and not asking clients
that opted out), "Open terminal" → cao/openTerminal with an attach command that really attaches,
a question answered in the terminal meanwhile is not answered twice, and workspace/executeCommand.

A real sidecar (pytest-lsp) on its own tmux server with real mock agents; the mock agent's `ask`
task shows a yes/no question and answers "answered: <input>" once it gets one.
"""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import uuid

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from conftest import kill_tmux, request
from test_editor_common import (
    close_client,
    module_fixtures,
    error_data,
    eventually,
    list_agents,
    new_sidecar,
    pane_of,
    rpc_error,
    spawn,
    transcript,
)

CONFIG, SIDECAR = new_sidecar("answer")
QUIET_CONFIG, QUIET = new_sidecar("answer-quiet")
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]


client, clean = module_fixtures(CONFIG, SIDECAR)


@pytest.fixture(autouse=True)
def no_clicks():
    """The client dismisses the sidecar's questions unless a test says what to click."""
    SIDECAR.answer_message = lambda params: None
    yield
    SIDECAR.answer_message = lambda params: None


def waiting(tid: str, sidecar=SIDECAR):
    return sidecar.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "waiting_user_answer", 15)


def asked(tid: str):
    return SIDECAR.wait_for("window/showMessageRequest", lambda p: f"({tid})" in p["message"], 15)


def user_inputs(tid: str, sidecar=SIDECAR) -> list[str]:
    return [r["text"] for r in transcript(sidecar, tid) if r["type"] == "user"]


async def ask(client: LanguageClient, question: str = "Delete the branch?") -> tuple[str, dict]:
    tid = (await spawn(client))["terminalId"]
    await request(client, "cao/sendMessage", {"terminalId": tid, "message": f"ask {question}"})
    return tid, await waiting(tid)


async def answered(client: LanguageClient, tid: str, expected: str) -> None:
    async def check():
        return (await request(client, "cao/getOutput", {"terminalId": tid}))["output"] == expected

    await eventually(check, what=f"the agent's answer {expected!r}")


# ---- the prompt and cao/answer ----------------------------------------------------------------------


async def test_status_carries_the_prompt_and_cao_answer_types_the_choice(client: LanguageClient):
    tid, status = await ask(client, "Delete the branch?")
    prompt = status["prompt"]
    assert prompt["text"] == "Delete the branch?"
    assert prompt["choices"] == ["Yes", "No"]
    assert prompt["id"].startswith(f"{tid}:")
    # The same prompt in cao/listAgents; statuses other than waiting carry none.
    assert (await list_agents(client))[tid]["prompt"] == prompt
    assert all(
        n["prompt"] is None
        for n in SIDECAR.notifications["cao/agentStatus"]
        if n["terminalId"] == tid and n["status"] != "waiting_user_answer"
    )

    result = await request(client, "cao/answer", {"terminalId": tid, "answer": "YES", "promptId": prompt["id"]})
    assert result == {"terminalId": tid, "promptId": prompt["id"], "typed": "'y' + Enter"}
    await answered(client, tid, "answered: y")
    assert (await list_agents(client))[tid]["prompt"] is None


async def test_a_question_is_answered_once(client: LanguageClient):
    tid, status = await ask(client)
    prompt_id = status["prompt"]["id"]
    # Answer twice at once: exactly one is typed.
    results = await asyncio.gather(
        request(client, "cao/answer", {"terminalId": tid, "answer": "Yes", "promptId": prompt_id}),
        request(client, "cao/answer", {"terminalId": tid, "answer": "No", "promptId": prompt_id}),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and errors[0].code == -31009, results
    assert error_data(errors[0])["kind"] == "promptGone"
    await eventually(lambda: len(user_inputs(tid)) == 2, what="the answer in the transcript")
    await asyncio.sleep(0.3)
    assert user_inputs(tid)[1] in ("y", "n") and len(user_inputs(tid)) == 2
    # The agent no longer waits: a plain answer is refused as such.
    await eventually(lambda: SIDECAR.statuses(tid)[-1] == "completed", what="completed")
    exc = await rpc_error(request(client, "cao/answer", {"terminalId": tid, "answer": "Yes"}))
    assert exc.code == -32602 and "not waiting" in exc.message
    exc = await rpc_error(request(client, "cao/answer", {"terminalId": tid, "answer": "Yes", "promptId": prompt_id}))
    assert exc.code == -31009


async def test_bad_answers_are_refused_and_nothing_is_typed(client: LanguageClient):
    tid, status = await ask(client)
    for params, field in (
        ({"terminalId": tid, "answer": "maybe"}, "choices"),
        ({"terminalId": tid, "answer": "y\nn"}, "one line"),
        ({"terminalId": tid, "answer": "\x1b[201~y"}, "bracketed-paste"),
        ({"terminalId": tid}, "answer"),
        ({"terminalId": tid, "answer": "Yes", "promptId": "nope:1"}, "another one"),
    ):
        exc = await rpc_error(request(client, "cao/answer", params))
        assert exc.code in (-32602, -31009), (params, exc.code)
        assert field in exc.message, (params, exc.message)
    exc = await rpc_error(request(client, "cao/answer", {"terminalId": "nosuch", "answer": "Yes"}))
    assert exc.code == -31003
    assert user_inputs(tid) == ["ask Delete the branch?"]
    # Still waiting, still answerable (a menu number works too).
    await request(client, "cao/answer", {"terminalId": tid, "answer": "2", "promptId": status["prompt"]["id"]})
    await answered(client, tid, "answered: n")


# ---- the sidecar asks the user ----------------------------------------------------------------------


async def test_the_sidecar_asks_and_the_click_reaches_the_agent(client: LanguageClient):
    SIDECAR.answer_message = lambda params: "No"
    tid, _status = await ask(client, "Overwrite main.py?")
    request_params = await asked(tid)
    assert request_params["message"].startswith(f"mock_developer ({tid}) asks: Overwrite main.py?")
    assert [a["title"] for a in request_params["actions"]] == ["Yes", "No", "Open terminal"]
    assert request_params["type"] == types.MessageType.Info
    await answered(client, tid, "answered: n")
    events = (await request(client, "cao/getLog", {"terminalId": tid}))["events"]
    assert [e["text"] for e in events if e["event"] == "input" and e.get("answer")] == ["No"]


async def test_answered_in_the_terminal_meanwhile_is_not_answered_again(client: LanguageClient):
    release = asyncio.Event()

    async def slow_click(params):
        await release.wait()
        return "Yes"

    SIDECAR.answer_message = slow_click
    tid, _status = await ask(client, "Push now?")
    await asked(tid)
    # The user answers in the agent's terminal while the editor's question is still open.
    pane = pane_of(SIDECAR, tid)
    SIDECAR.tmux("send-keys", "-t", pane["pane_id"], "-l", "n")
    SIDECAR.tmux("send-keys", "-t", pane["pane_id"], "Enter")
    await answered(client, tid, "answered: n")
    release.set()  # the late click
    await asyncio.sleep(0.6)
    assert user_inputs(tid) == ["ask Push now?", "n"]
    # Typed text after the question would show as a new prompt line: nothing was typed.
    assert "› y" not in (await request(client, "cao/getOutput", {"terminalId": tid, "mode": "full"}))["output"]


async def test_open_terminal_sends_an_attach_command_that_attaches(client: LanguageClient):
    SIDECAR.answer_message = lambda params: "Open terminal"
    tid, _status = await ask(client, "Rebase?")
    opened = await SIDECAR.wait_for("cao/openTerminal", lambda p: p["terminalId"] == tid, 15)
    argv = opened["attachCommand"]
    assert argv == (await list_agents(client))[tid]["attachCommand"]
    # Run it in a terminal: here, a window of another tmux server plays the terminal emulator.
    outer = f"cao-viewer-{uuid.uuid4().hex[:8]}"
    try:
        # (one shell command: tmux would take the argv's ";" words as its own separators)
        subprocess.run(
            ["tmux", "-L", outer, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", shlex.join(argv)],
            check=True,
            capture_output=True,
        )

        def viewer():
            out = SIDECAR.tmux("list-sessions", "-F", "#{session_name}|#{@cao-view}|#{session_attached}")
            return [line.split("|") for line in out.splitlines() if line.split("|")[1] == "1"]

        sessions = await eventually(viewer, what="the viewer's session")
        assert sessions[0][2] == "1", sessions  # attached
        pane = pane_of(SIDECAR, tid)["pane_id"]

        def shown():
            return subprocess.run(["tmux", "-L", outer, "capture-pane", "-p"], capture_output=True, text=True).stdout

        await eventually(lambda: "Rebase?" in shown(), what="the agent's screen in the viewer")
        assert pane in SIDECAR.tmux("display-message", "-p", "-t", sessions[0][0] + ":", "#{pane_id}")
        # The viewer is not an agent, and the agent still answers.
        assert list(await list_agents(client)) == [tid]
        await request(client, "cao/answer", {"terminalId": tid, "answer": "yes"})
        await answered(client, tid, "answered: y")
    finally:
        kill_tmux(outer)  # the server and its socket file
    # The terminal closed: its session went with it, and only it (tmux tells the sidecar's
    # control client "%window-close" for each window leaving the viewer's session).
    await eventually(lambda: not viewer(), what="the viewer's session to go")
    await asyncio.sleep(0.5)
    assert (await list_agents(client))[tid]["status"] == "completed"
    assert pane_of(SIDECAR, tid) is not None
    assert "exited" not in SIDECAR.statuses(tid)


# ---- a client with its own UI opts out ----------------------------------------------------------------


@pytest_lsp.fixture(config=QUIET_CONFIG, scope="module")
async def quiet_client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            root_uri=QUIET.workspace.as_uri(),
            initialization_options={"askUser": False},
        )
    )
    yield
    await close_client(lsp_client, QUIET)


async def test_a_client_that_opted_out_is_not_asked(quiet_client: LanguageClient):
    tid = (await spawn(quiet_client))["terminalId"]
    await request(quiet_client, "cao/sendMessage", {"terminalId": tid, "message": "ask Tag it?"})
    status = await waiting(tid, QUIET)
    await asyncio.sleep(1.0)
    assert QUIET.notifications["window/showMessageRequest"] == []
    await request(quiet_client, "cao/answer", {"terminalId": tid, "answer": "No", "promptId": status["prompt"]["id"]})
    await eventually(lambda: user_inputs(tid, QUIET)[-1] == "n", what="the answer in the transcript")


# ---- workspace/executeCommand --------------------------------------------------------------------------


async def test_execute_command_runs_the_methods(client: LanguageClient):
    async def command(name, *arguments):
        params = types.ExecuteCommandParams(command=name, arguments=list(arguments))
        return await request(client, "workspace/executeCommand", params)

    result = await command("cao-sidecar.handoff", {"profile": "mock_reviewer", "message": "echo from a command", "keep": True})
    assert result["output"] == "from a command"
    listed = await command("cao-sidecar.listAgents")
    assert [a["terminalId"] for a in listed["agents"]] == [result["terminalId"]]
    assert (await command("cao-sidecar.getOutput", {"terminalId": result["terminalId"]}))["output"] == "from a command"
    for args, code, words in (
        (("cao-sidecar.nosuch",), -32602, "unknown command"),
        (("cao-sidecar.spawn", {}), -32602, "profile"),
        (("cao-sidecar.spawn", {"profile": "mock_developer"}, {}), -32602, "one argument"),
        (("cao-sidecar.terminate", {"terminalId": "nosuch"}), -31003, ""),
    ):
        exc = await rpc_error(command(*args))
        assert exc.code == code and words in exc.message, (args, exc.code, exc.message)
