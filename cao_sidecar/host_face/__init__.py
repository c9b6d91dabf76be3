"""The door for MCP hosts (Claude Desktop, Claude Code, Cursor, VS Code, ...): `cao-sidecar mcp`."""

from cao_sidecar.host_face.door import serve_host_door

__all__ = ["serve_host_door"]
