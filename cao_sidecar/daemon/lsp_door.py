"""The `lsp` door: one editor-server instance per connection, over the shared runtime.

Exactly the wire contract of `cao-sidecar --stdio` (protocol/spec.md): the `initialize` is
answered at once (from `editor.handshake`, no core needed), then pygls serves the connection.
Its listeners live in a scope of its own, dropped when the connection ends; LSP `shutdown` and
`exit` end this connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Optional, cast

from cao_sidecar.core.errors import CaoError
from cao_sidecar.daemon.streams import SocketWriter
from cao_sidecar.editor import handshake
from cao_sidecar.editor.transport import SERVER_NOT_INITIALIZED, MessageReader
from cao_sidecar.startup_trace import mark

if TYPE_CHECKING:
    from cao_sidecar.core.orchestrator import Orchestrator
    from cao_sidecar.daemon.hub import Hub

log = logging.getLogger(__name__)


async def answer_initialize(reader: MessageReader) -> Optional[dict[str, Any]]:
    """Wait for `initialize` and answer it. Returns the message, or None at end of input/exit."""
    while (message := await reader.next_message()) is not None:
        method = message.get("method")
        if method == "initialize" and "id" in message:
            reader.send({"jsonrpc": "2.0", "id": message["id"], "result": handshake.initialize_result()})
            return message
        if method == "exit":
            return None
        if "id" in message and method is not None:
            reader.send_error(message["id"], SERVER_NOT_INITIALIZED, "send 'initialize' first")
    return None


async def serve_lsp(hub: "Hub", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    out = SocketWriter(writer)
    messages = MessageReader(reader, out)
    initialize = await answer_initialize(messages)
    if initialize is None:
        out.close()
        return
    params = initialize.get("params")
    connection = hub.join("lsp", trusted=handshake.workspace_trusted(params), initialize_params=params)

    from cao_sidecar import preload

    try:  # never beside the import thread on the same package (a deadlock): see cao_sidecar.preload
        await preload.editor_modules()
        mark("editor libraries loaded")
    except BaseException:
        hub.leave(connection)
        raise
    from cao_sidecar.editor.ask import ask_user_enabled
    from cao_sidecar.editor.server import build_server, connect_live, connect_notifications

    loop = asyncio.get_running_loop()
    core_ready: asyncio.Future[Any] = loop.create_future()
    server = build_server(core_ready, on_shutdown=hub.shutdown)
    from cao_sidecar.hosts.node import is_node_link, register_node_call

    node_link_ended = register_node_call(server, params) if is_node_link(params) else None  # the orchestrator's link
    server.protocol.set_writer(out)
    # pygls sees the initialize too (client capabilities, its own state), but must not answer it.
    server.protocol.answered_initialize_id = initialize["id"]
    messages.dispatch(server.protocol, initialize)
    scopes: list[Any] = []
    unsubscribe: list[Any] = []
    asker: Any = None

    def fail(exc: Exception) -> None:
        core_ready.set_exception(exc)
        core_ready.exception()  # retrieved here: a connection that asks nothing logs no warning

    async def attach() -> None:
        nonlocal asker
        try:
            runtime = await asyncio.shield(hub.runtime_ready)
        except asyncio.CancelledError:
            if not hub.runtime_ready.cancelled():
                raise
            fail(CaoError("the orchestrator is ending"))
            return
        except Exception as exc:  # noqa: BLE001 - reported to every cao/* request (tmux missing, ...)
            fail(exc)
            return
        core, live = runtime.scope()
        scopes.extend(s for s in (core, live) if s is not None)
        from cao_sidecar.hosts.team import hosts_of

        # Other hosts' nodes' notifications (ids qualified), to this editor too.
        unsubscribe.append(hosts_of(core).add_listener(lambda method, p: server.protocol.notify(method, p)))
        # The connection's scope stands in for the orchestrator (it forwards everything it does not filter).
        asker = connect_notifications(server, cast("Orchestrator", core), ask_user=ask_user_enabled(params))
        if live is not None:
            connect_live(server, live)
        core_ready.set_result(core)
        await runtime.agent_face_ready.wait()
        server.agent_face = runtime.agent_face  # for cao/stats

    attaching = loop.create_task(attach())
    try:
        await messages.run(server.protocol)
    except SystemExit:  # the LSP `exit` notification: this connection ends, the team does not
        pass
    except (ConnectionError, OSError) as exc:
        log.info("connection %d ended: %s", connection.id, exc)
    finally:
        attaching.cancel()
        with contextlib.suppress(BaseException):
            await attaching
        for scope in scopes:
            scope.close()
        for drop in unsubscribe:
            drop()
        if node_link_ended is not None:
            node_link_ended()
        if asker is not None:
            asker.close()
        out.close()
        hub.leave(connection)
