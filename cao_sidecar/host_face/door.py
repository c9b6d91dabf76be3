"""The MCP host door over one byte stream pair: newline-delimited JSON-RPC (the MCP stdio transport).

One connection = one MCP server instance (its own lead identity) over the shared core. The SDK's
stdio transport takes explicit line streams; these adapters feed it from an asyncio reader and
writer (stdin/stdout, or a connection the orchestrator's dispatcher accepted).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator, Callable

from mcp.server.stdio import stdio_server
from mcp_types import INVALID_REQUEST, PARSE_ERROR, jsonrpc_message_adapter

from cao_sidecar.host_face.tools import HostConnection, build_host_server, serve_connection

log = logging.getLogger(__name__)

MAX_LINE = 16 * 1024 * 1024  # one JSON-RPC message; a longer line is answered with a parse error
CHUNK = 65536


class LineSource:
    """`async for line in source`: the reader's JSON-RPC messages, one per line. A line that is not
    one gets its error answer here (the SDK would drop it silently), and an over-long line is
    skipped with a parse error: the connection goes on either way."""

    def __init__(self, reader: asyncio.StreamReader, answer: Callable[[dict[str, Any]], None]) -> None:
        self._reader = reader
        self._answer = answer

    async def __aiter__(self) -> AsyncIterator[str]:
        buffer = bytearray()
        skipping = False
        while True:
            chunk = await self._reader.read(CHUNK)
            lines: list[bytes] = []
            if chunk:
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    lines.append(bytes(buffer[:end]))
                    del buffer[: end + 1]
            elif buffer:
                lines.append(bytes(buffer))
                buffer.clear()
            for line in lines:
                if skipping:
                    skipping = False
                elif line.strip() and self._vetted(line):
                    yield line.decode("utf-8")
            if not chunk:
                return
            if len(buffer) > MAX_LINE:
                if not skipping:
                    log.warning("an MCP message longer than %d bytes was dropped", MAX_LINE)
                    self._error(None, PARSE_ERROR, f"message longer than {MAX_LINE} bytes")
                skipping = True
                buffer.clear()

    def _vetted(self, line: bytes) -> bool:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            self._error(None, PARSE_ERROR, f"parse error: {str(exc)[:200] or type(exc).__name__}")
            return False
        try:
            jsonrpc_message_adapter.validate_python(message, by_name=False)
        except (ValueError, RecursionError):
            request_id = message.get("id") if isinstance(message, dict) else None
            valid_id = request_id if isinstance(request_id, (str, int)) and not isinstance(request_id, bool) else None
            self._error(valid_id, INVALID_REQUEST, "not a valid JSON-RPC message")
            return False
        return True

    def _error(self, request_id: Any, code: int, message: str) -> None:
        self._answer({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


class LineSink:
    """What the SDK's transport writes (one JSON text and a newline per message), as bytes."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    def send_now(self, message: dict[str, Any]) -> None:
        """An answer of the transport's own (an error for a line that is not a message)."""
        self._writer.write(json.dumps(message).encode() + b"\n")

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
    scope = getattr(runtime_or_core, "scope", None)  # the shared runtime: per-connection listeners
    connection = HostConnection(getattr(runtime_or_core, "core", runtime_or_core), scope()[0] if scope else None)
    server = build_host_server(connection)
    sink = LineSink(writer)
    try:
        async with stdio_server(LineSource(reader, sink.send_now), sink) as (read_stream, write_stream):  # type: ignore[arg-type]
            await serve_connection(server, read_stream, write_stream)
    finally:
        connection.close()
