"""The ACP face: the Agent Client Protocol (Zed's; newline-delimited JSON-RPC on stdio) over the
same orchestration core as the LSP face. `cao-sidecar --acp` runs it (server.serve_acp).

Modules: transport (line framing, JSON-RPC errors for malformed lines), sessions (ACP sessions
and their file), team (core events → `session/update`s and permission requests), agent (the ACP
methods and the `_cao/...` extensions), server (boot and the connection).

Everything here imports the `acp` package (pydantic): never import it on the LSP start-up path.
"""
