"""The MCP host door over one byte stream pair: newline-delimited JSON-RPC (the MCP stdio transport).

One connection = one MCP server instance (its own lead identity) over the shared core. The SDK's
stdio transport takes explicit line streams; these adapters feed it from an asyncio reader and
writer (stdin/stdout, or a connection the orchestrator's dispatcher accepted).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

from mcp.server.stdio import stdio_server

from cao_sidecar.host_face.tools import HostConnection, build_host_server, serve_connection

log = logging.getLogger(__name__)

MAX_LINE = 16 * 1024 * 1024  # one JSON-RPC message; a longer line is answered with a parse error
CHUNK = 65536


class LineSource:
    """`async for line in source`: the reader's lines, decoded; an over-long line becomes a line
    that is not JSON (the SDK answers it with a parse error) instead of ending the connection."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def __aiter__(self) -> AsyncIterator[str]:
        buffer = bytearray()
        skipping = False
        while True:
            chunk = await self._reader.read(CHUNK)
            if not chunk:
                if buffer.strip() and not skipping:
                    yield buffer.decode("utf-8", errors="replace")
                return
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                line, buffer = bytes(buffer[:end]), buffer[end + 1 :]
                if skipping:
                    skipping = False
                    continue
                if line.strip():
                    yield line.decode("utf-8", errors="replace")
            if len(buffer) > MAX_LINE:
                if not skipping:
                    log.warning("an MCP message longer than %d bytes was dropped", MAX_LINE)
                    yield "message too long"
                skipping = True
                buffer.clear()


class LineSink:
    """What the SDK's transport writes (one JSON text and a newline per message), as bytes."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        drain = getattr(self._writer, "drain", None)
        if drain is not None:
            try:
                await drain()
            except ConnectionError:  # the host went away: the read side ends the connection
                pass


async def serve_host_door(runtime_or_core: Any, reader: asyncio.StreamReader, writer: Any) -> None:
    """Serve one MCP host connection over (reader, writer) until the host closes it. The first
    argument is the orchestration core, or the runtime holding it as `.core`."""
    connection = HostConnection(getattr(runtime_or_core, "core", runtime_or_core))
    server = build_host_server(connection)
    try:
        async with stdio_server(LineSource(reader), LineSink(writer)) as (read_stream, write_stream):  # type: ignore[arg-type]
            await serve_connection(server, read_stream, write_stream)
    finally:
        connection.close()
