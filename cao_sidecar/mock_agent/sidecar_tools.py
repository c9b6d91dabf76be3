"""The mock agent's way to call the sidecar's MCP tools (handoff, assign, send_message).

The sidecar tells an agent where its MCP endpoint is through the environment:
CAO_MCP_URL (streamable HTTP endpoint) and CAO_MCP_TOKEN (bearer token).

The agent calls `call_sidecar_tool` on a worker thread, so a blocking HTTP client is fine here;
whatever this raises is shown as the turn's error. Imported only when a tool task runs, so that
the agent's startup stays fast.
"""

from __future__ import annotations

import os


class SidecarToolError(Exception):
    """A sidecar tool could not be called (no endpoint, transport failure, tool error)."""


def call_sidecar_tool(tool: str, arguments: dict[str, object]) -> str:
    """Call the sidecar MCP tool `tool` with `arguments` and return its text result."""
    url = os.environ.get("CAO_MCP_URL", "")
    token = os.environ.get("CAO_MCP_TOKEN", "")
    if not url:
        raise SidecarToolError("no sidecar MCP endpoint (CAO_MCP_URL is not set)")
    del token  # used by the HTTP client
    raise NotImplementedError("MCP client not implemented yet")
