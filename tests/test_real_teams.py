"""Real teams: real agent CLIs lead and work for each other through our MCP tools (marked
`real_cli`; each test skips, saying why, when a CLI it needs is not installed: .ci/run puts them
in .ci/node).

Only the model is fake (tests/fixtures/fake_model_server.py): the lead's model asks for a call of
our tool (`call: TOOL {JSON}`), the lead CLI calls it over MCP with no permission prompt, a real
worker CLI takes the task and its model answers; the lead's next model request carries the
worker's answer (the fake answers `say: X` found in it with X), so the lead's final answer proves
the round trip; a `model` given to the handoff reaches the worker's model requests. The cases run in parallel within one test to keep the module near 60 s.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from pytest_lsp import LanguageClient

from conftest import ROOT, initialize, kill_tmux, request, sidecar_config
from fixtures.fake_model_server import FakeModelServer

NODE_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
SEARCH = os.pathsep.join([str(NODE_BIN), os.environ.get("PATH", "")])
CLAUDE, CODEX, OPENCODE, GEMINI = (shutil.which(n, path=SEARCH) for n in ("claude", "codex", "opencode", "gemini"))
NEEDS_CLAUDE = pytest.mark.skipif(CLAUDE is None, reason="Claude Code is not installed (npm install @anthropic-ai/claude-code)")
NEEDS_CODEX = pytest.mark.skipif(CODEX is None, reason="Codex is not installed (npm install @openai/codex)")
NEEDS_OPENCODE = pytest.mark.skipif(OPENCODE is None, reason="OpenCode is not installed (npm install opencode-ai)")
NEEDS_GEMINI = pytest.mark.skipif(GEMINI is None, reason="Gemini CLI is not installed (npm install @google/gemini-cli)")

MODEL = FakeModelServer(delay=0.005).start()
_cache = ROOT / ".pytest_cache"  # private, unlike /tmp (Gemini CLI and others refuse world-writable dirs)
_cache.mkdir(exist_ok=True)
BASE = Path(tempfile.mkdtemp(prefix="cao-teams-", dir=_cache))
CONFIG, SIDECAR = sidecar_config(BASE)
atexit.register(shutil.rmtree, BASE, True)
atexit.register(kill_tmux, SIDECAR.socket)
SIDECAR.env["PATH"] = SEARCH
# Real CLIs start slowly on a loaded 2-core machine (Codex once took over 40 s to reach our MCP
# server in CI while the other module ran beside it); CAO_TEST_READY_TIMEOUT overrides.
SIDECAR.env["CAO_READY_TIMEOUT"] = os.environ.get("CAO_TEST_READY_TIMEOUT", "120")
READY = float(SIDECAR.env["CAO_READY_TIMEOUT"])
(BASE / "home" / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
(BASE / "config" / "opencode").mkdir(parents=True)
(BASE / "config" / "opencode" / "opencode.json").write_text(
    json.dumps(
        {
            "$schema": "https://opencode.ai/config.json",
            "model": "anthropic/claude-sonnet-4-5",
            "provider": {"anthropic": {"options": {"baseURL": f"{MODEL.url}/v1", "apiKey": "fake-key"}}},
        }
    )
)

CLAUDE_ENV = f"env:\n  ANTHROPIC_BASE_URL: {MODEL.url}\n  ANTHROPIC_AUTH_TOKEN: fake-token\n"
PROFILES = {
    # A lead like the built-in supervisor: no allowedTools, no permissionMode.
    "claude_lead": f"---\nname: claude_lead\ndescription: Claude Code lead\nprovider: claude_code\neffort: low\n{CLAUDE_ENV}---\nYou lead.\n",
    "claude_worker": f"---\nname: claude_worker\ndescription: Claude Code worker\nprovider: claude_code\n{CLAUDE_ENV}---\nYou work.\n",
    "codex_worker": f"""---
name: codex_worker
description: Codex worker
provider: codex
env:
  FAKE_KEY: fake-key
args: ["-c", 'model_provider="fake"', "-c", 'model_providers.fake={{name="fake", base_url="{MODEL.url}/v1", wire_api="responses", env_key="FAKE_KEY"}}']
---
You are the codex worker.
""",
    # Codex 0.169 sent its default model's turns without tools to the fake server: name a model.
    "codex_lead": f"""---
name: codex_lead
description: Codex lead
provider: codex
model: fake-codex-model
env:
  FAKE_KEY: fake-key
args: ["-c", 'model_provider="fake"', "-c", 'model_providers.fake={{name="fake", base_url="{MODEL.url}/v1", wire_api="responses", env_key="FAKE_KEY"}}']
---
You lead.
""",
    # No model named: Gemini CLI's model router (a classifier request) picks it; the fake answers it.
    "gemini_worker": f"""---
name: gemini_worker
description: Gemini CLI worker
provider: gemini_cli
env:
  GEMINI_API_KEY: fake-key
  GOOGLE_GEMINI_BASE_URL: {MODEL.url}
