"""How each agent CLI is told about our MCP server, with the agent's own credential.

Providers call these from `launch()`; the endpoint facts come from the launch environment
(CAO_MCP_URL, CAO_MCP_TOKEN, CAO_MCP_SOCKET). Files holding a credential are written 0600 in the
agent's private directory.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

SERVER_NAME = "cao"


def http_server_entry(url: str, token: str) -> dict[str, Any]:
    """A Streamable HTTP server entry as Claude Code reads it (`mcpServers.<name>`)."""
    return {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}


def stdio_bridge_entry(socket_path: str, token_file: Path) -> dict[str, Any]:
    """A stdio server entry that runs `cao-sidecar mcp-bridge` (for CLIs without HTTP)."""
    return {
        "command": sys.executable,
        "args": ["-m", "cao_sidecar", "mcp-bridge", "--socket", socket_path, "--token-file", str(token_file)],
    }


def write_private_json(path: Path, data: Any) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    return path


def claude_code_args(env: Mapping[str, str], agent_dir: Path) -> list[str]:
    """`--mcp-config FILE --strict-mcp-config`: only our server, whatever the user configured."""
    if "CAO_MCP_URL" not in env:
        return []
    config = {"mcpServers": {SERVER_NAME: http_server_entry(env["CAO_MCP_URL"], env["CAO_MCP_TOKEN"])}}
    path = write_private_json(agent_dir / "mcp-claude.json", config)
    return ["--mcp-config", str(path), "--strict-mcp-config"]


def codex_args(env: Mapping[str, str]) -> list[str]:
    """`-c` overrides; the token stays in the environment (`bearer_token_env_var`), off the argv."""
    if "CAO_MCP_URL" not in env:
        return []
    return [
        "-c", f"mcp_servers.{SERVER_NAME}.url={json.dumps(env['CAO_MCP_URL'])}",
        "-c", f'mcp_servers.{SERVER_NAME}.bearer_token_env_var="CAO_MCP_TOKEN"',
    ]


def gemini_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The `mcpServers` part of Gemini CLI's settings.json (`httpUrl` for Streamable HTTP)."""
    if "CAO_MCP_URL" not in env:
        return {}
    return {
        "mcpServers": {
            SERVER_NAME: {"httpUrl": env["CAO_MCP_URL"], "headers": {"Authorization": f"Bearer {env['CAO_MCP_TOKEN']}"}}
        }
    }
