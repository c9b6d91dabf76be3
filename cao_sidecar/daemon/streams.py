"""Byte streams of one connection: a writer the faces can share, a reader re-buffered for a door."""

from __future__ import annotations

import asyncio
import contextlib


class SocketWriter:
    """The faces' writer interface (`editor.transport.PipeWriter`) over an asyncio StreamWriter:
    once the peer is gone, writes are dropped instead of raising into the core's listeners."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    def buffered(self) -> int:
        """Bytes not yet taken by the peer: lost if this process dies now."""
        transport = self._writer.transport
        return transport.get_write_buffer_size() if not transport.is_closing() else 0

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()


def rebuffer(source: asyncio.StreamReader, prefix: bytes, limit: int) -> tuple[asyncio.StreamReader, asyncio.Task[None]]:
    """A reader with its own line limit that yields `prefix`, then everything `source` yields.
    (The socket server reads the preamble with one limit; each door has its own.)"""
    reader = asyncio.StreamReader(limit=limit)
    if prefix:
        reader.feed_data(prefix)

    async def pump() -> None:
        try:
            while chunk := await source.read(1 << 16):
                reader.feed_data(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            reader.feed_eof()

    return reader, asyncio.get_running_loop().create_task(pump())
