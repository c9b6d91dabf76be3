"""How each agent CLI is told about our MCP server, with the agent's own credential.

Providers call these from `launch()`; the endpoint facts come from the launch environment
(CAO_MCP_URL, CAO_MCP_TOKEN, CAO_MCP_SOCKET). Files holding a credential are written 0600 in the
agent's private directory.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from cao_sidecar import paths
from cao_sidecar.providers import own_python

SERVER_NAME = "cao"
# The orchestration tools our server offers (agent_face/tools.py): a team's own tools, which the
# launched CLIs may call without a permission prompt unless the profile says `askForTeamTools`.
TEAM_TOOLS = ("handoff", "assign", "send_message", "list_sessions", "merge_work", "wait_for_result")


def team_tools_preapproved(env: Mapping[str, str], options: Mapping[str, Any] | None) -> bool:
    """True when the CLI gets our server and the profile did not opt out of pre-approval."""
    return "CAO_MCP_URL" in env and not (options or {}).get("ask_for_team_tools")


def claude_team_tools() -> list[str]:
    """Claude Code's names of our tools (`mcp__<server>__<tool>`)."""
    return [f"mcp__{SERVER_NAME}__{tool}" for tool in TEAM_TOOLS]


def http_server_entry(url: str, token: str) -> dict[str, Any]:
    """A Streamable HTTP server entry as Claude Code reads it (`mcpServers.<name>`)."""
    return {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}


def stdio_bridge_entry(socket_path: str, token_file: Path) -> dict[str, Any]:
    """A stdio server entry that runs `cao-sidecar mcp-bridge` (for CLIs without HTTP)."""
    command, *args = own_python.module_argv("cao_sidecar", "mcp-bridge", "--socket", socket_path, "--token-file", str(token_file))
    return {"command": command, "args": args}


def write_private_json(path: Path, data: Any) -> Path:
    with os.fdopen(paths.open_private(path), "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    return path


def extra_servers(options: Mapping[str, Any] | None) -> list[Any]:
    """The profile's own MCP servers (`mcpServers` in its frontmatter: profiles.profile.McpServer:
    name, transport stdio|http|sse, command/args/env or url/headers)."""
    servers = (options or {}).get("mcp_servers") or []
    return [srv for srv in servers if getattr(srv, "name", None) and srv.name != SERVER_NAME]


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


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character escaped, so a value
    can never end the string early or start another key (JSON's escapes are not all TOML's)."""
    out = []
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError("a lone surrogate cannot be written in TOML")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """A TOML value for `codex -c key=value`: strings, numbers, booleans, arrays, inline tables."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return toml_string(str(value))


# A TOML bare key: the only server names that can stand in `-c mcp_servers.NAME.command=...`
# without changing which key is set (profile validation allows no others).
BARE_KEY = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")


def codex_args(env: Mapping[str, str], options: Mapping[str, Any] | None = None) -> list[str]:
    """`-c` overrides; our token stays in the environment (`bearer_token_env_var`), off the argv."""
    args: list[str] = []
    for srv in extra_servers(options):
        if not BARE_KEY.match(srv.name):
            raise ValueError(f"MCP server name {srv.name!r} cannot be given to Codex")
        key = f"mcp_servers.{srv.name}"
        if srv.transport == "stdio":
            args += ["-c", f"{key}.command={toml_value(srv.command)}", "-c", f"{key}.args={toml_value(list(srv.args))}"]
            if srv.env:
                args += ["-c", f"{key}.env={toml_value(dict(srv.env))}"]
        else:
            args += ["-c", f"{key}.url={toml_value(srv.url)}"]
            if srv.headers:
                args += ["-c", f"{key}.http_headers={toml_value(dict(srv.headers))}"]
    if "CAO_MCP_URL" in env:
        args += [
            "-c",
            f"mcp_servers.{SERVER_NAME}.url={toml_string(env['CAO_MCP_URL'])}",
            "-c",
            f'mcp_servers.{SERVER_NAME}.bearer_token_env_var="CAO_MCP_TOKEN"',
            # Codex gives up on a server that has not answered within 10 s and never tries again:
            # on a loaded machine the agent would then never get our tools (ready waits for them).
            "-c",
            f"mcp_servers.{SERVER_NAME}.startup_timeout_sec=60",
        ]
    if team_tools_preapproved(env, options):
        # Per-tool approval (Codex 0.169: auto | prompt | writes | approve); only our tools.
        for tool in TEAM_TOOLS:
            args += ["-c", f'mcp_servers.{SERVER_NAME}.tools.{tool}.approval_mode="approve"']
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
            # `trust` skips every confirmation for this server's tools: it serves only TEAM_TOOLS.
            "trust": team_tools_preapproved(env, options),
        }
    return {"mcpServers": servers} if servers else {}


def opencode_entries(env: Mapping[str, str], options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """OpenCode's `mcp` config: `local` (command list) or `remote` (url, headers) servers."""
    servers: dict[str, Any] = {}
    for srv in extra_servers(options):
        if srv.transport == "stdio":
            servers[srv.name] = {
                "type": "local",
                "command": [srv.command, *srv.args],
                "environment": dict(srv.env),
                "enabled": True,
            }
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


def opencode_permissions(env: Mapping[str, str], options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """OpenCode `permission` rules for our tools (its MCP tools are named `<server>_<tool>`)."""
    if not team_tools_preapproved(env, options):
        return {}
    return {f"{SERVER_NAME}_{tool}": "allow" for tool in TEAM_TOOLS}