---
You work.
""",
    # No network here: OpenCode would wait for models.dev to time out at every start.
    "opencode_worker": "---\nname: opencode_worker\ndescription: OpenCode worker\nprovider: opencode\n"
    "env:\n  OPENCODE_DISABLE_MODELS_FETCH: '1'\n---\nYou work.\n",
}
_profiles = SIDECAR.workspace / ".cao" / "agents"
_profiles.mkdir(parents=True)
for _name, _text in PROFILES.items():
    (_profiles / f"{_name}.md").write_text(_text)

pytestmark = [
    pytest.mark.real_cli,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(420),
]  # a loaded CI machine starts real CLIs slowly


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: LanguageClient):
    await initialize(lsp_client, SIDECAR)
    yield
    for agent in (await request(lsp_client, "cao/listAgents", {}))["agents"]:
        if agent["status"] != "exited":
            await request(lsp_client, "cao/terminate", {"terminalId": agent["terminalId"]})
    await lsp_client.shutdown_session()
    kill_tmux(SIDECAR.socket)
    MODEL.stop()
    shutil.rmtree(BASE, ignore_errors=True)


def screen_of(terminal_id: str) -> str:
    for line in SIDECAR.tmux("list-panes", "-a", "-F", "#{pane_id} #{window_name}").splitlines():
        pane, _, window = line.partition(" ")
        if window.endswith(terminal_id):
            return SIDECAR.tmux("capture-pane", "-p", "-J", "-t", pane)
    return "(no pane)"


def workers_screens(lead: str) -> str:
    """Every agent's window but the lead's (every one for ""), for a failure's message."""
    out = []
    for line in SIDECAR.tmux("list-panes", "-a", "-F", "#{pane_id} #{window_name}").splitlines():
        pane, _, window = line.partition(" ")
        if not lead or not window.endswith(lead):
            out.append(f"--- {window}:\n" + SIDECAR.tmux("capture-pane", "-p", "-J", "-t", pane))
    return "\n".join(out)


def events_tail(count: int = 40) -> str:
    """The orchestrator's last events (spawn, status, input, mcp.connected, ...), for a failure's message."""
    path = BASE / "state" / "cao-sidecar" / "logs" / "events.jsonl"
    try:
        return "events:\n" + "\n".join(line[:300] for line in path.read_text().splitlines()[-count:])
    except OSError as exc:
        return f"(no events: {exc})"


async def spawn(client: LanguageClient, profile: str) -> str:
    try:
        result = await request(client, "cao/spawn", {"profile": profile}, timeout=READY + 30)
    except Exception as exc:
        raise AssertionError(f"spawn of {profile} failed ({exc!r}):\n{workers_screens('')}\n{events_tail()}") from exc
    assert result["status"] in ("idle", "completed"), result
    return result["terminalId"]


def call(tool: str, **arguments: str) -> str:
    """A task the lead's fake model answers with a call of `tool`."""
    return f"call: {tool} {json.dumps(arguments)}"


async def lead_turn(client: LanguageClient, lead: str, task: str) -> str:
    """One turn of a lead (cao/handoff to it), with no permission prompt; on failure, its screen."""
    before = len(SIDECAR.statuses(lead))  # startup dialogs (workspace trust) are answered by the core
    try:
        result = await request(client, "cao/handoff", {"terminalId": lead, "message": task}, timeout=READY + 60)
    except BaseException as exc:
        raise AssertionError(
            f"lead turn failed ({exc!r}); screen:\n{screen_of(lead)}\n{SIDECAR.statuses(lead)}\n{events_tail()}"
        ) from exc
    during = SIDECAR.statuses(lead)[before:]
    assert "waiting_user_answer" not in during, (during, screen_of(lead))
    return result["output"]


def model_saw(path_end: str, text: str) -> bool:
    return any(
        r["path"].split("?")[0].endswith(path_end) and text in json.dumps(r["body"], ensure_ascii=False) for r in MODEL.requests
    )


async def claude_lead_hands_off_to(client: LanguageClient, worker: str, marker: str, model: str | None) -> None:
    lead = await spawn(client, "claude_lead")
    # The worker's answer is "say: MARKER"; the lead's model, seeing it in the tool result, says MARKER.
    extra = {"model": model} if model else {}
    task = call("mcp__cao__handoff", target=worker, task=f"please say: say: {marker}", **extra)
    output = await lead_turn(client, lead, task)
    # (the fake reads "say: X" up to the line's end: the tool result's JSON copy may follow X)
    assert output.startswith(marker), (output, screen_of(lead), workers_screens(lead), events_tail())
    await request(client, "cao/terminate", {"terminalId": lead}, timeout=30)


