"""Agent face: the MCP server (Streamable HTTP on loopback, plus a Unix socket for the stdio
bridge) whose tools let the agents we launched delegate to each other through the same core."""
