"""End to end, editor face: cao/assign with cao/workerCompleted, and cao/sendMessage.

A real sidecar (`python -m cao_sidecar --stdio`, started by pytest-lsp) on its own tmux server,
real mock agents. What an agent received is read from its transcript (one JSON record per input
and per answer, written by the mock agent).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
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

CONFIG, SIDECAR = new_sidecar("assign")
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]


client, clean = module_fixtures(CONFIG, SIDECAR)


def completed_for(tid: str):
    return SIDECAR.wait_for("cao/workerCompleted", lambda p: p["terminalId"] == tid, 15)


def completions(tid: str) -> list[dict]:
    return [n for n in SIDECAR.notifications["cao/workerCompleted"] if n["terminalId"] == tid]


def inputs(tid: str) -> list[str]:
    return [r["text"] for r in transcript(SIDECAR, tid) if r["type"] == "user"]


def answers(tid: str) -> list[str]:
    return [r["text"] for r in transcript(SIDECAR, tid) if r["type"] == "assistant"]


# ---- assign -----------------------------------------------------------------------------------------


async def test_assign_answers_at_once_then_worker_completed(client: LanguageClient):
    result = await request(client, "cao/assign", {"profile": "mock_developer", "message": "echo assigned work"})
    tid = result["terminalId"]
    assert set(result) == {"terminalId"}
    # Answered before the worker was ready: no status but "starting" was notified before the answer.
    assert SIDECAR.statuses(tid) == ["starting"]
    assert (await list_agents(client))[tid]["status"] == "starting"

    done = await completed_for(tid)
    assert done == {
        "terminalId": tid,
        "profile": "mock_developer",
        "status": "completed",
        "output": "assigned work",
        "error": None,
        "worktree": None,
    }
    # Kept (default keep: true): listed, window alive, answer readable.
    agents = await list_agents(client)
    assert tid in agents and agents[tid]["status"] == "completed"
    assert pane_of(SIDECAR, tid) is not None
    assert await request(client, "cao/getOutput", {"terminalId": tid}) == {"output": "assigned work"}
    assert SIDECAR.statuses(tid) == ["starting", "idle", "processing", "completed"]
    assert len(completions(tid)) == 1


async def test_assign_keep_false_tears_down_after_completion(client: LanguageClient):
    result = await request(client, "cao/assign", {"profile": "mock_reviewer", "message": "echo short-lived", "keep": False})
    tid = result["terminalId"]
    done = await completed_for(tid)
    assert done["status"] == "completed" and done["output"] == "short-lived" and done["error"] is None

    async def gone() -> bool:
        return tid not in await list_agents(client) and window_gone(SIDECAR, tid)

    await eventually(gone, 5, what="worker torn down")
    await eventually(lambda: SIDECAR.statuses(tid)[-1:] == ["exited"], 3, what="status exited")
    assert len(completions(tid)) == 1


async def test_assign_working_directory_and_session(client: LanguageClient):
    other = SIDECAR.base / "assign-cwd"
    other.mkdir(exist_ok=True)
    result = await request(
        client,
        "cao/assign",
        {"profile": "mock_developer", "message": "echo x", "workingDirectory": str(other), "session": "e2e-assign"},
    )
    tid = result["terminalId"]
    await completed_for(tid)
    info = (await list_agents(client))[tid]
    assert info["workingDirectory"] == str(other)
    assert info["session"] == "e2e-assign"
    pane = pane_of(SIDECAR, tid)
    assert pane is not None and os.path.realpath(pane["cwd"]) == os.path.realpath(other)


async def test_assign_failing_task(client: LanguageClient):
    tid = (await request(client, "cao/assign", {"profile": "mock_developer", "message": "fail compiler exploded"}))["terminalId"]
    done = await completed_for(tid)
    assert done["status"] == "error"
    assert isinstance(done["error"], str) and done["error"]
    assert done["profile"] == "mock_developer"
    assert len(completions(tid)) == 1


async def test_assign_worker_exits(client: LanguageClient):
    tid = (await request(client, "cao/assign", {"profile": "mock_developer", "message": "exit"}))["terminalId"]
    done = await completed_for(tid)
    assert done["status"] == "exited"
    assert isinstance(done["error"], str) and done["error"]


async def test_assign_timeout(client: LanguageClient):
    started = time.monotonic()
    tid = (await request(client, "cao/assign", {"profile": "mock_developer", "message": "sleep 30 slow", "timeoutSeconds": 1}))[
        "terminalId"
    ]
    done = await completed_for(tid)
    assert time.monotonic() - started < 4.0
    assert isinstance(done["error"], str) and done["error"]
    assert done["status"] != "completed"


async def test_assign_errors_answered_at_once(client: LanguageClient):
    exc = await rpc_error(request(client, "cao/assign", {"profile": "no_such_profile", "message": "echo x"}))
    assert exc.code == -31001
    exc = await rpc_error(
        request(client, "cao/assign", {"profile": "mock_developer", "provider": "no_such_cli", "message": "echo x"})
    )
    assert exc.code == -31002
    exc = await rpc_error(request(client, "cao/assign", {"profile": "mock_developer"}))
    assert exc.code == -32602 and "message" in exc.message
    exc = await rpc_error(
        request(
            client,
            "cao/assign",
            {"profile": "mock_developer", "message": "echo x", "workingDirectory": str(SIDECAR.base / "nope")},
        )
    )
    assert exc.code == -32602 and "workingDirectory" in exc.message
    assert await list_agents(client) == {}


# ---- sendMessage ------------------------------------------------------------------------------------


async def test_send_message_to_idle_agent_is_delivered(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    result = await request(client, "cao/sendMessage", {"terminalId": tid, "message": "hello there"})
    assert result["state"] == "delivered"
    assert isinstance(result["messageId"], str) and result["messageId"]
    await eventually(lambda: answers(tid) == ["done: hello there"], 5, what="the agent's answer")
    assert inputs(tid) == ["hello there"]
    await eventually(lambda: SIDECAR.statuses(tid)[-1:] == ["completed"], 5, what="status completed after the message")
    assert await request(client, "cao/getOutput", {"terminalId": tid}) == {"output": "done: hello there"}


async def test_send_message_with_sender(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    result = await request(client, "cao/sendMessage", {"terminalId": tid, "message": "ping", "sender": "alice"})
    assert result["state"] == "delivered"
    await eventually(lambda: answers(tid), 5, what="the agent's answer")
    (received,) = inputs(tid)
    assert "alice" in received and received.endswith("ping")


async def test_send_message_to_busy_agent_is_queued_in_order_exactly_once(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    first = await request(client, "cao/sendMessage", {"terminalId": tid, "message": "sleep 1 first task"})
    assert first["state"] == "delivered"
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "processing", 5)
    messages = ["message one", "message two", "message three"]
    ids = []
    for message in messages:
        result = await request(client, "cao/sendMessage", {"terminalId": tid, "message": message})
        assert result["state"] == "queued", (message, result)
        ids.append(result["messageId"])
    assert len(set(ids + [first["messageId"]])) == 4, "message ids are distinct"
    # Nothing was typed in while the agent was busy.
    assert inputs(tid) == ["sleep 1 first task"]
    want = ["first task"] + [f"done: {m}" for m in messages]
    await eventually(lambda: len(answers(tid)) >= 4, 10, what="four answers")
    assert answers(tid) == want
    assert inputs(tid) == ["sleep 1 first task"] + messages, "in order, each exactly once"
    # One message per turn: the agent completed a turn before each queued message went in. (The
    # last turn's notification can reach us after its answer is in the transcript: wait for it.)
    await eventually(lambda: SIDECAR.statuses(tid).count("completed") >= 4, 5, what="four completed statuses")
    statuses = SIDECAR.statuses(tid)
    assert statuses.count("completed") == 4, statuses
    # And nothing is delivered twice later.
    await eventually(lambda: SIDECAR.statuses(tid)[-1] == "completed", 5)
    assert inputs(tid) == ["sleep 1 first task"] + messages


async def test_send_message_waits_for_question_to_be_answered(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    await request(client, "cao/sendMessage", {"terminalId": tid, "message": "ask Deploy now?"})
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "waiting_user_answer", 5)
    queued = await request(client, "cao/sendMessage", {"terminalId": tid, "message": "after the question"})
    assert queued["state"] == "queued"
    assert inputs(tid) == ["ask Deploy now?"]
    # The user answers in the agent's tmux window.
    pane = pane_of(SIDECAR, tid)
    assert pane is not None
    SIDECAR.tmux("send-keys", "-t", pane["pane_id"], "-l", "yes")
    SIDECAR.tmux("send-keys", "-t", pane["pane_id"], "Enter")
    await eventually(lambda: len(answers(tid)) >= 2, 10, what="answer to the question and to the message")
    assert answers(tid) == ["answered: yes", "done: after the question"]
    assert inputs(tid) == ["ask Deploy now?", "yes", "after the question"]


async def test_send_message_unknown_terminal(client: LanguageClient):
    exc = await rpc_error(request(client, "cao/sendMessage", {"terminalId": "00000000", "message": "hi"}))
    assert exc.code == -31003
    assert error_data(exc).get("terminalId") == "00000000"


async def test_send_message_missing_message(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    exc = await rpc_error(request(client, "cao/sendMessage", {"terminalId": tid}))
    assert exc.code == -32602
    assert "'message'" in exc.message
    assert inputs(tid) == []


async def test_send_message_to_exited_agent(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    pane = pane_of(SIDECAR, tid)
    assert pane is not None
    os.kill(int(pane["pid"]), signal.SIGKILL)
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "exited", 5)
    still_listed = tid in await list_agents(client)
    exc = await rpc_error(request(client, "cao/sendMessage", {"terminalId": tid, "message": "anyone?"}))
    assert exc.code == (-31006 if still_listed else -31003), (still_listed, exc.code, exc.message)


async def test_queued_messages_of_exiting_agent_are_dropped(client: LanguageClient):
    tid = (await spawn(client))["terminalId"]
    await request(client, "cao/sendMessage", {"terminalId": tid, "message": "sleep 30 long"})
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "processing", 5)
    queued = await request(client, "cao/sendMessage", {"terminalId": tid, "message": "never delivered"})
    assert queued["state"] == "queued"
    pane = pane_of(SIDECAR, tid)
    assert pane is not None
    os.kill(int(pane["pid"]), signal.SIGKILL)
    await SIDECAR.wait_for("cao/agentStatus", lambda p: p["terminalId"] == tid and p["status"] == "exited", 5)
    assert inputs(tid) == ["sleep 30 long"]
