"""`cao-sidecar mcp`: the MCP host door on stdin/stdout, with the core started in this process
(as `--acp` does: app.start_core, the agent face, live profiles) for the project directory."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Optional

from cao_sidecar.app import OwnCore
from cao_sidecar.editor.transport import PipeWriter, open_stdin_reader, take_stdout_for_protocol
from cao_sidecar.host_face.door import serve_host_streams


async def serve_mcp_stdio(*, tmux_socket: str, session: str, project: Path, host_name: Optional[str]) -> int:
    protocol_out = take_stdout_for_protocol()  # stdout is the protocol; stray prints go to stderr
    writer = PipeWriter(protocol_out)
    await writer.connect()
    reader = await open_stdin_reader(sys.stdin.buffer)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if main is not None:  # a host stopping us with SIGTERM: close the core cleanly (agents keep running)
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
    runtime = OwnCore(tmux_socket=tmux_socket, session=session, workspace=project)
    try:
        await serve_host_streams(runtime.ready, reader, writer, host_name=host_name)
    except asyncio.CancelledError:
        pass
    finally:
        await runtime.close()
        writer.close()
    return 0


def main_mcp(*, tmux_socket: str, session: str, project: Optional[str], host_name: Optional[str]) -> int:
    directory = Path(project or ".").expanduser().resolve()
    if not directory.is_dir():
        print(f"cao-sidecar mcp: --project {project!r} is not a directory", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve_mcp_stdio(tmux_socket=tmux_socket, session=session, project=directory, host_name=host_name))
    except KeyboardInterrupt:
        return 130
