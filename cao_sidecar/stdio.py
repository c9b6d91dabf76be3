"""stdin/stdout as asyncio streams for the stdio faces (the editor's LSP framing, ACP's lines).

stdout is the protocol: `take_stdout_for_protocol` keeps the real one for it and sends fd 1 to
stderr, so a stray print cannot corrupt the stream. Pipes and sockets are read and written
event-driven; a regular file (a test's input, a redirected output) falls back to a thread for
reading and to blocking writes. This module imports no protocol library.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from typing import BinaryIO, Protocol

# JSON-RPC 2.0 error codes every face answers bad input with.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603

_pumps: set[asyncio.Task[None]] = set()  # readers fed from a thread; referenced until done


class FrameWriter(Protocol):
    """Where a face writes its framed messages: a PipeWriter, or daemon.streams.SocketWriter."""

    def write(self, data: bytes) -> None: ...


class PipeWriter:
    """Non-blocking writer for a pipe or socket; a blocking fallback for regular files/ttys."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._transport: asyncio.WriteTransport | None = None

    async def connect(self) -> None:
        mode = os.fstat(self._stream.fileno()).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.connect_write_pipe(asyncio.Protocol, self._stream)

    def write(self, data: bytes) -> None:
        if self._transport is not None:
            if not self._transport.is_closing():
                self._transport.write(data)
            return
        self._stream.write(data)
        self._stream.flush()

    def buffered(self) -> int:
        """Bytes written but still in this process (the reader is behind): lost if it dies now."""
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        else:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                pass


async def open_reader(stdin: BinaryIO, *, limit: int, head: bytes = b"") -> asyncio.StreamReader:
    """An asyncio reader on `stdin`; `limit` bounds one line (StreamReader.readuntil). `head`:
    bytes of `stdin` read already (daemon.prelaunch), read first."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    if head:
        reader.feed_data(head)
    mode = os.fstat(stdin.fileno()).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
        return reader

    async def pump() -> None:  # a regular file: no event-driven reading possible
        while chunk := await loop.run_in_executor(None, stdin.read1, 65536):  # type: ignore[attr-defined]
            reader.feed_data(chunk)
        reader.feed_eof()

    task = loop.create_task(pump())
    _pumps.add(task)
    task.add_done_callback(_pumps.discard)
    return reader


def take_stdout_for_protocol() -> BinaryIO:
    """Keep the real stdout for the protocol and point fd 1 at stderr, so a stray print (ours or
    a library's) can never corrupt the stream."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)
