"""LSP base protocol over stdio, hardened: Content-Length framing in, responses out.

pygls's own reader drops requests it cannot parse without answering, so we frame and vet each
message here and hand only well-formed JSON-RPC envelopes to pygls. This module does not import
pygls: the handshake is answered before pygls has loaded. Every bad input gets the
JSON-RPC error the spec names (or is dropped where the spec says so) and the next message is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, BinaryIO

from cao_sidecar import stdio
from cao_sidecar.stdio import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, FrameWriter, PipeWriter, take_stdout_for_protocol

__all__ = ["MessageReader", "PipeWriter", "open_stdin_reader", "take_stdout_for_protocol"]  # app.py's names

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_HEADER_LINE = 8192
SERVER_NOT_INITIALIZED = -32002


async def open_stdin_reader(stdin: BinaryIO, *, head: bytes = b"") -> asyncio.StreamReader:
    """stdin as a reader for LSP framing (header lines are short: a small line limit); `head`:
    bytes of it read already, read first."""
    return await stdio.open_reader(stdin, limit=MAX_HEADER_LINE * 4, head=head)


class MessageReader:
    """Reads framed messages, vets their JSON-RPC envelope, and dispatches them to pygls.

    Framing and vetting need nothing from pygls, so the handshake can be answered while pygls
    is still being imported (see daemon.lsp_door and daemon.forward).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: FrameWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.initialized = False

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        self._writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def send_error(self, msg_id: Any, code: int, message: str) -> None:
        self.send({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})

    async def _read_line(self) -> bytes | None:
        try:
            return await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial or None
        except asyncio.LimitOverrunError as exc:
            # A header line far too long: garbage. Drop it up to the next newline.
            await self._reader.readexactly(exc.consumed)
            return b"\x00garbage"

    async def _skip(self, length: int) -> None:
        while length > 0:
            chunk = await self._reader.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    async def next_message(self) -> dict[str, Any] | None:
        """The next well-formed JSON-RPC message, or None at end of input. Bad input on the way
        is answered with the error the spec names, and skipped."""
        while True:
            body = await self._next_body()
            if body is None:
                return None
            message = self._vet(body)
            if message is not None:
                return message

    async def _next_body(self) -> bytes | None:
        content_length: int | None = None
        in_garbage = False
        while True:
            line = await self._read_line()
            if line is None:
                return None
            stripped = line.strip()
            if not stripped:  # blank line: end of headers
                if content_length is None:
                    if not in_garbage:
                        self.send_error(None, PARSE_ERROR, "bad message: headers without 'Content-Length'")
                    in_garbage = False
                    continue
                length, content_length, in_garbage = content_length, None, False
                if length > MAX_BODY_BYTES:
                    await self._skip(length)
                    self.send_error(None, INVALID_REQUEST, f"message of {length} bytes exceeds the limit of {MAX_BODY_BYTES}")
                    continue
                try:
                    return await self._reader.readexactly(length)
                except asyncio.IncompleteReadError:
                    return None
            # A header line. Garbage glued in front of a real header is cut off (and reported).
            at = stripped.lower().find(b"content-length:")
            if at > 0:
                self._report_garbage(in_garbage)
                in_garbage, stripped = False, stripped[at:]
            name, sep, value = stripped.partition(b":")
            if sep and name.strip().lower() == b"content-length":
                try:
                    content_length = int(value.strip())
                    if content_length < 0:
                        raise ValueError(value)
                except ValueError:
                    self._report_garbage(in_garbage)
                    content_length, in_garbage = None, True
            elif sep and name.strip().replace(b"-", b"").isalnum() and not in_garbage:
                pass  # another header (Content-Type): ignored
            else:
                self._report_garbage(in_garbage)
                content_length, in_garbage = None, True

    def _report_garbage(self, already_reported: bool) -> None:
        if not already_reported:
            self.send_error(None, PARSE_ERROR, "bad message header: expected 'Content-Length: N' lines then a blank line")

    def _vet(self, body: bytes) -> dict[str, Any] | None:
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            self.send_error(None, PARSE_ERROR, f"parse error: {exc}")
            return None
        if not isinstance(message, dict):
            self.send_error(None, INVALID_REQUEST, "a message must be a JSON object (batches are not supported)")
            return None
        msg_id = message.get("id")
        has_id = "id" in message
        if has_id and (isinstance(msg_id, bool) or not isinstance(msg_id, (int, str))):
            self.send_error(None, INVALID_REQUEST, "'id' must be an integer or a string")
            return None
        # Invalid envelopes are answered with id null when they carry no usable id (JSON-RPC 2.0 §5).
        if message.get("jsonrpc") != "2.0":
            self.send_error(msg_id, INVALID_REQUEST, "'jsonrpc' must be \"2.0\"")
            return None
        method = message.get("method")
        if "method" in message and not isinstance(method, str):
            self.send_error(msg_id, INVALID_REQUEST, "'method' must be a string")
            return None
        if method is None and not has_id:
            self.send_error(None, INVALID_REQUEST, "neither a request, a notification nor a response")
            return None
        if method is not None and not self.initialized and method not in ("initialize", "exit"):
            if has_id:
                self.send_error(msg_id, SERVER_NOT_INITIALIZED, "the server is not initialized: send 'initialize' first")
            return None
        return message

    def dispatch(self, protocol: Any, message: dict[str, Any]) -> None:
        """Hand one vetted message to pygls. `exit` surfaces as SystemExit."""
        from pygls.exceptions import JsonRpcException

        msg_id = message.get("id")
        method = message.get("method")
        is_request = "id" in message and method is not None
        try:
            structured = protocol.structure_message(message)
        except JsonRpcException as exc:
            if is_request:
                self.send_error(msg_id, exc.code, f"invalid params for '{method}'")
            return
        except Exception:
            log.exception("cannot structure message")
            if is_request:
                self.send_error(msg_id, INVALID_REQUEST, "invalid request")
            return
        if method == "initialize":
            self.initialized = True
        try:
            protocol.handle_message(structured)
        except SystemExit:
            raise
        except Exception:  # one bad message must not stop the server
            log.exception("failed to handle message")
            if is_request:
                self.send_error(msg_id, INTERNAL_ERROR, "internal error")

    async def run(self, protocol: Any) -> None:
        """Serve until end of input."""
        while (message := await self.next_message()) is not None:
            self.dispatch(protocol, message)
