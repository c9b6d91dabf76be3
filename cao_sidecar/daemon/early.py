"""cao/* requests answered before pygls has loaded (about half a second on a cold start).

The editor door's first requests (a `cao/spawn` right after `initialize`) need only the runtime
and the shared bodies in `cao_sidecar.handlers`: they are answered here, with the same params
checks and error codes as the pygls door (editor.server). Every other message waits for pygls,
in order. What the runtime emits meanwhile is recorded (`daemon.fanout.Recording`) and handed
to the connection's listeners once pygls serves it, so nothing said early is lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional

from cao_sidecar import handlers, preload, wire
from cao_sidecar.core.errors import CaoError
from cao_sidecar.startup_trace import mark

if TYPE_CHECKING:
    from cao_sidecar.core.orchestrator import Orchestrator
    from cao_sidecar.editor.transport import MessageReader
    from cao_sidecar.profiles.live import LiveConfig
    from cao_sidecar.runtime import Runtime

log = logging.getLogger(__name__)

INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REQUEST_CANCELLED = -32800
CANCEL_REQUEST = "$/cancelRequest"


class EarlyDoor:
    """`handlers.Door` for one connection until pygls serves it: no progress reports."""

    def __init__(self, core_ready: "asyncio.Future[Orchestrator]", on_shutdown: Callable[[bool], None]) -> None:
        self.core_ready = core_ready
        self.live: Optional[LiveConfig] = None
        self.runtime: Optional[Runtime] = None
        self._on_shutdown = on_shutdown

    async def core(self) -> "Orchestrator":
        return await asyncio.shield(self.core_ready)

    def started_core(self) -> Optional["Orchestrator"]:
        return handlers.started(self.core_ready)

    def live_config(self) -> Optional["LiveConfig"]:
        return self.live

    def credential_count(self) -> int:
        face = self.runtime.agent_face if self.runtime is not None else None
        return face.credentials.count if face is not None else 0

    def handoff_progress(self, token: Optional[wire.ProgressToken]) -> handlers.NoProgress:
        return handlers.NoProgress()

    def shutdown_hook(self) -> Optional[Callable[[bool], None]]:
        return self._on_shutdown


def _error(code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data:
        error["data"] = data
    return error


class EarlyServer:
    """Routes one connection's messages until pygls is ready: cao/* requests are served here,
    everything else is held for pygls (`held`, in arrival order)."""

    def __init__(self, messages: "MessageReader", door: EarlyDoor) -> None:
        self._messages = messages
        self.door = door
        self._running: dict[Any, asyncio.Task[Any]] = {}
        # Cancelled by their client: they are tearing down (a handoff's worker) and must finish that.
        self._cancelling: set[asyncio.Task[Any]] = set()
        self._quiet = asyncio.Event()  # no early request runs
        self._quiet.set()
        self._needed = asyncio.Event()  # a request waits for pygls
        self.held: list[dict[str, Any]] = []
        self.shut_down = False  # LSP `shutdown` answered: only `exit` is expected now

    async def settled(self) -> None:
        """pygls may load now: a request waits for it, or the runtime has started (or failed to)
        and no early request runs (loading beside them would slow them: one GIL)."""

        async def quiet() -> None:
            await asyncio.wait([self.door.core_ready])
            await self._quiet.wait()

        waits = [asyncio.ensure_future(self._needed.wait()), asyncio.ensure_future(quiet())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def route(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params")
        # Progress for a handoff needs pygls's work-done progress: that request waits for it.
        wants_progress = isinstance(params, dict) and params.get("workDoneToken") is not None
        if "id" in message and method is not None and (self.shut_down or method == "shutdown"):
            # A short-lived client (a script, a command-line verb) leaves without waiting for pygls.
            if self.shut_down:
                self._reply(message["id"], error=_error(INVALID_REQUEST, "the server is shutting down"))
            else:
                self.shut_down = True
                self._reply(message["id"], result=None)
            return
        if "id" in message and method in handlers.HANDLERS and not wants_progress:
            msg_id = message["id"]
            task = asyncio.get_running_loop().create_task(self._answer(method, message.get("params")))
            self._running[msg_id] = task
            self._quiet.clear()
            # The MCP SDK's import waits for it too (cao_sidecar.preload): a first spawn runs alone.
            release = preload.hold()

            def answered(done: "asyncio.Task[Any]") -> None:
                release()
                self._send(method, msg_id, done)

            task.add_done_callback(answered)
            return
        if not self.cancelled(message):
            self.held.append(message)
            if "id" in message and method is not None:
                self._needed.set()

    def cancelled(self, message: dict[str, Any]) -> bool:
        """A `$/cancelRequest` of an early request: cancelled here (True); else False."""
        params = message.get("params")
        if message.get("method") != CANCEL_REQUEST or not isinstance(params, dict):
            return False
        task = self._running.get(params.get("id"))
        if task is None:
            return False
        task.cancel()
        self._cancelling.add(task)
        return True

    async def _answer(self, method: str, raw: Any) -> Any:
        params_cls, _result_cls = wire.METHODS[method]
        params = wire.structure_params(raw, params_cls)
        return wire.unstructure(await handlers.HANDLERS[method](self.door, params))

    def _send(self, method: str, msg_id: Any, task: "asyncio.Task[Any]") -> None:
        self._running.pop(msg_id, None)
        self._cancelling.discard(task)
        if not self._running:
            self._quiet.set()
        if task.cancelled():
            self._reply(msg_id, error=_error(REQUEST_CANCELLED, f'Request with id "{msg_id}" is canceled'))
            return
        exc = task.exception()
        if exc is None:
            self._reply(msg_id, result=task.result())
        elif isinstance(exc, wire.ParamsError):
            self._reply(msg_id, error=_error(INVALID_PARAMS, f"{method}: {exc}", {"kind": "invalidParams"}))
        elif isinstance(exc, CaoError):
            self._reply(msg_id, error=_error(exc.code, exc.message, exc.data or None))
        else:
            log.error("an early cao/* request failed", exc_info=exc)
            self._reply(msg_id, error=_error(INTERNAL_ERROR, f"Internal Error: {exc}"))

    def _reply(self, msg_id: Any, *, result: Any = None, error: Optional[dict[str, Any]] = None) -> None:
        mark("answered before pygls")
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id}
        if error is not None:
            answer["error"] = error
        else:
            answer["result"] = result
        self._messages.send(answer)

    def cancel(self) -> None:
        """The connection ends: its early requests with it (those cancelled already go on with
        their clean-up: a second cancel would cut it short and leave the worker's window)."""
        for task in list(self._running.values()):
            if task not in self._cancelling:
                task.cancel()
