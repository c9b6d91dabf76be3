"""The real agent CLIs, launched by a real sidecar through their providers (marked `real_cli`;
each test skips cleanly when its CLI is not installed: .ci/run puts them in .ci/node and
.ci/aider).

No model is reachable here, so the CLIs talk to tests/fixtures/fake_model_server.py on
127.0.0.1 (a fake key and base URL in the profile's env): their turns, hooks and notify
programs are real, only the model is not.

- Claude Code: startup trust dialog answered by the core; HTTP hooks reach the sidecar
  (processing, waiting on a permission prompt, completed with the exact answer from the Stop
  hook, which the screen could not give); our MCP server connected (its tools reach the
  model); the system prompt applied; `/exit` ends the process.
- A Claude Code lead (no allowedTools) calls our `handoff` tool with no permission prompt, and
  is reported ready only after our endpoint saw its MCP connection.
- Codex: notify program (agent-turn-complete) gives the answer; our MCP server's tools reach
  the model; `/exit`.
- Gemini CLI: API-key dialogs answered; ready only once our endpoint saw its MCP connection; the
  task typed right after ready goes to the model with our tools; the exact answer (from the
  transcript, via the AfterAgent hook); as a lead it calls our `handoff` (no confirmation) and a
  worker answers; `/quit`.
- OpenCode: a turn ended by its events (our plugin), the exact answer from them.
- Aider: a turn read from the screen (no event source).
"""

from __future__ import annotations

import asyncio
import json
import os
import re

from pytest_lsp import LanguageClient

from conftest import request
from fixtures.real_cli import (
    NEEDS_AIDER,
    NEEDS_CLAUDE,
    NEEDS_CODEX,
    NEEDS_GEMINI,
    NEEDS_OPENCODE,
    RealCliTeam,
    claude_env,
    codex_profile,
    real_cli_marks,
)

TEAM = RealCliTeam(
    "cao-real-", float(os.environ.get("CAO_TEST_READY_TIMEOUT", "90"))
)  # a CLI's first start on a loaded CI machine took over 40 s
CONFIG, SIDECAR, MODEL = TEAM.config, TEAM.sidecar, TEAM.model
SIDECAR.env["CAO_HANDOFF_PROGRESS_EVERY"] = "0.3"  # a handoff's progress notifications, when asked for
TEAM.write_opencode_config()
pane_of, screen_of, logged_events = TEAM.pane_of, TEAM.screen_of, TEAM.logged_events
spawn_ready, handoff, prompt_with_choices, exit_cleanly = (
    TEAM.spawn_ready,
    TEAM.handoff,
    TEAM.prompt_with_choices,
    TEAM.exit_cleanly,
)


def claude_lead(name: str, description: str, extra: str = "") -> str:
    return f"""---
name: {name}
description: {description}
provider: claude_code
{extra}{claude_env(MODEL)}---
You lead the team: delegate with handoff.
"""


