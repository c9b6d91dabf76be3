"""OpenCode's events (our plugin, cao_sidecar/providers/opencode_plugin.js) → statuses.

- The plugin, run by Node with a recording `fetch`, on the events a real OpenCode 1.18.33 turn
  sent its plugins (tests/fixtures/opencode_events_1.18.33.json, trimmed): busy, then idle with
  the turn's input and the answer's exact text, to our hook URL with the agent's token; a
  sub-agent's session is not reported; a permission is; an error rides on idle.
- The provider reads those posts (busy → processing, permission → waiting, idle → completed
  with the answer, or error) and wires the plugin into the config it generates.
The real CLI with the plugin: tests/test_providers_real_cli.py (a turn ended by these events).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import get_provider
from cao_sidecar.providers.base import HookEvent, LaunchContext
from cao_sidecar.providers.opencode import PLUGIN

S = AgentStatus
FIXTURE = Path(__file__).parent / "fixtures" / "opencode_events_1.18.33.json"
SESSION = "ses_dbe14f817ffecsMOl6WQIM5CD3"
NODE = shutil.which("node")

# Imports the plugin, records what it posts, feeds it the events given on stdin (a JSON list).
HARNESS = """
const posts = []
globalThis.fetch = async (url, init) => { posts.push({url, auth: init.headers.Authorization, body: JSON.parse(init.body)}); return {ok: true} }
const mod = await import(process.argv[1])
const hooks = await mod.CaoSidecarEvents({})
let raw = ""
for await (const chunk of process.stdin) raw += chunk
for (const event of JSON.parse(raw)) if (hooks.event) await hooks.event({event})
await new Promise((r) => setTimeout(r, 50))
console.log(JSON.stringify(posts))
"""


def run_plugin(events: list[Any], env: dict[str, str] | None = None) -> list[dict]:
    environment = {"CAO_MCP_URL": "http://127.0.0.1:4321/mcp", "CAO_MCP_TOKEN": "tok-1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [NODE or "node", "--input-type=module", "-e", HARNESS, PLUGIN.as_uri()],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        timeout=30,
        env=env if env is not None else environment,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (the plugin runs in OpenCode's JavaScript runtime)")


@needs_node
def test_the_plugin_reports_a_real_turn_with_its_input_and_exact_answer() -> None:
    posts = run_plugin(json.loads(FIXTURE.read_text()))
    assert {p["url"] for p in posts} == {"http://127.0.0.1:4321/hooks/opencode"}
    assert {p["auth"] for p in posts} == {"Bearer tok-1"}
    kinds = [p["body"]["hook_event_name"] for p in posts]
    assert kinds[-1] == "idle" and set(kinds[:-1]) == {"busy"}, kinds
    idle = posts[-1]["body"]
    assert idle == {"hook_event_name": "idle", "input": '"please say: hi-there"', "answer": 'hi-there"', "error": None}


@needs_node
def test_the_plugin_skips_sub_agents_reports_permissions_and_errors() -> None:
    child = "ses_child"
    events: list[Any] = [
        {"type": "session.created", "properties": {"info": {"id": child, "parentID": SESSION}}},
        {"type": "session.status", "properties": {"sessionID": child, "status": {"type": "busy"}}},
        {"type": "session.idle", "properties": {"sessionID": child}},
        {"type": "permission.asked", "properties": {"sessionID": SESSION, "permission": "bash"}},
        {"type": "message.updated", "properties": {"info": {"id": "msg_2", "role": "user", "sessionID": SESSION}}},
        {
            "type": "session.error",
            "properties": {"sessionID": SESSION, "error": {"name": "APIError", "data": {"message": "boom"}}},
        },
        {"type": "session.idle", "properties": {"sessionID": SESSION}},
        {"type": "no.such.event", "properties": None},
    ]
    bodies = [p["body"] for p in run_plugin(events)]
    assert bodies == [
        {"hook_event_name": "permission"},
        {"hook_event_name": "idle", "input": "", "answer": "", "error": "boom"},
    ], bodies


@needs_node
def test_without_the_sidecars_url_and_token_the_plugin_does_nothing() -> None:
    assert run_plugin(json.loads(FIXTURE.read_text()), env={"PATH": "/usr/bin:/bin"}) == []


def read(payload: Any, turn_text: str | None) -> HookEvent:
    event = get_provider("opencode").hook_event("opencode", payload, turn_text)
    assert event is not None, payload
    return event


def test_the_provider_reads_the_plugins_posts() -> None:
    assert read({"hook_event_name": "busy"}, None).status is S.PROCESSING
    assert read({"hook_event_name": "permission"}, None).status is S.WAITING_USER_ANSWER
    done = read({"hook_event_name": "idle", "input": "say: **x**", "answer": "**x**"}, "say: **x**")
    assert done.status is S.COMPLETED and done.answer == "**x**" and done.confirmed
    other = read({"hook_event_name": "idle", "input": "earlier", "answer": ""}, "say: **x**")
    assert other.status is S.COMPLETED and other.answer is None and not other.confirmed
    failed = read({"hook_event_name": "idle", "input": "q", "answer": "", "error": "boom"}, "q")
    assert failed.status is S.ERROR and failed.confirmed
    opencode = get_provider("opencode")
    for bad in ({"hook_event_name": "other"}, {}, "text", None, {"hook_event_name": "idle", "answer": 5, "input": ["x"]}):
        event = opencode.hook_event("opencode", bad, "q")
        assert event is None or (event.answer is None and not event.confirmed)


def test_the_launch_wires_the_plugin_only_with_a_sidecar_to_report_to(tmp_path: Path) -> None:
    opencode = get_provider("opencode")
    env = {"CAO_MCP_URL": "http://127.0.0.1:4321/mcp", "CAO_MCP_TOKEN": "tok-1"}
    spec = opencode.launch(LaunchContext("t1", "s", str(tmp_path), tmp_path, env=env))
    config = json.loads(Path(spec.env["OPENCODE_CONFIG"]).read_text())
    assert spec.events and config["plugin"] == [PLUGIN.as_uri()] and PLUGIN.is_file()
    assert "tok-1" not in PLUGIN.read_text()  # the token comes from OpenCode's environment
    (tmp_path / "x").mkdir()
    bare = opencode.launch(LaunchContext("t2", "s", str(tmp_path), tmp_path / "x", env={}))
    assert not bare.events and "plugin" not in json.loads(Path(bare.env["OPENCODE_CONFIG"]).read_text())
