"""Events beat screens: hook payloads → statuses (Claude Code hooks, Codex notify, Gemini hooks),
the transcript reader, the hook endpoint (authenticated by the agent's own token), and the
core's turn machinery with both sources (Agent.apply_event / overruled_by_events, the
orchestrator's screen fallback).
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from cao_sidecar.agent_face.credentials import CredentialStore
from cao_sidecar.agent_face.hooks import HookEndpoint
from cao_sidecar.core.agent import Agent, Transition
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.core.typist import input_dropped
from cao_sidecar.profiles.profile import Profile
from cao_sidecar.providers import get_provider
from cao_sidecar.providers.claude_code import read_transcript_answer, transcript_answer

S = AgentStatus
RELAY = Path(__file__).resolve().parent.parent / "cao_sidecar" / "providers" / "hook_relay.py"

# Real payloads (Claude Code 2.1.197 HTTP hooks, Codex 0.169.0 notify), trimmed.
CLAUDE_STOP = {
    "session_id": "f02a897f-8700-4ff0-998e-e917269afdf4",
    "transcript_path": "/nonexistent/f02a897f-8700-4ff0-998e-e917269afdf4.jsonl",
    "cwd": "/tmp/cap/wclaude",
    "hook_event_name": "Stop",
    "stop_hook_active": False,
    "last_assistant_message": "hello from claude ❯ with a prompt char",
}
CODEX_NOTIFY = {
    "type": "agent-turn-complete",
    "thread-id": "01a1fdfb-da68-7633-b5e2-5dbd1e746b7f",
    "turn-id": "01a1fdfb-ed20-7040-aa8e-be14f09a27f5",
    "cwd": "/tmp/cap/wcodex",
    "client": "codex-tui",
    "input-messages": ["please say: hello from codex > with › chars"],
    "last-assistant-message": "hello from codex > with › chars",
}
CODEX_TITLE_NOTIFY = dict(
    CODEX_NOTIFY,
    **{
        "input-messages": [
            "Generate a concise, single-line task title of at most 36 characters ...\n\nUser prompt:\n"
            "please say: hello from codex > with › chars"
        ]
    },
)


# ---- payload → status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "answer"),
    [
        ({"hook_event_name": "UserPromptSubmit", "prompt": "x"}, S.PROCESSING, None),
        ({"hook_event_name": "PreToolUse", "tool_name": "Bash"}, S.PROCESSING, None),
        ({"hook_event_name": "PostToolUse", "tool_name": "Bash"}, S.PROCESSING, None),
        ({"hook_event_name": "PermissionRequest", "tool_name": "Bash"}, S.WAITING_USER_ANSWER, None),
        (
            {
                "hook_event_name": "Notification",
                "notification_type": "permission_prompt",
                "message": "Claude needs your permission",
            },
            S.WAITING_USER_ANSWER,
            None,
        ),
        (
            {
                "hook_event_name": "Notification",
                "notification_type": "idle_prompt",
                "message": "Claude is waiting for your input",
            },
            None,
            None,
        ),
        ({"hook_event_name": "StopFailure", "error": "rate_limit"}, S.ERROR, None),
        (CLAUDE_STOP, S.COMPLETED, "hello from claude ❯ with a prompt char"),
        ({"hook_event_name": "SessionStart"}, None, None),
        ("not a dict", None, None),
    ],
)
def test_claude_code_hooks(payload: Any, status: Any, answer: Any) -> None:
    event = get_provider("claude_code").hook_event("claude_code", payload, None)
    if status is None:
        assert event is None
    else:
        assert event is not None and event.status is status and event.answer == answer


def test_claude_code_stop_without_message_reads_the_transcript(tmp_path: Path) -> None:
    session = "0b5e7c52-1111-4a4a-9a9a-123456789abc"
    project = tmp_path / ".claude" / "projects" / "-work"
    project.mkdir(parents=True)
    transcript = project / f"{session}.jsonl"
    records = [
        {"type": "user", "message": {"role": "user", "content": "first"}},
        {"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": "old answer"}]}},
        {"type": "user", "message": {"role": "user", "content": "run it"}},
        {"type": "assistant", "message": {"content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}},
        {"type": "assistant", "message": {"content": [{"type": "text", "text": "Done.\n\n❯ not a prompt"}]}},
        {"type": "assistant", "message": {"content": [{"type": "text", "text": "Second block."}]}},
        {"type": "system", "content": "x"},
    ]
    transcript.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"type": "assist')  # last line mid-write
    payload = {"hook_event_name": "Stop", "session_id": session, "transcript_path": str(transcript)}
    event = get_provider("claude_code").hook_event("claude_code", payload, None)
    assert event is not None and event.answer == "Done.\n\n❯ not a prompt\n\nSecond block."
    # Only the session's own transcript is read, never another file the payload points at.
    other = tmp_path / "secret.txt"
    other.write_text("secret")
    assert read_transcript_answer(str(other), "secret") is None
    assert read_transcript_answer(str(transcript), "another-session") is None
    assert transcript_answer([]) is None


def test_codex_notify() -> None:
    codex = get_provider("codex")
    event = codex.hook_event("codex", CODEX_NOTIFY, "please say: hello from codex > with › chars")
    assert event is not None and event.status is S.COMPLETED and event.confirmed
    assert event.answer == "hello from codex > with › chars"
    # Codex's own side thread that names the task is not our turn.
    assert codex.hook_event("codex", CODEX_TITLE_NOTIFY, "please say: hello from codex > with › chars") is None
    assert codex.hook_event("codex", CODEX_TITLE_NOTIFY, None) is None
    # A turn the user typed (no turn text known) still counts, unconfirmed.
    event = codex.hook_event("codex", CODEX_NOTIFY, None)
    assert event is not None and not event.confirmed
    assert codex.hook_event("codex", {"type": "something-else"}, None) is None


def test_gemini_hooks() -> None:
    gemini = get_provider("gemini_cli")
    assert gemini.hook_event("gemini_cli", {"hook_event_name": "BeforeAgent", "prompt": "x"}, None).status is S.PROCESSING
    # The answer is the relay's copy from the transcript; Gemini's own `prompt_response` is garbled
    # when streamed (no copy: the screen's answer is read instead).
    done = gemini.hook_event(
        "gemini_cli", {"hook_event_name": "AfterAgent", "prompt_response": "a b c b  c", "cao_answer": "✦ fine"}, None
    )
    assert done.status is S.COMPLETED and done.answer == "✦ fine"
    garbled = gemini.hook_event("gemini_cli", {"hook_event_name": "AfterAgent", "prompt_response": "a b c b  c"}, None)
    assert garbled.status is S.COMPLETED and garbled.answer is None
    waiting = gemini.hook_event("gemini_cli", {"hook_event_name": "Notification", "notification_type": "ToolPermission"}, None)
    assert waiting.status is S.WAITING_USER_ANSWER


# ---- the relay program (Codex notify, Gemini command hooks) -------------------------------------


def test_hook_relay_posts_with_the_agents_token(tmp_path: Path) -> None:
    seen: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            seen.append((self.path, self.headers["authorization"], body))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        token = tmp_path / "credential"
        token.write_text("tok-123\n")
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/codex"
        argv = [sys.executable, str(RELAY), "--url", url, "--token-file", str(token)]
        subprocess.run(argv + [json.dumps(CODEX_NOTIFY)], check=True, timeout=20)
        stdin = subprocess.run(
            argv + ["--stdin"], input=b'{"hook_event_name": "AfterAgent"}', capture_output=True, check=True, timeout=20
        )
        assert stdin.stdout.strip() == b"{}"
        # The sidecar being gone never breaks the CLI: exit 0, quickly.
        dead = subprocess.run(
            [sys.executable, str(RELAY), "--url", "http://127.0.0.1:9/hooks/x", "--token-file", str(token), "{}"], timeout=20
        )
        assert dead.returncode == 0
    finally:
        server.shutdown()
    assert [(p, a) for p, a, _ in seen] == [("/hooks/codex", "Bearer tok-123")] * 2
    assert json.loads(seen[0][2]) == CODEX_NOTIFY


def test_hook_relay_adds_geminis_answer_from_its_transcript(tmp_path: Path) -> None:
    """Gemini CLI 0.61's AfterAgent `prompt_response` for an answer streamed as "a b c" in three
    chunks is "a b c b  c"; the transcript it names has the answer whole (as 0.61 writes it)."""
    relay = runpy.run_path(str(RELAY), run_name="relay")
    transcript = tmp_path / "session.jsonl"
    records = [
        {"sessionId": "s", "kind": "main"},
        {"id": "1", "type": "user", "content": [{"text": "please say: a b c"}]},
        {"id": "2", "type": "gemini", "content": "old answer"},
        {"$set": {"lastUpdated": "x"}},
        {"id": "3", "type": "user", "content": [{"text": "please say: **a** b c"}]},
        {"id": "4", "type": "gemini", "content": "first part", "toolCalls": [{"name": "handoff"}]},
        {"id": "4b", "type": "user", "content": [{"functionResponse": {"name": "handoff"}}]},
        {"id": "5", "type": "gemini", "content": [{"text": "**a** "}, {"text": "b c"}]},
    ]
    transcript.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    payload = {
        "hook_event_name": "AfterAgent",
        "transcript_path": str(transcript),
        "prompt": "please say: **a** b c",
        "prompt_response": "**a** b c b  c",
    }
    added = json.loads(relay["with_answer"](json.dumps(payload).encode()))
    assert added == {**payload, "cao_answer": "first part\n**a** b c"}
    # Not this turn's transcript (its prompt is not there), none, or another event: unchanged.
    for other in (
        {**payload, "prompt": "something else"},
        {**payload, "transcript_path": str(tmp_path / "none")},
        {**payload, "hook_event_name": "BeforeAgent"},
        {**payload, "transcript_path": 5},
    ):
        assert relay["with_answer"](json.dumps(other).encode()) == json.dumps(other).encode()
    assert relay["with_answer"](b"not json") == b"not json"


def test_hook_relay_imports_nothing_of_the_package() -> None:
    code = (
        f"import runpy, sys; sys.argv = ['x']; runpy.run_path({str(RELAY)!r}, run_name='not_main'); "
        "print([m for m in sys.modules if m.startswith('cao_sidecar')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20).stdout
    assert out.strip() == "[]"


# ---- the hook endpoint ----------------------------------------------------------------------------


class FakeCore:
    def __init__(self) -> None:
        self.agents: dict[str, Any] = {}
        self.events: list[tuple[str, AgentStatus, Any, bool]] = []

    def agent_event(self, agent: Any, status: AgentStatus, answer: Any = None, *, confirmed: bool = False) -> None:
        self.events.append((agent.terminal_id, status, answer, confirmed))


class FakeAgent:
    def __init__(self, terminal_id: str, provider: str) -> None:
        self.terminal_id = terminal_id
        self.provider = get_provider(provider)
        self.turn = None


async def call(app: Any, method: str, path: str, body: bytes = b"", token: str | None = None) -> tuple[int, Any]:
    headers = [(b"content-type", b"application/json")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    chunks = [
        {"type": "http.request", "body": body[:5], "more_body": True},
        {"type": "http.request", "body": body[5:], "more_body": False},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    return status, json.loads(sent[1]["body"] or b"null")


async def test_hook_endpoint_attributes_events_by_token(tmp_path: Path) -> None:
    core = FakeCore()
    credentials = CredentialStore()
    passed: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        passed.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    endpoint = HookEndpoint(inner, core, credentials)
    for tid, provider in (("aaaa0001", "claude_code"), ("bbbb0002", "codex")):
        (tmp_path / tid).mkdir()
        core.agents[tid] = FakeAgent(tid, provider)
    token_a = credentials.issue("aaaa0001", tmp_path / "aaaa0001")
    token_b = credentials.issue("bbbb0002", tmp_path / "bbbb0002")

    stop = json.dumps(dict(CLAUDE_STOP, terminal_id="bbbb0002")).encode()  # a body cannot claim an identity
    assert await call(endpoint, "POST", "/hooks/claude_code", stop, token_a) == (200, {})
    assert core.events == [("aaaa0001", S.COMPLETED, "hello from claude ❯ with a prompt char", False)]
    # Another agent's token: that agent, whose provider (codex) does not take Claude hooks.
    assert await call(endpoint, "POST", "/hooks/claude_code", stop, token_b) == (200, {})
    assert len(core.events) == 1
    assert (await call(endpoint, "POST", "/hooks/codex", json.dumps(CODEX_NOTIFY).encode(), token_b))[0] == 200
    assert core.events[-1][:3] == ("bbbb0002", S.COMPLETED, "hello from codex > with › chars")
    assert (await call(endpoint, "POST", "/hooks/claude_code", stop, "forged"))[0] == 401
    assert (await call(endpoint, "POST", "/hooks/claude_code", stop, None))[0] == 401
    assert (await call(endpoint, "GET", "/hooks/claude_code", b"", token_a))[0] == 405
    assert (await call(endpoint, "POST", "/hooks/claude_code", b"{nope", token_a))[0] == 400
    credentials.revoke("aaaa0001")
    assert (await call(endpoint, "POST", "/hooks/claude_code", stop, token_a))[0] == 401
    assert len(core.events) == 2
    # Everything else goes to the MCP app.
    assert (await call(endpoint, "POST", "/mcp", b"{}", token_a))[0] == 204 and passed == ["/mcp"]


# ---- the turn machinery with both sources -----------------------------------------------------------


def make_agent(tmp_path: Path, provider: str = "claude_code") -> Agent:
    return Agent(
        terminal_id="cccc0003",
        session="cao",
        profile=Profile(name="p", provider=provider),
        provider=get_provider(provider),
        working_directory=str(tmp_path),
        agent_dir=tmp_path,
    )


async def test_events_end_turns_and_screens_cannot(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    agent.events_active = True
    agent.apply(S.IDLE, "idle screen")  # no turn, no recent event: screens drive
    assert agent.status is S.IDLE
    turn = agent.begin_turn("task")
    assert agent.overruled_by_events(S.COMPLETED) and agent.overruled_by_events(S.IDLE)
    assert agent.overruled_by_events(S.PROCESSING)
    assert not agent.overruled_by_events(S.WAITING_USER_ANSWER)  # dialogs always count
    assert not agent.overruled_by_events(S.EXITED)
    busy = agent.apply_event(S.PROCESSING)
    assert busy.previous is S.IDLE and busy.finished is None and turn.seen_busy
    finished = agent.apply_event(S.COMPLETED, "exact answer").finished
    assert finished is not None and finished.status is S.COMPLETED and finished.answer == "exact answer"
    # Right after an event a lagging redraw is not news either.
    agent.turn = None
    assert agent.overruled_by_events(S.PROCESSING)


async def test_codex_events_cover_completion_only(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "codex")
    agent.events_active = True
    agent.begin_turn("task")
    assert agent.overruled_by_events(S.COMPLETED) and agent.overruled_by_events(S.IDLE)
    assert not agent.overruled_by_events(S.PROCESSING)  # the screen still says it is busy
    assert not agent.overruled_by_events(S.ERROR)
    # A completion that was never seen busy and does not name the input: a stale event.
    assert agent.apply_event(S.COMPLETED, "old") == Transition(None, None)
    finished = agent.apply_event(S.COMPLETED, "new", confirmed=True).finished
    assert finished is not None and finished.answer == "new"


async def test_without_events_screens_drive(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "aider")
    agent.begin_turn("task")
    assert not agent.overruled_by_events(S.COMPLETED)


# Qwen Code screens (0.15.10, under load): its Stop hook came while it still showed the turn's
# spinner; the next task, typed then, was queued, then hidden for seconds before it ran.
QWEN_RULE = "─" * 60
QWEN_BUSY_WITH_TEXT = f"""  > please say: one

  ✦ one

  .   a cat walking on the keyboard somewhere... (1s · ↓ 4 tokens · esc to cancel)
{QWEN_RULE}
> please run: touch made-by-qwen
{QWEN_RULE}
  ? for shortcuts
