"""The hook endpoint: agent CLIs report their own status (events beat screens).

`POST /hooks/<source>` on the MCP listener (same port, same AuthMiddleware: token, Host and Origin
checked): Claude Code's HTTP hooks, hook_relay.py for Codex `notify` and Gemini CLI hooks, and
OpenCode's plugin (providers/opencode_plugin.js). The
caller is the agent whose bearer token the request carries (`Authorization: Bearer <token>`);
nothing in the body (session ids, terminal ids, paths) says who is calling. The agent's provider
turns the payload into a status (`hook_event`) and the core applies it
(`AgentSupervisor.agent_event`).

The reply is always `{}` at once (a hook waits for it): no decision, so a PermissionRequest hook
never approves or denies anything; the CLI asks its user as usual.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

from cao_sidecar.agent_face.credentials import CredentialStore

log = logging.getLogger(__name__)

HOOKS_PREFIX = "/hooks/"
MAX_BODY = 4 * 1024 * 1024


class HookEndpoint:
    """ASGI: answers `POST /hooks/<source>`, hands every other request to `app`."""

    def __init__(self, app: Any, core: Any, credentials: CredentialStore) -> None:
        self._app = app
        self._core = core
        self._credentials = credentials
        self.received = 0  # events applied (diagnostics)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(HOOKS_PREFIX):
            await self._app(scope, receive, send)
            return
        if scope.get("method") != "POST":
            await _reply(send, 405, {"error": "use POST"})
            return
        source = scope["path"][len(HOOKS_PREFIX) :].strip("/")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        terminal_id = self._credentials.agent_for(headers.get("authorization"))
        agent = self._core.agents.get(terminal_id or "")
        if agent is None:
            await _reply(send, 401, {"error": "this credential belongs to no running agent"})
            return
        body = await _read_body(receive)
        if body is None:
            await _reply(send, 413, {"error": "hook payload too large"})
            return
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            await _reply(send, 400, {"error": "hook payload is not JSON"})
            return
        await _reply(send, 200, {})
        self.handle(agent, source, payload)

    def handle(self, agent: Any, source: str, payload: Any) -> None:
        """Apply one authenticated event to `agent` (after the reply: a hook never waits on us)."""
        if source != agent.provider.name:
            log.info(
                "hook for provider %r reached agent %s (provider %s); ignored", source, agent.terminal_id, agent.provider.name
            )
            return
        turn_text: Optional[str] = agent.turn.text if agent.turn is not None else None
        try:
            event = agent.provider.hook_event(source, payload, turn_text)
        except Exception:  # a bad payload must not take the endpoint down
            log.exception("provider %s could not read a hook payload", agent.provider.name)
            return
        if event is None:
            return
        self.received += 1
        log.debug("hook %s → agent %s: %s", source, agent.terminal_id, event.status.value)
        self._core.agent_event(agent, event.status, event.answer, confirmed=event.confirmed)


async def _read_body(receive: Any) -> Optional[bytes]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _reply(send: Any, status: int, data: Any) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