PROFILES = {
    "claude_worker": f"""---
name: claude_worker
description: Claude Code against the fake model
provider: claude_code
{claude_env(MODEL)}---
You are the claude test worker (system prompt marker 7f3a).
""",
    # Like the built-in supervisor: no allowedTools, no permissionMode.
    "claude_lead": claude_lead("claude_lead", "A Claude Code lead against the fake model"),
    "claude_lead_asks": claude_lead(
        "claude_lead_asks", "A Claude Code lead that opted out of pre-approved team tools", "askForTeamTools: true\n"
    ),
    "codex_worker": codex_profile(
        MODEL,
        "codex_worker",
        "Codex against the fake model",
        "You are the codex test worker (system prompt marker 9c1e).",
        more_args=""", "-c", 'approval_policy="on-request"'""",
    ),
    # A Codex lead (Codex 0.169 sent its default model's turns without tools to the fake: a model named).
    "codex_lead": codex_profile(
        MODEL,
        "codex_lead",
        "A Codex lead against the fake model",
        "You lead the team: delegate with handoff.",
        extra="model: fake-codex-model\n",
    ),
    "gemini_worker": f"""---
name: gemini_worker
description: Gemini CLI against the fake model
provider: gemini_cli
env:
  GEMINI_API_KEY: fake-key
  GOOGLE_GEMINI_BASE_URL: {MODEL.url}
---
You are the gemini test worker.
""",
    "opencode_worker": """---
name: opencode_worker
description: OpenCode against the fake model
provider: opencode
env:
  OPENCODE_DISABLE_MODELS_FETCH: "1"
---
You are the opencode test worker (system prompt marker 4d2b).
""",
    "aider_worker": f"""---
name: aider_worker
description: Aider against the fake model
provider: aider
model: openai/fake-model
env:
  OPENAI_API_KEY: fake-key
  OPENAI_API_BASE: {MODEL.url}/v1
args: ["--no-show-model-warnings", "--no-git"]
---
You are the aider test worker.
""",
}
TEAM.write_profiles(PROFILES)

pytestmark = real_cli_marks(timeout=120)
client = TEAM.client_fixture()


def requests_since(count: int) -> list[dict]:
    return MODEL.requests[count:]


@NEEDS_CLAUDE
async def test_claude_code_hooks_mcp_trust_and_exit(client: LanguageClient) -> None:
    seen = len(MODEL.requests)
    tid = await spawn_ready(client, "claude_worker")
    assert "waiting_user_answer" in SIDECAR.statuses(tid)  # the trust dialog, answered by the core

    # Markdown: the screen shows "exact answer code" — only the Stop hook has the exact text.
    assert await handoff(client, tid, "please say: **exact** `answer` ❯ •") == "**exact** `answer` ❯ •"
    asked = [
        r
        for r in requests_since(seen)
        if r["path"].startswith("/v1/messages") and "say: **exact**" in json.dumps(r["body"], ensure_ascii=False)
    ]
    assert asked, "the turn never reached the model"
    # Claude Code also sends side requests with the prompt (e.g. a title): one of them is the turn.
    assert any("system prompt marker 7f3a" in json.dumps(r["body"], ensure_ascii=False) for r in asked)

    # A tool call: the PermissionRequest hook says waiting; answered by the user, then Stop.
    target = SIDECAR.workspace / "made-by-claude"
    statuses_before = len(SIDECAR.statuses(tid))
    await request(client, "cao/sendMessage", {"terminalId": tid, "message": f"please run: touch {target}"})
    await SIDECAR.wait_for(
        "cao/agentStatus",
        lambda p: (
            p["terminalId"] == tid and p["status"] == "waiting_user_answer" and len(SIDECAR.statuses(tid)) > statuses_before
        ),
        timeout=40,
    )
    # The question as the editor gets it: read from Claude Code's permission menu (the hook may
    # come first; the prompt is refined once the menu is drawn), answered with cao/answer.
    prompt = await prompt_with_choices(client, tid)
    assert prompt and prompt["text"] == "Do you want to proceed?", (prompt, screen_of(tid))
    assert prompt["choices"][0] == "Yes" and prompt["choices"][-1].startswith("No"), prompt
    assert str(target) in prompt["detail"], prompt
    answered = await request(client, "cao/answer", {"terminalId": tid, "answer": "Yes", "promptId": prompt["id"]})
    assert answered["typed"] == "key 1", answered
    await SIDECAR.wait_for(
        "cao/agentStatus",
        lambda p: p["terminalId"] == tid and p["status"] == "completed" and SIDECAR.statuses(tid)[-1] == "completed",
        timeout=40,
    )
    assert target.exists()
    # Claude Code connects to MCP servers in the background: by now our server's tools are among
    # those it offers the model.
    bodies = [json.dumps(r["body"]) for r in requests_since(seen) if r["path"].startswith("/v1/messages")]
    assert any("mcp__cao__handoff" in b for b in bodies), "our MCP server's tools did not reach the model"

    await exit_cleanly(client, tid, "claude_code")


