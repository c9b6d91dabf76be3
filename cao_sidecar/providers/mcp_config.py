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


def extra_servers(options: Mapping[str, Any] | None) -> list[Any]:
    """The profile's own MCP servers (`mcpServers` in its frontmatter: profiles.profile.McpServer:
    name, transport stdio|http|sse, command/args/env or url/headers)."""
    servers = (options or {}).get("mcp_servers") or []
    return [srv for srv in servers if getattr(srv, "name", None) and getattr(srv, "name") != SERVER_NAME]


def claude_entry(server: Any) -> dict[str, Any]:
    """One `mcpServers` entry in Claude Code's format (Copilot reads the same shape)."""
    if server.transport == "stdio":
        return {"type": "stdio", "command": server.command, "args": list(server.args), "env": dict(server.env)}
    return {"type": server.transport, "url": server.url, "headers": dict(server.headers)}


def claude_code_args(env: Mapping[str, str], agent_dir: Path, options: Mapping[str, Any] | None = None) -> list[str]:
    """`--mcp-config FILE --strict-mcp-config`: our server and the profile's, nothing else."""
    servers = {srv.name: claude_entry(srv) for srv in extra_servers(options)}
    if "CAO_MCP_URL" in env:
        servers[SERVER_NAME] = http_server_entry(env["CAO_MCP_URL"], env["CAO_MCP_TOKEN"])
    if not servers:
        return []
    path = write_private_json(agent_dir / "mcp-claude.json", {"mcpServers": servers})
    return ["--mcp-config", str(path), "--strict-mcp-config"]


def _toml(value: Any) -> str:
    """A TOML value for `codex -c key=value` (JSON strings, arrays and inline tables are TOML)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def codex_args(env: Mapping[str, str], options: Mapping[str, Any] | None = None) -> list[str]:
    """`-c` overrides; our token stays in the environment (`bearer_token_env_var`), off the argv."""
    args: list[str] = []
    for srv in extra_servers(options):
        key = f"mcp_servers.{srv.name}"
        if srv.transport == "stdio":
            args += ["-c", f"{key}.command={_toml(srv.command)}", "-c", f"{key}.args={_toml(list(srv.args))}"]
            if srv.env:
                args += ["-c", f"{key}.env={_toml(dict(srv.env))}"]
        else:
            args += ["-c", f"{key}.url={_toml(srv.url)}"]
            if srv.headers:
                args += ["-c", f"{key}.http_headers={_toml(dict(srv.headers))}"]
    if "CAO_MCP_URL" in env:
        args += [
            "-c", f"mcp_servers.{SERVER_NAME}.url={json.dumps(env['CAO_MCP_URL'])}",
            "-c", f'mcp_servers.{SERVER_NAME}.bearer_token_env_var="CAO_MCP_TOKEN"',
        ]
    return args


def gemini_settings(env: Mapping[str, str], options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `mcpServers` part of Gemini CLI's settings.json (`httpUrl` for Streamable HTTP)."""
    servers: dict[str, Any] = {}
    for srv in extra_servers(options):
        if srv.transport == "stdio":
            servers[srv.name] = {"command": srv.command, "args": list(srv.args), "env": dict(srv.env)}
        elif srv.transport == "sse":
            servers[srv.name] = {"url": srv.url, "headers": dict(srv.headers)}
        else:
            servers[srv.name] = {"httpUrl": srv.url, "headers": dict(srv.headers)}
    if "CAO_MCP_URL" in env:
        servers[SERVER_NAME] = {
            "httpUrl": env["CAO_MCP_URL"],
            "headers": {"Authorization": f"Bearer {env['CAO_MCP_TOKEN']}"},
        }
    return {"mcpServers": servers} if servers else {}


def opencode_entries(env: Mapping[str, str], options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """OpenCode's `mcp` config: `local` (command list) or `remote` (url, headers) servers."""
    servers: dict[str, Any] = {}
    for srv in extra_servers(options):
        if srv.transport == "stdio":
            servers[srv.name] = {"type": "local", "command": [srv.command, *srv.args], "environment": dict(srv.env),
                                 "enabled": True}
        else:
            servers[srv.name] = {"type": "remote", "url": srv.url, "headers": dict(srv.headers), "enabled": True}
    if "CAO_MCP_URL" in env:
        servers[SERVER_NAME] = {
            "type": "remote",
            "url": env["CAO_MCP_URL"],
            "headers": {"Authorization": f"Bearer {env['CAO_MCP_TOKEN']}"},
            "enabled": True,
        }
    return servers
