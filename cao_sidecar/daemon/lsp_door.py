"""The `lsp` door: one editor-server instance per connection, over the shared runtime.

Exactly the wire contract of `cao-sidecar --stdio` (protocol/spec.md): the `initialize` is
answered at once (from `editor.handshake`, no core needed); cao/* requests are answered as soon
as the runtime runs (`daemon.early`, before pygls has loaded), then pygls serves the connection.
Its listeners live in a scope of its own, dropped when the connection ends; LSP `shutdown` and
`exit` end this connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

from cao_sidecar.core.errors import CaoError
from cao_sidecar.daemon.streams import SocketWriter
from cao_sidecar.editor import handshake
from cao_sidecar.editor.transport import SERVER_NOT_INITIALIZED, MessageReader
from cao_sidecar.startup_trace import mark

if TYPE_CHECKING:
    from cao_sidecar.core.orchestrator import Orchestrator
    from cao_sidecar.daemon.hub import Hub
    from cao_sidecar.profiles.live import LiveConfig

log = logging.getLogger(__name__)

# pygls loads once the first cao/* requests are answered (they need no pygls), at the latest
# this long after `initialize`; other requests wait for it.
PYGLS_DEFER_SECONDS = 1.0


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


def _log_failure(task: "asyncio.Task[Any]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("serving an editor connection failed", exc_info=task.exception())


async def serve_lsp(hub: "Hub", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    out = SocketWriter(writer)
    messages = MessageReader(reader, out)
    initialize = await answer_initialize(messages)
    if initialize is None:
        out.close()
        return
    from cao_sidecar.daemon.early import EarlyDoor, EarlyServer  # not in the forwarder (it imports this module)
    from cao_sidecar.editor.pushes import push_core, push_live

    params = initialize.get("params")
    connection = hub.join("lsp", trusted=handshake.workspace_trusted(params), initialize_params=params)
    messages.initialized = True  # answered: what follows is served (early, then by pygls)
    loop = asyncio.get_running_loop()
    core_ready: asyncio.Future[Any] = loop.create_future()
    early = EarlyServer(messages, EarlyDoor(core_ready, hub.shutdown))
    serving: asyncio.Future[Any] = loop.create_future()  # the pygls server, once it serves
    scopes: list[Any] = []
    ends: list[Callable[[], None]] = []  # listeners and links of this connection, dropped at its end

    def send(method: str, params: Any) -> None:
        # On the next loop turn, like pygls's responses (written from their task's done callback):
        # an answer computed before a change goes out before the notification of that change.
        loop.call_soon(messages.send, {"jsonrpc": "2.0", "method": method, "params": params})

    def fail(exc: Exception) -> None:
        core_ready.set_exception(exc)
        core_ready.exception()  # retrieved here: a connection that asks nothing logs no warning

    async def attach() -> None:
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
        from cao_sidecar.hosts.node import is_node_link
        from cao_sidecar.hosts.team import hosts_of

        if is_node_link(params):  # this process is a host's node: its reports go up, acknowledged
            from cao_sidecar.hosts.node_reports import forward_reports

            await forward_reports(runtime.core)

        # The editor hears what happens from now on, pygls loaded or not (editor.pushes).
        push_core(core, send, ready=lambda: out.buffered() == 0)
        if live is not None:
            push_live(live, send)
        # Other hosts' nodes' notifications (ids qualified), to this editor too.
        ends.append(hosts_of(core).add_listener(send))
        early.door.runtime = runtime
        early.door.live = cast("Optional[LiveConfig]", live)  # the connection's view of it
        core_ready.set_result(core)  # cao/* requests are answered from now on (daemon.early)
        server = await serving
        from cao_sidecar.editor.ask import ask_user_enabled
        from cao_sidecar.editor.server import connect_notifications

        # The connection's scope stands in for the orchestrator (it forwards everything it does not filter).
        asker = connect_notifications(server, cast("Orchestrator", core), ask_user=ask_user_enabled(params))
        if asker is not None:
            ends.append(asker.close)
        server.live = live
        await runtime.agent_face_ready.wait()
        server.agent_face = runtime.agent_face  # for cao/stats

    async def serve_with_pygls() -> None:
        from cao_sidecar import preload

        with contextlib.suppress(asyncio.TimeoutError):  # a long first request does not hold the rest back
            await asyncio.wait_for(early.settled(), PYGLS_DEFER_SECONDS)
        # never beside the import thread on the same package (a deadlock): see cao_sidecar.preload
        await preload.editor_modules()
        mark("editor libraries loaded")
        from cao_sidecar.editor.server import build_server
        from cao_sidecar.hosts.node import is_node_link, register_node_call

        server = build_server(core_ready, on_shutdown=hub.shutdown)
        if is_node_link(params):  # the orchestrator's link
            ends.append(register_node_call(server, params))
        server.protocol.set_writer(out)
        # pygls sees the initialize too (client capabilities, its own state), but must not answer it.
        server.protocol.answered_initialize_id = initialize["id"]
        server.live = early.door.live  # for the workspace folders' changes held until now
        messages.dispatch(server.protocol, initialize)
        for message in early.held:  # in arrival order, before anything read later
            messages.dispatch(server.protocol, message)
        early.held.clear()
        serving.set_result(server)

    async def read() -> None:
        while (message := await messages.next_message()) is not None:
            if not serving.done():
                if message.get("method") == "exit":
                    return  # LSP `exit`: this connection ends, the team does not
                early.route(message)
            elif not early.cancelled(message):
                messages.dispatch(serving.result().protocol, message)

    tasks = [loop.create_task(attach()), loop.create_task(serve_with_pygls())]
    for task in tasks:
        task.add_done_callback(_log_failure)
    try:
        await read()
    except SystemExit:  # the LSP `exit` notification: this connection ends, the team does not
        pass
    except (ConnectionError, OSError) as exc:
        log.info("connection %d ended: %s", connection.id, exc)
    finally:
        early.cancel()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for scope in scopes:
            scope.close()
        for end in ends:
            end()
        out.close()
        hub.leave(connection)
