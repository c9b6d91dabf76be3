"""Tool calls that asked for progress are answered as a stream, all others as plain JSON.

The agents' MCP endpoint is stateless and answers each POST with one JSON body (json_response):
the fastest for the many short calls, but a progress notification has no wire there. A caller
that sends `_meta.progressToken` on a `tools/call` (and accepts `text/event-stream`) wants them,
so its POST goes to a second app of the same MCP server that answers with an SSE stream: the
handoff's progress notifications, then the result. A lead CLI that resets its tool timeout on
progress keeps a long handoff's call alive this way (docs/providers.md).

The body is read here once and replayed to the chosen app. Only a body that contains the bytes
`progressToken` is parsed, so ordinary calls pay one substring search.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

log = logging.getLogger(__name__)

MAX_PEEK = 4 * 1024 * 1024  # bodies beyond this go on unparsed (to the JSON app, which refuses them)


def wants_progress_stream(body: bytes, accept: str) -> bool:
    """A `tools/call` with a progressToken from a client that takes an SSE answer."""
    if b"progressToken" not in body or "text/event-stream" not in accept:
        return False
    try:
        message = json.loads(body)
    except ValueError:
        return False
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return False
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and meta.get("progressToken") is not None


class ProgressRouter:
    """ASGI: `POST` bodies that want progress → `streaming_app`, everything else → `json_app`.

    Both are Starlette apps of one MCP server; this router runs both their lifespans (each holds
    its session manager's task group)."""

    def __init__(self, json_app: Any, streaming_app: Any) -> None:
        self._json_app = json_app
        self._streaming_app = streaming_app
        self.streamed = 0  # calls answered as a stream (diagnostics, tests)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self._json_app(scope, receive, send)
            return
        chunks, complete = await _peek(receive)
        replay = _replaying(chunks, complete, receive)
        headers = dict(scope.get("headers") or [])
        accept = headers.get(b"accept", b"").decode("latin-1")
        if complete and wants_progress_stream(b"".join(chunks), accept):
            self.streamed += 1
            await self._streaming_app(scope, replay, send)
        else:
            await self._json_app(scope, replay, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        async with contextlib.AsyncExitStack() as stack:
            message = await receive()
            if message["type"] != "lifespan.startup":
                return
            try:
                for app in (self._json_app, self._streaming_app):
                    await stack.enter_async_context(app.router.lifespan_context(app))
            except Exception as exc:
                log.exception("the MCP apps did not start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
            while (await receive())["type"] != "lifespan.shutdown":
                pass
        await send({"type": "lifespan.shutdown.complete"})


async def _peek(receive: Any) -> tuple[list[bytes], bool]:
    """The request body's chunks read so far, and whether that is all of it (up to MAX_PEEK)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return chunks, False  # a disconnect: the app reads it again from `receive`
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body"):
            return chunks, True
        if size > MAX_PEEK:
            return chunks, False


def _replaying(chunks: list[bytes], complete: bool, receive: Any) -> Any:
    """A `receive` that gives the peeked body again, then defers to the real one."""
    pending = list(chunks)

    async def replay() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or not complete}
        return await receive()

    return replay
