"""The mock agent's way to call the sidecar's MCP tools (handoff, assign, send_message).

The sidecar tells an agent where its MCP endpoint is through the environment:
CAO_MCP_URL (Streamable HTTP endpoint) and CAO_MCP_TOKEN (the agent's own bearer token).

A minimal stdlib MCP client: the sidecar serves stateless Streamable HTTP, so one POST of
`tools/call` is a whole call (no session to set up). The agent calls this on a worker thread, so
blocking is fine; whatever this raises is shown as the turn's error. Imported only when a tool
task runs, so that the agent's startup stays fast.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

PROTOCOL_VERSION = "2025-06-18"


class SidecarToolError(Exception):
    """A sidecar tool could not be called (no endpoint, transport failure, tool error)."""


def call_sidecar_tool(tool: str, arguments: dict[str, object]) -> str:
    """Call the sidecar MCP tool `tool` with `arguments` and return its text result."""
    url = os.environ.get("CAO_MCP_URL", "")
    token = os.environ.get("CAO_MCP_TOKEN", "")
    if not url:
        raise SidecarToolError("no sidecar MCP endpoint (CAO_MCP_URL is not set)")
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    ).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {token}",
            "MCP-Protocol-Version": PROTOCOL_VERSION,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=None) as response:  # a handoff lasts as long as its task
            content_type = response.headers.get("Content-Type", "")
            raw = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise SidecarToolError(
            f"sidecar refused the call: HTTP {exc.code} {exc.read().decode('utf-8', 'replace')[:200]}"
        ) from None
    except OSError as exc:
        raise SidecarToolError(f"sidecar unreachable: {exc}") from None
    message = _parse(raw, content_type)
    if "error" in message:
        raise SidecarToolError(f"{tool}: {message['error'].get('message', 'error')}")
    result = message.get("result") or {}
    text = "\n".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text")
    if result.get("isError"):
        raise SidecarToolError(text or f"{tool} failed")
    return text


def _parse(raw: str, content_type: str) -> dict[str, Any]:
    if "text/event-stream" in content_type:
        # Server-sent events: the JSON-RPC answer is in the last `data:` event.
        data = [line[5:].strip() for line in raw.splitlines() if line.startswith("data:")]
        raw = data[-1] if data else "{}"
    try:
        message = json.loads(raw)
    except ValueError:
        raise SidecarToolError(f"unreadable answer from the sidecar: {raw[:200]!r}") from None
    if not isinstance(message, dict):
        raise SidecarToolError("unreadable answer from the sidecar")
    return message
