"""The ACP face: the Agent Client Protocol (Zed's; newline-delimited JSON-RPC on stdio) over the
same orchestration core as the LSP face. The orchestrator serves it per connection
(server.serve_acp_connection); `cao-sidecar --acp` forwards to it.

Modules: transport (line framing, JSON-RPC errors for malformed lines), sessions (ACP sessions
and their file), team (core events → `session/update`s and permission requests), agent (the ACP
methods and the `_cao/...` extensions), server (boot and the connection).

Everything here imports the `acp` package (pydantic): never import it on the LSP start-up path.
"""
