"""End to end, editor face: cao/handoff (new worker, existing agent, keep, errors, cancel, progress)
and byte-exact delivery of tasks.

A real sidecar (`python -m cao_sidecar --stdio`, started by pytest-lsp) on its own tmux server,
real mock agents (task grammar: cao_sidecar/mock_agent/tasks.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from conftest import request
from test_editor_common import (
    module_fixtures,
    error_data,
    eventually,
    list_agents,
    new_sidecar,
    pane_of,
    rpc_error,
    spawn,
    transcript,
    window_gone,
)

CONFIG, SIDECAR = new_sidecar("handoff")
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]


client, clean = module_fixtures(CONFIG, SIDECAR)


def handoff(client: LanguageClient, timeout: float = 30.0, **params):
    return request(client, "cao/handoff", params, timeout=timeout)


def start_request(client: LanguageClient, method: str, params: dict, msg_id: str) -> asyncio.Future:
    """Send a request now and return its pending answer. (pytest-lsp's send_request_async is a
    coroutine: only a task sends it.)"""
    task = asyncio.ensure_future(client.protocol.send_request_async(method, params, msg_id=msg_id))
    return task


def cancel(client: LanguageClient, msg_id: str) -> None:
    # pygls does not send $/cancelRequest when a request's future is cancelled: send it ourselves.
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))


async def new_terminal_id(known: set[str], profile: str, status: str, timeout: float = 10.0) -> str:
    note = await SIDECAR.wait_for(
        "cao/agentStatus",
        lambda p: p["terminalId"] not in known and p["profile"] == profile and p["status"] == status,
        timeout,
    )
    return note["terminalId"]


def known_ids() -> set[str]:
    return {n["terminalId"] for n in SIDECAR.notifications["cao/agentStatus"]}


async def torn_down(client: LanguageClient, tid: str, timeout: float = 5.0) -> None:
    async def gone() -> bool:
        return tid not in await list_agents(client) and window_gone(SIDECAR, tid)

    await eventually(gone, timeout, what=f"worker {tid} torn down (not listed, no window)")


# ---- with a profile: a new worker ---------------------------------------------------------------


async def test_handoff_new_worker_answers_and_is_torn_down(client: LanguageClient):
    result = await handoff(client, profile="mock_reviewer", message="echo the review")
    tid = result["terminalId"]
    assert result == {"terminalId": tid, "status": "completed", "output": "the review", "worktree": None}
    await torn_down(client, tid, 3)
    await eventually(lambda: SIDECAR.statuses(tid)[-1:] == ["exited"], 3, what="status exited")
    assert SIDECAR.statuses(tid) == ["starting", "idle", "processing", "completed", "exited"]
    notes = [n for n in SIDECAR.notifications["cao/agentStatus"] if n["terminalId"] == tid]
    assert all(n["profile"] == "mock_reviewer" for n in notes)


async def test_handoff_new_worker_default_task_answer(client: LanguageClient):
    result = await handoff(client, profile="mock_developer", message="Refactor the cart module.")
    assert result["output"] == "done: Refactor the cart module."
    await torn_down(client, result["terminalId"], 3)


async def test_handoff_keep_true_keeps_worker(client: LanguageClient):
    result = await handoff(client, profile="mock_developer", message="echo kept", keep=True)
    tid = result["terminalId"]
    assert result["output"] == "kept"
    agents = await list_agents(client)
    assert tid in agents
    assert agents[tid]["status"] == "completed"
    assert pane_of(SIDECAR, tid) is not None
    assert "exited" not in SIDECAR.statuses(tid)
    # It can be reused by terminalId.
    again = await handoff(client, terminalId=tid, message="echo again")
    assert again == {"terminalId": tid, "status": "completed", "output": "again", "worktree": None}


async def test_handoff_new_worker_working_directory(client: LanguageClient):
    other = SIDECAR.base / "handoff-cwd"
    other.mkdir(exist_ok=True)
    result = await handoff(client, profile="mock_developer", message="echo cwd", keep=True, workingDirectory=str(other))
    assert (await list_agents(client))[result["terminalId"]]["workingDirectory"] == str(other)
    pane = pane_of(SIDECAR, result["terminalId"])
    assert pane is not None and os.path.realpath(pane["cwd"]) == os.path.realpath(other)


# ---- with terminalId: an existing agent ------------------------------------------------------------


async def test_handoff_to_existing_agent_keeps_it(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    first = await handoff(client, terminalId=tid, message="echo one")
    assert first == {"terminalId": tid, "status": "completed", "output": "one", "worktree": None}
    second = await handoff(client, terminalId=tid, message="echo two")
    assert second["output"] == "two"
    agents = await list_agents(client)
    assert tid in agents and agents[tid]["status"] == "completed"
    assert pane_of(SIDECAR, tid) is not None
    assert SIDECAR.statuses(tid) == ["starting", "idle", "processing", "completed", "processing", "completed"]


async def test_handoff_to_busy_agent_waits_its_turn(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    sent = await request(client, "cao/sendMessage", {"terminalId": tid, "message": "sleep 1 first"})
    assert sent["state"] == "delivered"
    result = await handoff(client, terminalId=tid, message="echo second")
    assert result["output"] == "second"
    users = [r["text"] for r in transcript(SIDECAR, tid) if r["type"] == "user"]
    assert users == ["sleep 1 first", "echo second"]


async def test_handoff_does_not_block_other_requests(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    pending = asyncio.ensure_future(handoff(client, terminalId=tid, message="sleep 2 slow"))
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "processing", 5)
    agents = await list_agents(client)
    assert agents[tid]["status"] == "processing"
    assert not pending.done()  # answered while the 2 s handoff still runs
    assert (await pending)["output"] == "slow"


# ---- errors -------------------------------------------------------------------------------------------


async def test_handoff_agent_error(client: LanguageClient):
    exc = await rpc_error(handoff(client, profile="mock_developer", message="fail the build is broken"))
    assert exc.code == -31005, exc.message
    data = error_data(exc)
    assert data.get("kind") == "agentError"
    tid = data.get("terminalId")
    assert tid
    assert "the build is broken" in data.get("screenTail", "")
    await torn_down(client, tid, timeout=0)  # answered once the worker is gone, as a success is


async def test_handoff_agent_error_on_existing_agent_keeps_it(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    exc = await rpc_error(handoff(client, terminalId=tid, message="fail nope"))
    assert exc.code == -31005
    assert error_data(exc).get("terminalId") == tid
    assert tid in await list_agents(client)
    assert pane_of(SIDECAR, tid) is not None


async def test_handoff_timeout_is_fast_and_tears_worker_down(client: LanguageClient):
    started = time.monotonic()
    exc = await rpc_error(handoff(client, profile="mock_developer", message="sleep 30 too slow", timeoutSeconds=1))
    elapsed = time.monotonic() - started
    assert exc.code == -31004, exc.message
    assert elapsed < 3.0, f"a 1 s timeout took {elapsed:.1f}s"
    data = error_data(exc)
    assert data.get("kind") == "timeout"
    tid = data.get("terminalId")
    assert tid
    assert "screenTail" in data and "sleep 30 too slow" in data["screenTail"]
    await torn_down(client, tid)


async def test_handoff_timeout_on_existing_agent_interrupts_and_keeps_it(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    started = time.monotonic()
    exc = await rpc_error(handoff(client, terminalId=tid, message="sleep 30 too slow", timeoutSeconds=1))
    assert exc.code == -31004
    assert time.monotonic() - started < 3.0
    assert error_data(exc).get("terminalId") == tid
    # Kept, and its turn was interrupted: it takes input again long before the 30 s are over.
    await eventually(lambda: any(r["type"] == "interrupted" for r in transcript(SIDECAR, tid)), 5, what="turn interrupted")
    assert pane_of(SIDECAR, tid) is not None
    result = await handoff(client, terminalId=tid, message="echo after the timeout", timeout=10)
    assert result["output"] == "after the timeout"


async def test_handoff_unknown_terminal(client: LanguageClient):
    exc = await rpc_error(handoff(client, terminalId="00000000", message="echo x"))
    assert exc.code == -31003
    assert error_data(exc).get("kind") == "unknownTerminal"
    assert error_data(exc).get("terminalId") == "00000000"


async def test_handoff_unknown_profile_and_provider(client: LanguageClient):
    exc = await rpc_error(handoff(client, profile="no_such_profile", message="echo x"))
    assert exc.code == -31001
    exc = await rpc_error(handoff(client, profile="mock_developer", provider="no_such_cli", message="echo x"))
    assert exc.code == -31002
    assert await list_agents(client) == {}


async def test_handoff_both_or_neither_profile_and_terminal(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    exc = await rpc_error(handoff(client, profile="mock_developer", terminalId=tid, message="echo x"))
    assert exc.code == -32602
    assert "profile" in exc.message and "terminalId" in exc.message
    exc = await rpc_error(handoff(client, message="echo x"))
    assert exc.code == -32602
    assert "profile" in exc.message and "terminalId" in exc.message
    # Explicit nulls mean "left out": still neither.
    exc = await rpc_error(handoff(client, profile=None, terminalId=None, message="echo x"))
    assert exc.code == -32602
    assert list(await list_agents(client)) == [tid]


async def test_handoff_agent_exits_mid_turn_is_reported_fast(client: LanguageClient):
    started = time.monotonic()
    exc = await rpc_error(handoff(client, profile="mock_developer", message="exit", timeoutSeconds=60))
    elapsed = time.monotonic() - started
    assert exc.code == -31006, exc.message
    assert elapsed < 5.0, f"an exit must be reported when it happens, not at the timeout ({elapsed:.1f}s)"
    data = error_data(exc)
    assert data.get("kind") == "agentExited"
    assert data.get("terminalId")
    assert "screenTail" in data
    await torn_down(client, data["terminalId"])


async def test_handoff_agent_killed_mid_turn_is_reported_fast(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    pending = asyncio.ensure_future(handoff(client, terminalId=tid, message="sleep 30 long task", timeoutSeconds=60))
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "processing", 5)
    pane = pane_of(SIDECAR, tid)
    assert pane is not None
    started = time.monotonic()
    os.kill(int(pane["pid"]), signal.SIGKILL)
    exc = await rpc_error(asyncio.wait_for(pending, 10))
    assert exc.code == -31006, exc.message
    assert time.monotonic() - started < 3.0
    assert error_data(exc).get("terminalId") == tid
    await eventually(lambda: SIDECAR.statuses(tid)[-1:] == ["exited"], 3, what="status exited")
    # Exited agents refuse new tasks with -31006 (not a hang).
    if tid in await list_agents(client):
        exc = await rpc_error(handoff(client, terminalId=tid, message="echo x", timeout=10))
        assert exc.code in (-31006, -31003)


async def test_handoff_bad_values(client: LanguageClient):
    for params, field in (
        ({"profile": "mock_developer", "message": ""}, "message"),
        ({"profile": "mock_developer", "message": "echo x", "timeoutSeconds": 0}, "timeoutSeconds"),
        ({"profile": "mock_developer", "message": "echo x", "timeoutSeconds": -5}, "timeoutSeconds"),
        ({"profile": "mock_developer", "message": "echo x", "timeoutSeconds": "10"}, "timeoutSeconds"),
        ({"profile": "mock_developer", "message": "echo x", "keep": "yes"}, "keep"),
        ({"profile": "mock_developer"}, "message"),
    ):
        exc = await rpc_error(request(client, "cao/handoff", params))
        assert exc.code == -32602, (params, exc.code)
        assert field in exc.message, (params, exc.message)
    assert await list_agents(client) == {}


# ---- cancel -----------------------------------------------------------------------------------------


async def test_cancel_handoff_interrupts_and_tears_worker_down(client: LanguageClient):
    known = known_ids()
    msg_id = "e2e-cancel-handoff"
    token = "e2e-cancel-progress"
    client.progress_reports.setdefault(token, [])
    pending = start_request(
        client,
        "cao/handoff",
        {"profile": "mock_developer", "message": "sleep 30 refactor everything", "workDoneToken": token},
        msg_id,
    )
    tid = await new_terminal_id(known, "mock_developer", "processing")
    assert pane_of(SIDECAR, tid) is not None
    started = time.monotonic()
    cancel(client, msg_id)
    exc = await rpc_error(asyncio.wait_for(pending, 10))
    assert exc.code == -32800
    assert time.monotonic() - started < 2.0
    await torn_down(client, tid)
    await eventually(lambda: SIDECAR.statuses(tid)[-1:] == ["exited"], 3, what="status exited")
    # Progress ends on cancel too.
    await eventually(lambda: client.progress_reports[token][-1:] and client.progress_reports[token][-1].kind == "end", 3)


async def test_cancel_handoff_keep_interrupts_and_keeps_worker(client: LanguageClient):
    known = known_ids()
    msg_id = "e2e-cancel-handoff-keep"
    pending = start_request(
        client, "cao/handoff", {"profile": "mock_developer", "message": "sleep 30 keep me", "keep": True}, msg_id
    )
    tid = await new_terminal_id(known, "mock_developer", "processing")
    cancel(client, msg_id)
    exc = await rpc_error(asyncio.wait_for(pending, 10))
    assert exc.code == -32800
    # The turn was interrupted (the mock writes an "interrupted" record) and the worker stays.
    await eventually(lambda: any(r["type"] == "interrupted" for r in transcript(SIDECAR, tid)), 5, what="turn interrupted")
    assert tid in await list_agents(client)
    assert pane_of(SIDECAR, tid) is not None
    result = await handoff(client, terminalId=tid, message="echo still here", timeout=10)
    assert result["output"] == "still here"


async def test_cancel_handoff_to_existing_agent_keeps_it(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    msg_id = "e2e-cancel-existing"
    pending = start_request(client, "cao/handoff", {"terminalId": tid, "message": "sleep 30 zzz"}, msg_id)
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "processing", 5)
    cancel(client, msg_id)
    exc = await rpc_error(asyncio.wait_for(pending, 10))
    assert exc.code == -32800
    await eventually(lambda: any(r["type"] == "interrupted" for r in transcript(SIDECAR, tid)), 5, what="turn interrupted")
    assert tid in await list_agents(client)
    assert pane_of(SIDECAR, tid) is not None


# ---- work-done progress ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["e2e-progress-1", 4711])
async def test_handoff_work_done_progress(client: LanguageClient, token):
    client.progress_reports.setdefault(token, [])
    result = await handoff(client, profile="mock_reviewer", message="sleep 0.3 reviewed", workDoneToken=token)
    assert result["output"] == "reviewed"
    reports = client.progress_reports[token]
    kinds = [r.kind for r in reports]
    assert kinds[0] == "begin", kinds
    assert kinds[-1] == "end", kinds
    assert kinds.count("begin") == 1 and kinds.count("end") == 1
    assert reports[0].cancellable is True
    assert isinstance(reports[0].title, str) and reports[0].title
    messages = [r.message for r in reports if r.kind == "report"]
    assert "processing" in messages, messages
    assert "completed" in messages, messages


async def test_handoff_without_token_sends_no_progress(client: LanguageClient):
    before = {k: len(v) for k, v in client.progress_reports.items()}
    await handoff(client, profile="mock_reviewer", message="echo quiet")
    after = {k: len(v) for k, v in client.progress_reports.items()}
    assert before == after


# ---- byte-exact tasks ----------------------------------------------------------------------------------

MULTILINE = "first line\n  indented second line\n\nfourth line after a blank one\n\ttabbed fifth"

META_PIECES = [
    "single 'quotes' and \"double quotes\" and unbalanced ' \" ",
    "a command; and another; ",
    "$(touch /tmp/cao-e2e-pwned-subshell) ${HOME} $HOME $((1+2)) ",
    "`touch /tmp/cao-e2e-pwned-backtick` ",
    "-leading dash --help -t =0 ",
    "Enter C-c C-d Escape M-x ",
    "\x1b[31mred\x1b[0m \x1b[2J\x1b[H cleared ",
    "\x1b]0;an OSC title change\x07 \x1b]2;another title\x1b\\ ",
    "unicode: héllo wörld ✓ 日本語 🚀 עברית ",
    "tmux formats #{pane_id} #(touch /tmp/cao-e2e-pwned-format) #[fg=red] ",
    "; kill-server ; \\; ",
    "backslashes \\ \\\\ \\n \\r \\x1b ",
    "percent %s %d %% {} {0} ",
    "windows newline\r\n",
    "unix newline\n",
    "bare carriage return\rafter it ",
    "tab\tand more",
]


def big_payload(size: int = 20 * 1024) -> str:
    parts: list[str] = []
    total = 0
    i = 0
    while total < size:
        piece = f"[{i}] " + META_PIECES[i % len(META_PIECES)]
        parts.append(piece)
        total += len(piece.encode("utf-8"))
        i += 1
    return "-" + "".join(parts) + " trailing semicolon;"


async def test_multiline_task_arrives_byte_exact(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    result = await handoff(client, terminalId=tid, message="echo " + MULTILINE)
    assert result["output"] == MULTILINE
    users = [r["text"] for r in transcript(SIDECAR, tid) if r["type"] == "user"]
    assert users == ["echo " + MULTILINE], "one input, byte-exact"


async def test_20kb_metacharacter_task_arrives_byte_exact(client: LanguageClient):
    payload = big_payload()
    assert len(payload.encode("utf-8")) >= 20 * 1024
    for marker in ("pwned-subshell", "pwned-backtick", "pwned-format"):
        try:
            os.unlink(f"/tmp/cao-e2e-{marker}")
        except FileNotFoundError:
            pass
    tid = (await spawn(client))["terminalId"]
    result = await handoff(client, terminalId=tid, message="echo " + payload, timeoutSeconds=30)
    output = result["output"]
    if output != payload:  # show where it differs, not 20 KB of diff
        at = next((i for i, (a, b) in enumerate(zip(output, payload, strict=False)) if a != b), min(len(output), len(payload)))
        pytest.fail(
            f"output differs at {at} (lengths {len(output)} vs {len(payload)}): "
            f"got {output[max(0, at - 40) : at + 40]!r}, want {payload[max(0, at - 40) : at + 40]!r}"
        )
    users = [r["text"] for r in transcript(SIDECAR, tid) if r["type"] == "user"]
    assert len(users) == 1 and users[0] == "echo " + payload, "one input, byte-exact"
    for marker in ("pwned-subshell", "pwned-backtick", "pwned-format"):
        assert not os.path.exists(f"/tmp/cao-e2e-{marker}"), f"{marker}: text was interpreted by a shell or tmux"
    # The window's title/name was not changed by the OSC sequence in the text.
    pane = pane_of(SIDECAR, tid)
    assert pane is not None and "OSC title" not in pane["window"]


async def test_20kb_task_to_new_worker(client: LanguageClient):
    payload = big_payload()
    result = await handoff(client, profile="mock_developer", message="echo " + payload, timeoutSeconds=30)
    assert result["output"] == payload


DANGEROUS_MESSAGES = ["-n", "--help", "Enter", "C-c", "Escape", ";", "a;", "\\;", "'", '"', "$(id)", "~", "#{pane_id}", "é 🚀"]


async def test_dangerous_whole_messages(client: LanguageClient):
    """Texts that tmux send-keys would mangle, as the whole message (the mock answers "done: <task>")."""
    tid = (await spawn(client))["terminalId"]
    wrong = {}
    for message in DANGEROUS_MESSAGES:
        result = await handoff(client, terminalId=tid, message=message, timeoutSeconds=10)
        if result["output"] != "done: " + message:
            wrong[message] = result["output"]
    assert wrong == {}
    users = [r["text"] for r in transcript(SIDECAR, tid) if r["type"] == "user"]
    assert users == DANGEROUS_MESSAGES