@NEEDS_CLAUDE
async def test_claude_code_lead_hands_off_without_a_prompt_once_connected(client: LanguageClient) -> None:
    tid = await spawn_ready(client, "claude_lead")
    # Ready means ready to delegate: our endpoint saw the CLI's MCP connection before "ready".
    events = [e for e in logged_events() if e.get("terminalId") == tid]
    kinds = [e["event"] for e in events]
    assert "mcp.connected" in kinds and "ready" in kinds, kinds
    assert kinds.index("mcp.connected") < kinds.index("ready"), kinds
    connected = events[kinds.index("mcp.connected")]
    ready = events[kinds.index("ready")]
    assert connected["at"] <= ready["at"] and ready["mcpConnected"] is True, (connected, ready)

    # The fake model calls our handoff tool; a mock worker answers; the answer comes back.
    statuses_before = len(SIDECAR.statuses(tid))
    task = 'call: mcp__cao__handoff {"target": "mock_developer", "task": "echo say: relayed-5e1d"}'
    output = await handoff(client, tid, task)
    assert "relayed-5e1d" in output, (output, screen_of(tid))
    after = SIDECAR.statuses(tid)[statuses_before:]
    assert "waiting_user_answer" not in after, (after, screen_of(tid))
    workers = [e for e in logged_events() if e["event"] == "handoff.end" and e.get("terminalId") != tid]
    assert workers and workers[-1]["ok"] is True, workers
    await exit_cleanly(client, tid, "claude_code")


@NEEDS_CLAUDE
async def test_claude_code_lead_that_opted_out_is_asked(client: LanguageClient) -> None:
    # askForTeamTools: true: the same call stops at Claude Code's permission prompt.
    tid = await spawn_ready(client, "claude_lead_asks")
    statuses_before = len(SIDECAR.statuses(tid))
    task = 'call: mcp__cao__handoff {"target": "mock_developer", "task": "echo say: never-5e1d"}'
    await request(client, "cao/sendMessage", {"terminalId": tid, "message": task})
    await SIDECAR.wait_for(
        "cao/agentStatus",
        lambda p: (
            p["terminalId"] == tid and p["status"] == "waiting_user_answer" and len(SIDECAR.statuses(tid)) > statuses_before
        ),
        timeout=40,
    )
    prompt = await prompt_with_choices(client, tid)
    assert "handoff" in json.dumps(prompt), (prompt, screen_of(tid))
    await request(client, "cao/terminate", {"terminalId": tid}, timeout=30)


@NEEDS_CODEX
async def test_codex_notify_mcp_and_exit(client: LanguageClient) -> None:
    seen = len(MODEL.requests)
    tid = await spawn_ready(client, "codex_worker")
    assert await handoff(client, tid, "please say: codex **exact** › answer") == "codex **exact** › answer"
    bodies = [json.dumps(r["body"], ensure_ascii=False) for r in requests_since(seen) if r["path"].endswith("/responses")]
    assert any("codex **exact**" in b for b in bodies)
    # Codex lists MCP servers as deferred tool namespaces, with the description our server gave
    # when Codex connected to it.
    assert any("mcp__cao" in b for b in bodies), "Codex did not connect to our MCP server"
    assert any("system prompt marker 9c1e" in b for b in bodies)

    # An approval: the fake model asks to run a command with escalated permissions; Codex
    # (approval_policy on-request) asks; the question and its menu reach the editor as a prompt and
    # cao/answer "Yes, proceed" presses its key.
    target = SIDECAR.workspace / "made-by-codex"
    await request(client, "cao/sendMessage", {"terminalId": tid, "message": f"please run: touch {target}"})
    prompt = await prompt_with_choices(client, tid)
    assert prompt["text"] == "Would you like to run the following command?", (prompt, screen_of(tid))
    assert prompt["choices"][0] == "Yes, proceed" and prompt["choices"][-1].startswith("No"), prompt
    assert f"$ touch {target}" in prompt["detail"], prompt
    answered = await request(client, "cao/answer", {"terminalId": tid, "answer": "Yes, proceed", "promptId": prompt["id"]})
    assert answered["typed"] == "key 1", answered
    await SIDECAR.wait_for(
        "cao/agentStatus", lambda p: p["terminalId"] == tid and SIDECAR.statuses(tid)[-1] == "completed", timeout=40
    )
    assert target.exists(), screen_of(tid)
    await exit_cleanly(client, tid, "codex")


