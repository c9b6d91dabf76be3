"""More real agent CLIs through their providers: Qwen Code and Grok CLI (marked `real_cli`; each
test skips cleanly, saying why, when its CLI is not installed: .ci/run puts them in .ci/node).

Their model is tests/fixtures/fake_model_server.py on 127.0.0.1 (OpenAI Chat Completions, a fake
key and base URL in the profile's env): the CLIs' turns, hooks, MCP clients and tool calls are
real, only the model is not.

- Qwen Code: ready with our MCP server connected; a turn whose exact answer comes from its Stop
  hook; a shell command's confirmation read as a question and answered with cao/answer; as a
  lead it calls our `handoff` (no prompt: the team's tools are trusted) and a worker answers;
  `/quit` ends it. As a worker it answers a Claude Code lead's handoff.
- Grok CLI (screen only, no MCP server: it reads MCP servers only from the workspace): a turn, a
  confirmation answered with Enter (its menu takes no digits), `exit` ends it.
"""

from __future__ import annotations

import pytest
from pytest_lsp import LanguageClient

from conftest import request
from fixtures.real_cli import NEEDS_CLAUDE, NEEDS_GROK, NEEDS_QWEN, RealCliTeam, claude_env, real_cli_marks

TEAM = RealCliTeam("cao-real-more-", ready_timeout=40)
CONFIG, SIDECAR, MODEL = TEAM.config, TEAM.sidecar, TEAM.model
screen_of, logged_events, bodies_with = TEAM.screen_of, TEAM.logged_events, TEAM.bodies_with
spawn_ready, handoff, prompt_with_choices, wait_status, exit_by_command = (
    TEAM.spawn_ready,
    TEAM.handoff,
    TEAM.prompt_with_choices,
    TEAM.wait_status,
    TEAM.exit_by_command,
)

QWEN_ENV = f"""env:
  OPENAI_API_KEY: fake-key
  OPENAI_BASE_URL: {MODEL.url}/v1
  OPENAI_MODEL: fake-qwen-model
"""
PROFILES = {
    "qwen_worker": f"""---
name: qwen_worker
description: Qwen Code against the fake model
provider: qwen_code
{QWEN_ENV}---
You are the qwen test worker (system prompt marker 6b8e).
""",
    "qwen_lead": f"""---
name: qwen_lead
description: A Qwen Code lead against the fake model
provider: qwen_code
{QWEN_ENV}---
You lead the team: delegate with handoff.
""",
    "claude_lead": f"""---
name: claude_lead
description: A Claude Code lead against the fake model
provider: claude_code
{claude_env(MODEL)}---
You lead the team: delegate with handoff.
""",
    "grok_worker": f"""---
name: grok_worker
description: Grok CLI against the fake model
provider: grok_cli
model: fake-grok-model
env:
  GROK_API_KEY: fake-key
  GROK_BASE_URL: {MODEL.url}/v1
---
You are the grok test worker (system prompt marker 2c5a).
""",
}
TEAM.write_profiles(PROFILES)

pytestmark = real_cli_marks(timeout=120)
client = TEAM.client_fixture()


