"""One orchestrator process per project, and the front ends that join it.

- `locate`: where a project's orchestrator listens (socket, info file, start lock, log).
- `serve`: the orchestrator process (`cao-sidecar serve`): the runtime, the socket, the doors.
- `forward`: `cao-sidecar --stdio` / `--acp` / `mcp` as forwarders to it.
"""