async def claude_lead_messages(client: LanguageClient, marker: str) -> None:
    """send_message between two real CLIs: a Claude Code lead to a running Codex agent."""
    codex = await spawn(client, "codex_worker")
    lead = await spawn(client, "claude_lead")
    await lead_turn(client, lead, call("mcp__cao__send_message", target=codex, message=f"please say: {marker}"))
    try:
        await SIDECAR.wait_for(
            "cao/agentStatus", lambda p: p["terminalId"] == codex and p["status"] == "completed", timeout=READY
        )
    except asyncio.TimeoutError:
        raise AssertionError(f"codex never answered the message; screen:\n{screen_of(codex)}\n{events_tail()}") from None
    assert model_saw("/responses", marker), "the message never reached Codex's model"
    assert marker in screen_of(codex)
    for tid in (lead, codex):
        await request(client, "cao/terminate", {"terminalId": tid}, timeout=30)


async def codex_lead_assigns_to_claude(client: LanguageClient, marker: str) -> None:
    """A Codex lead assigns to a Claude Code worker; the worker's answer is typed into the lead's
    terminal and the lead goes on: its next model request carries the answer, naming the worker."""
    lead = await spawn(client, "codex_lead")
    seen = len(MODEL.requests)
    task = call("mcp__cao__assign", target="claude_worker", task=f"please say: {marker}")
    await request(client, "cao/sendMessage", {"terminalId": lead, "message": task})
    try:
        done = await SIDECAR.wait_for("cao/workerCompleted", lambda p: p["output"] == marker, timeout=READY + 60)
    except asyncio.TimeoutError:
        raise AssertionError(
            f"no worker answered; lead's screen:\n{screen_of(lead)}\n{workers_screens(lead)}\n{events_tail()}"
        ) from None
    worker = done["terminalId"]

    def delivered() -> bool:  # a new user input of the lead carrying the answer (not the tool call's echo)
        for r in MODEL.requests[seen:]:
            users = [i for i in r["body"].get("input") or [] if isinstance(i, dict) and i.get("role") == "user"]
            last = json.dumps(users[-1:], ensure_ascii=False)
            if r["path"].endswith("/responses") and marker in last and worker in last and "call: " not in last:
                return True
        return False

    for _ in range(300):
        if delivered():
            break
        await asyncio.sleep(0.1)
    assert delivered(), f"the answer never reached the lead's model; screen:\n{screen_of(lead)}"
    await request(client, "cao/terminate", {"terminalId": lead}, timeout=30)


@NEEDS_CLAUDE
@NEEDS_CODEX
@NEEDS_OPENCODE
async def test_claude_code_lead_with_codex_and_opencode_workers(client: LanguageClient) -> None:
    """In parallel: a Claude Code lead hands off to a real Codex worker, another to a real
    OpenCode worker, a third sends a message to a running Codex agent; a Codex lead assigns to a
    Claude Code worker and gets its answer in its terminal."""
    await asyncio.gather(
        claude_lead_hands_off_to(client, "codex_worker", "codex-relayed-31", "fake-codex-model"),
        claude_lead_hands_off_to(client, "opencode_worker", "opencode-relayed-32", "anthropic/claude-opus-4-5"),
        claude_lead_messages(client, "message-from-claude-33"),
        codex_lead_assigns_to_claude(client, "claude-result-34"),
    )
    assert model_saw("/responses", "codex-relayed-31") and model_saw("/messages", "opencode-relayed-32")
    # The handoff's `model` reached each worker's CLI in its own terms (Codex --model, OpenCode
    # --model provider/model): the workers' turns asked the model server for those models.
    asked = {
        r["body"].get("model")
        for r in MODEL.requests
        if "relayed-3" in json.dumps(r["body"]) and "please say" in json.dumps(r["body"])
    }
    assert {"fake-codex-model", "claude-opus-4-5"} <= asked, asked
    # The leads' profile says `effort: low`: Claude Code sent it with its turns.
    efforts = {json.dumps(r["body"].get("output_config")) for r in MODEL.requests if "mcp__cao__handoff" in json.dumps(r["body"])}
    assert any('"low"' in e for e in efforts), efforts


@NEEDS_CLAUDE
@NEEDS_GEMINI
async def test_claude_code_lead_with_a_gemini_cli_worker(client: LanguageClient) -> None:
    """A Claude Code lead hands off to a real Gemini CLI worker that names no model: Gemini CLI
    asks its model router (a classifier request with a JSON schema) first, then takes the turn."""
    await claude_lead_hands_off_to(client, "gemini_worker", "gemini-relayed-35", None)
    gemini = [
        r for r in MODEL.requests if "generatecontent" in r["path"].lower() and "gemini-relayed-35" in json.dumps(r["body"])
    ]
    routed = [r for r in gemini if (r["body"].get("generationConfig") or {}).get("responseMimeType") == "application/json"]
    turns = [r for r in gemini if ":streamGenerateContent" in r["path"] and r not in routed]
    assert routed and turns, [r["path"] for r in gemini]