@NEEDS_QWEN
@pytest.mark.timeout(240)  # a Qwen Code start takes 15-40 s on a loaded 2-core machine
async def test_qwen_code_turn_confirmation_lead_and_exit(client: LanguageClient) -> None:
    seen = len(MODEL.requests)
    tid = await spawn_ready(client, "qwen_worker")
    # Ready means ready to delegate: our endpoint saw Qwen Code's MCP connection first.
    kinds = [e["event"] for e in logged_events() if e.get("terminalId") == tid]
    assert "mcp.connected" in kinds and kinds.index("mcp.connected") < kinds.index("ready"), kinds

    # Markdown: the screen shows it rendered; the Stop hook's answer is exact.
    assert await handoff(client, tid, "please say: qwen **exact** `answer` › ✦") == "qwen **exact** `answer` › ✦"
    asked = bodies_with("qwen **exact**", seen)
    assert asked and any("system prompt marker 6b8e" in b for b in asked), "the turn or the system prompt never reached the model"
    assert any("handoff" in b and "send_message" in b for b in asked), "our MCP server's tools did not reach the model"

    # A shell command: Qwen Code asks; the question and its choices reach the editor; "Yes" runs it.
    target = SIDECAR.workspace / "made-by-qwen"
    before = len(SIDECAR.statuses(tid))
    await request(client, "cao/sendMessage", {"terminalId": tid, "message": f"please run: touch {target}"})
    await wait_status(tid, lambda p: p["status"] == "waiting_user_answer" and len(SIDECAR.statuses(tid)) > before)
    prompt = await prompt_with_choices(client, tid)
    assert "touch" in prompt["text"] + prompt["detail"], (prompt, screen_of(tid))
    assert prompt["choices"][0].startswith("Yes"), prompt
    await request(client, "cao/answer", {"terminalId": tid, "answer": prompt["choices"][0], "promptId": prompt["id"]})
    await wait_status(tid, lambda p: SIDECAR.statuses(tid)[-1] == "completed")
    assert target.exists(), screen_of(tid)

    # As a lead: the fake model fetches our deferred `mcp__cao__handoff` through Qwen Code's
    # tool_search, then calls it; no confirmation (our server is trusted); a mock worker answers.
    before = len(SIDECAR.statuses(tid))
    task = 'call: mcp__cao__handoff {"target": "mock_developer", "task": "echo say: relayed-q7"}'
    output = await handoff(client, tid, task)
    assert "relayed-q7" in output, (output, screen_of(tid))
    assert "waiting_user_answer" not in SIDECAR.statuses(tid)[before:], screen_of(tid)
    ends = [e for e in logged_events() if e["event"] == "handoff.end" and e.get("terminalId") != tid]
    assert ends and ends[-1]["ok"] is True, ends
    await exit_by_command(client, tid, "/quit")


@NEEDS_QWEN
@NEEDS_CLAUDE
@pytest.mark.timeout(180)
async def test_qwen_code_worker_answers_a_claude_code_lead(client: LanguageClient) -> None:
    lead = await spawn_ready(client, "claude_lead")
    # The worker answers "say: qwen-relayed-q8"; given that as the tool's result, the fake model
    # has the lead answer "qwen-relayed-q8".
    task = 'call: mcp__cao__handoff {"target": "qwen_worker", "task": "please say: say: qwen-relayed-q8"}'
    output = await handoff(client, lead, task)
    assert "qwen-relayed-q8" in output, (output, screen_of(lead))
    assert bodies_with("qwen-relayed-q8") and any("fake-qwen-model" in b for b in bodies_with("qwen-relayed-q8"))
    ends = [e for e in logged_events() if e["event"] == "handoff.end" and e.get("terminalId") != lead]
    assert ends and ends[-1]["ok"] is True, ends
    await request(client, "cao/terminate", {"terminalId": lead}, timeout=30)


@NEEDS_GROK
async def test_grok_cli_turn_confirmation_and_exit(client: LanguageClient) -> None:
    seen = len(MODEL.requests)
    tid = await spawn_ready(client, "grok_worker")
    assert await handoff(client, tid, "please say: grok › answer ⏺ 42") == "grok › answer ⏺ 42"
    asked = bodies_with("grok › answer", seen)
    assert asked and any('"model": "fake-grok-model"' in b for b in asked), (
        "the turn or the profile's model never reached the model"
    )

    # Its confirmation menu takes no digits: "Yes" is Enter (the highlighted first choice).
    target = SIDECAR.workspace / "made-by-grok"
    before = len(SIDECAR.statuses(tid))
    await request(client, "cao/sendMessage", {"terminalId": tid, "message": f"please run: touch {target}"})
    await wait_status(tid, lambda p: p["status"] == "waiting_user_answer" and len(SIDECAR.statuses(tid)) > before)
    prompt = await prompt_with_choices(client, tid)
    assert prompt["text"] == "Do you want to proceed with this operation?" and str(target) in prompt["detail"], prompt
    answered = await request(client, "cao/answer", {"terminalId": tid, "answer": "Yes", "promptId": prompt["id"]})
    assert answered["typed"] == "key Enter", answered
    await wait_status(tid, lambda p: SIDECAR.statuses(tid)[-1] == "completed")
    assert target.exists(), screen_of(tid)
    await exit_by_command(client, tid, "exit")