@NEEDS_CODEX
async def test_codex_lead_gets_progress_while_a_handoff_runs(client: LanguageClient) -> None:
    """Codex (0.169) sends a progressToken with its tools/call and takes the answer as an SSE
    stream: the handoff's progress notifications, then the result (agent_face/progress_stream.py).
    (Codex does not reset its tool timeout on them: tool_timeout_sec still ends a longer call,
    which is why a long handoff answers with a ticket before Codex's 600 s.)"""
    tid = await spawn_ready(client, "codex_lead")
    before = len(SIDECAR.statuses(tid))
    task = 'call: mcp__cao__handoff {"target": "mock_developer", "task": "sleep 1.5 say: progress-relayed-7c"}'
    output = await handoff(client, tid, task)
    assert output.startswith("progress-relayed-7c"), (output, screen_of(tid))
    assert "waiting_user_answer" not in SIDECAR.statuses(tid)[before:], screen_of(tid)
    progress = [e for e in logged_events() if e["event"] == "handoff.progress" and e.get("terminalId") == tid]
    assert len(progress) >= 2, progress  # every 0.3 s while the worker slept 1.5 s
    await request(client, "cao/terminate", {"terminalId": tid}, timeout=30)


@NEEDS_GEMINI
async def test_gemini_cli_ready_once_connected_turn_lead_and_exit(client: LanguageClient) -> None:
    seen = len(MODEL.requests)
    tid = await spawn_ready(client, "gemini_worker")
    statuses = SIDECAR.statuses(tid)
    assert statuses.count("waiting_user_answer") >= 1, statuses  # the API-key dialogs (the folder is trusted up front)
    # Ready means ready to delegate: our endpoint saw Gemini CLI's MCP connection before "ready".
    kinds = [e["event"] for e in logged_events() if e.get("terminalId") == tid]
    assert "mcp.connected" in kinds and kinds.index("mcp.connected") < kinds.index("ready"), kinds

    # The task typed right after ready: its turn (after the model router's request) offers our tools.
    # Streamed in pieces, with Markdown: only the transcript has the exact text.
    assert await handoff(client, tid, "please say: gemini **exact** answer") == "gemini **exact** answer", screen_of(tid)
    turns = [
        json.dumps(r["body"], ensure_ascii=False)
        for r in requests_since(seen)
        if ":streamGenerateContent" in r["path"] and "gemini **exact** answer" in json.dumps(r["body"], ensure_ascii=False)
    ]
    assert turns, [r["path"] for r in requests_since(seen)]
    # (Gemini CLI names MCP tools mcp_<server>_<tool>)
    assert all('"mcp_cao_handoff"' in t and '"mcp_cao_send_message"' in t for t in turns), "our tools were not in the turn"

    # As a lead: its model calls our handoff; no confirmation (our server is trusted); a mock
    # worker answers "say: gemini-led-5f", and given that as the tool's result the model says it.
    before = len(SIDECAR.statuses(tid))
    task = 'call: mcp_cao_handoff {"target": "mock_developer", "task": "echo say: gemini-led-5f"}'
    output = await handoff(client, tid, task)
    assert output == "gemini-led-5f", (output, screen_of(tid))
    assert "waiting_user_answer" not in SIDECAR.statuses(tid)[before:], screen_of(tid)
    ends = [e for e in logged_events() if e["event"] == "handoff.end" and e.get("terminalId") != tid]
    assert ends and ends[-1]["ok"] is True, ends
    await exit_cleanly(client, tid, "gemini_cli")