"""
QWEN_EMPTY_PROMPT = f"""  > please say: one

  ✦ one

{QWEN_RULE}
>   Type your message or @path/to/file
{QWEN_RULE}
  ? for shortcuts
"""


async def test_a_text_typed_into_a_busy_cli_is_not_dropped_when_it_hides_it(tmp_path: Path) -> None:
    """Typed again, the text would run twice, and the next task would get the copy's answer."""
    agent = make_agent(tmp_path, "qwen_code")
    agent.apply_event(S.COMPLETED, "one")  # the Stop hook, before Qwen Code is done
    qwen = get_provider("qwen_code")
    assert qwen.classify(QWEN_BUSY_WITH_TEXT) is S.PROCESSING and qwen.classify(QWEN_EMPTY_PROMPT) is S.COMPLETED
    turn = agent.begin_turn("please run: touch made-by-qwen")
    for screen in (QWEN_BUSY_WITH_TEXT, QWEN_EMPTY_PROMPT):
        status = qwen.classify(screen)
        assert agent.overruled_by_events(status)
        agent.keep_overruled_screen(status, screen)
    assert agent.screen == QWEN_EMPTY_PROMPT and agent.status is S.COMPLETED and not turn.seen_busy
    assert not input_dropped(agent, turn)
    # Typed while the last screen showed it busy, and no busy screen since: not dropped either.
    agent.keep_overruled_screen(S.PROCESSING, QWEN_BUSY_WITH_TEXT)
    turn = agent.begin_turn("please run: touch made-by-qwen")
    agent.keep_overruled_screen(S.COMPLETED, QWEN_EMPTY_PROMPT)
    assert not input_dropped(agent, turn)
    # Never seen busy, at its prompt, the text nowhere: dropped (typed again).
    turn = agent.begin_turn("please run: touch made-by-qwen")
    agent.keep_overruled_screen(S.COMPLETED, QWEN_EMPTY_PROMPT)
    assert input_dropped(agent, turn)
