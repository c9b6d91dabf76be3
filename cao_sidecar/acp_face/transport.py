"""Newline-delimited JSON-RPC on stdio, as an `acp` message transport.

The `acp` package's own stdio transport logs and skips a line that is not JSON, so a client never
learns why its request got no answer. This one answers such lines with JSON-RPC errors (parse
error -32700, invalid request -32600) and keeps the session going.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from cao_sidecar.stdio import INVALID_REQUEST, PARSE_ERROR, FrameWriter

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024 * 1024  # a prompt with embedded files can be large; beyond this: an error
# Deeper than this is no ACP message; past the interpreter's recursion limit it would also raise
# RecursionError in whatever walks it next (validation, logging), ending the face.
MAX_DEPTH = 64


class LineTransport:
    """One JSON-RPC message per line in, one per line out (`acp._transport.Transport`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: FrameWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._closed = False

    async def send(self, message: dict[str, Any]) -> None:
        if self._closed:
            raise ConnectionError("transport closed")
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        self._writer.write(data)

    def _error(self, msg_id: Any, code: int, message: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}

    async def receive(self) -> dict[str, Any] | None:
        while True:
            line = await self._read_line()
            if line is None:
                return None
            line = line.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                await self.send(self._error(None, PARSE_ERROR, f"parse error: not a JSON line ({exc})"))
                continue
            except RecursionError:
                await self.send(self._error(None, PARSE_ERROR, f"parse error: nested deeper than {MAX_DEPTH} levels"))
                continue
            problem = _vet(message)
            if problem is not None:
                msg_id = message.get("id") if isinstance(message, dict) else None
                if not isinstance(msg_id, (str, int)) or isinstance(msg_id, bool):
                    msg_id = None
                await self.send(self._error(msg_id, INVALID_REQUEST, problem))
                continue
            return message

    async def _read_line(self) -> bytes | None:
        """The next line; None at end of input. An over-long line is skipped and answered."""
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial or None
        except asyncio.LimitOverrunError:
            # Drop the rest of this line, then tell the client.
            while True:
                try:
                    await self._reader.readuntil(b"\n")
                    break
                except asyncio.LimitOverrunError as exc:
                    await self._reader.readexactly(exc.consumed)
                except asyncio.IncompleteReadError:
                    return None
            await self.send(self._error(None, INVALID_REQUEST, f"message longer than {MAX_LINE} bytes"))
            return b""
        return line

    async def close(self) -> None:
        self._closed = True


def _vet(message: Any) -> str | None:
    """Why `message` is not a JSON-RPC request, notification or response (None: it is one)."""
    if not isinstance(message, dict):
        return "invalid request: a message must be a JSON object"
    if _too_deep(message, MAX_DEPTH):
        return f"invalid request: nested deeper than {MAX_DEPTH} levels"
    if "method" in message:
        if not isinstance(message["method"], str) or not message["method"]:
            return "invalid request: 'method' must be a non-empty string"
        if "params" in message and message["params"] is not None and not isinstance(message["params"], (dict, list)):
            return "invalid request: 'params' must be an object or an array"
        if "id" in message and not _valid_id(message["id"]):
            return "invalid request: 'id' must be a string or a number"
        return None
    if "id" in message and ("result" in message or "error" in message):
        return None  # a response to one of our requests
    return "invalid request: neither a request nor a response (no 'method')"


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def _too_deep(value: Any, limit: int) -> bool:
    """True when `value` nests more than `limit` containers (iterative: no recursion of ours)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False