@NEEDS_OPENCODE
async def test_opencode_turn_from_its_events(client: LanguageClient) -> None:
    seen = len(MODEL.requests)
    tid = await spawn_ready(client, "opencode_worker")
    # Markdown: the screen shows it rendered; only our plugin's idle event has the exact text.
    assert await handoff(client, tid, "please say: **opencode** `answer` ›") == "**opencode** `answer` ›", screen_of(tid)
    bodies = [
        json.dumps(r["body"], ensure_ascii=False)
        for r in requests_since(seen)
        if "**opencode** `answer`" in json.dumps(r["body"], ensure_ascii=False)
    ]
    assert bodies and any("system prompt marker 4d2b" in b for b in bodies)
    assert any("cao_handoff" in b for b in bodies), "our MCP server's tools did not reach the model"
    await exit_cleanly(client, tid, "opencode")


@NEEDS_AIDER
async def test_aider_turn_from_the_screen(client: LanguageClient) -> None:
    tid = await spawn_ready(client, "aider_worker")  # --no-git: the test workspace is inside this repo
    # Both traps of a line-oriented CLI, every run: Aider shows the input line and nothing below it
    # for more than 0.5 s after Enter (its spinner shows only after 0.5 s), so the core must see that
    # it took the line and press no second Enter; and once the spinner is cleared, the model's blank
    # first piece and pause (`pause: 1`) leave that same screen for a second before the answer.
    message = "wait: 1 pause: 1 please say: aider > answer"
    answer = await handoff(client, tid, message)
    assert answer == "aider > answer", screen_of(tid)

    # A new file: Aider asks "Create new file? (Y)es/(N)o [Yes]:" under the file's name; the answer "Yes"
    # is typed as Aider expects ("y" + Enter) and the file is written.
    target = SIDECAR.workspace / "made_by_aider.py"
    await request(client, "cao/sendMessage", {"terminalId": tid, "message": "please write: made_by_aider.py"})
    try:
        status = await SIDECAR.wait_for(
            "cao/agentStatus",
            lambda p: (
                p["terminalId"] == tid
                and p["status"] == "waiting_user_answer"
                and p["prompt"]
                and "made_by_aider.py" in p["prompt"]["detail"]
            ),
            timeout=40,
        )
    except asyncio.TimeoutError:
        raise AssertionError(f"no question; screen:\n{screen_of(tid)}\nstatuses: {SIDECAR.statuses(tid)}") from None
    prompt = status["prompt"]
    assert prompt["text"] == "Create new file?" and prompt["choices"] == ["Yes", "No"], (prompt, screen_of(tid))
    assert prompt["detail"] == "made_by_aider.py", prompt
    answered = await request(client, "cao/answer", {"terminalId": tid, "answer": "yes", "promptId": prompt["id"]})
    assert answered["typed"] == "'y' + Enter"
    for _ in range(100):
        if target.exists():
            break
        await asyncio.sleep(0.1)
    assert target.read_text().strip() == "print('made by the fake model')", screen_of(tid)
    # Each input was taken once: an Enter pressed while Aider worked would have waited in its input
    # and submitted an empty line later (an empty prompt left in the scrollback) or answered the
    # question above by itself.
    history = SIDECAR.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", pane_of(tid)).splitlines()
    prompts = [line.rstrip() for line in history if re.match(r"> |>$", line.rstrip())]
    assert prompts[:2] == [f"> {message}", "> please write: made_by_aider.py"], history
    assert prompts[2:] in ([], [">"]), history  # then at most the prompt for the next input
    await exit_cleanly(client, tid, "aider")
