"""The editor face: cao/* methods and notifications on a pygls language server.

Handlers only translate: params in (validated into wire types), a call into the orchestration
core, a wire result out. Errors of the core become JSON-RPC errors with their documented codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Generator, Optional

import attrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, default_converter
from pygls.protocol.language_server import lsp_method

from cao_sidecar import __version__, handlers, wire
from cao_sidecar.core.agent import Agent
from cao_sidecar.core.errors import CaoError
from cao_sidecar.core.orchestrator import Orchestrator
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.editor.ask import UserAsker

if TYPE_CHECKING:
    import cattrs

    from cao_sidecar.agent_face.http import AgentFace
    from cao_sidecar.profiles.live import LiveConfig

log = logging.getLogger(__name__)


@attrs.define
class RawRequest:
    """A cao/* request whose params stay raw JSON: we validate them ourselves, naming the field."""

    id: Any
    method: str
    jsonrpc: str
    params: Any = None


@attrs.define
class RawNotification:
    method: str
    jsonrpc: str
    params: Any = None


def _make_converter() -> cattrs.Converter:
    converter = default_converter()
    converter.register_structure_hook(
        RawRequest, lambda obj, _: RawRequest(obj["id"], obj["method"], obj["jsonrpc"], obj.get("params"))
    )
    converter.register_structure_hook(
        RawNotification, lambda obj, _: RawNotification(obj["method"], obj["jsonrpc"], obj.get("params"))
    )
    return converter


class CaoProtocol(LanguageServerProtocol):
    # pygls wraps its own in functools.lru_cache; a plain method that defers to it is the same call.
    def get_message_type(self, method: str) -> Any:  # type: ignore[override]
        if method.startswith("cao/"):
            return None  # decided per message in structure_message
        return super().get_message_type(method)

    def structure_message(self, data: dict[str, Any]) -> Any:
        method = data.get("method")
        if isinstance(method, str) and method.startswith("cao/"):
            cls = RawRequest if "id" in data else RawNotification
            return self._converter.structure(data, cls)
        return super().structure_message(data)

    # The id of an `initialize` the sidecar already answered itself (editor.handshake); pygls
    # still processes it for its own state, but its answer must not go out a second time.
    answered_initialize_id: Any = None

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams) -> Generator[Any, Any, Any]:
        """A command (wire.COMMANDS) runs its cao/ method; its one argument (if any) is the params."""
        method = wire.COMMANDS.get(params.command)
        if method is None:
            raise _invalid_params(f"unknown command {params.command!r}; commands: {', '.join(sorted(wire.COMMANDS))}")
        arguments = params.arguments or []
        if len(arguments) > 1:
            raise _invalid_params(f"{params.command}: takes one argument, the params of {method}")
        server = self._server
        assert isinstance(server, CaoLanguageServer)  # this protocol is only built by build_server
        result = yield server.cao_handlers[method], (server, arguments[0] if arguments else {}), None
        return result

    def _send_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        if msg_id is not None and msg_id == self.answered_initialize_id:
            self.answered_initialize_id = None
            return
        super()._send_response(msg_id, result, error)


class CaoLanguageServer(LanguageServer):
    """pygls server plus the orchestrator it fronts (set once the core has started)."""

    protocol: CaoProtocol  # built with protocol_cls=CaoProtocol

    def __init__(self, core_ready: "asyncio.Future[Orchestrator]", on_shutdown: Optional[Callable[[bool], None]] = None) -> None:
        super().__init__("cao-sidecar", __version__, protocol_cls=CaoProtocol, converter_factory=_make_converter)
        self.core_ready = core_ready
        self.on_shutdown = on_shutdown
        self.cao_handlers: dict[str, Callable[["CaoLanguageServer", Any], Awaitable[Any]]] = {}
        self.live: Optional[LiveConfig] = None  # set by connect_live
        self.agent_face: Optional[AgentFace] = None  # set once it has started (app.py)

    # ---- handlers.Door --------------------------------------------------------------------

    async def core(self) -> Orchestrator:
        return await asyncio.shield(self.core_ready)

    def started_core(self) -> Optional[Orchestrator]:
        return handlers.started(self.core_ready)

    def live_config(self) -> Optional[LiveConfig]:
        return self.live

    def credential_count(self) -> int:
        return self.agent_face.credentials.count if self.agent_face is not None else 0

    def handoff_progress(self, token: Optional[wire.ProgressToken]) -> "_HandoffProgress":
        return _HandoffProgress(self, token)

    def shutdown_hook(self) -> Optional[Callable[[bool], None]]:
        return self.on_shutdown

    def notify(self, method: str, params: Any) -> None:
        # Written on the next loop turn, like responses (pygls writes a response from its task's
        # done callback): a response computed before a change still goes out before the
        # notification of that change, so clients never see an older state after a newer one.
        asyncio.get_running_loop().call_soon(self.protocol.notify, method, wire.unstructure(params))


def _invalid_params(message: str) -> JsonRpcException:
    return JsonRpcInvalidParams(message, data={"kind": "invalidParams"})


def _to_jsonrpc(exc: CaoError) -> JsonRpcException:
    return JsonRpcException(message=exc.message, code=exc.code, data=exc.data or None)


Handler = Callable[[CaoLanguageServer, Any], Awaitable[Any]]


def _cao_method(server: CaoLanguageServer, method: str) -> Callable[[Handler], Handler]:
    params_cls, _result_cls = wire.METHODS[method]

    def register(fn: Handler) -> Handler:
        async def handler(ls: CaoLanguageServer, raw: Any) -> Any:
            try:
                params = wire.structure_params(raw, params_cls)
            except wire.ParamsError as exc:
                raise _invalid_params(f"{method}: {exc}") from None
            try:
                result = await fn(ls, params)
            except CaoError as exc:
                raise _to_jsonrpc(exc) from None
            except (JsonRpcException, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("%s failed", method)
                raise
            return wire.unstructure(result)

        server.feature(method)(handler)
        server.cao_handlers[method] = handler
        return fn

    return register


def build_server(
    core_ready: "asyncio.Future[Orchestrator]", on_shutdown: Optional[Callable[[bool], None]] = None
) -> CaoLanguageServer:
    """`on_shutdown(terminate_agents)`: what `cao/shutdown` does (ends the orchestrator)."""
    server = CaoLanguageServer(core_ready, on_shutdown)
    for method, body in handlers.HANDLERS.items():  # the bodies every door shares
        _cao_method(server, method)(body)
    _register_workspace_folders(server)
    return server


def _register_workspace_folders(server: CaoLanguageServer) -> None:
    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    async def workspace_folders_changed(ls: CaoLanguageServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        from cao_sidecar.profiles.live import file_path

        with contextlib.suppress(Exception):  # sent early: the runtime (and its live config) may still start
            await ls.core()
        live = ls.live
        if live is None:
            return
        removed = {file_path(f.uri) for f in params.event.removed or []}
        added = [file_path(f.uri) for f in params.event.added or []]
        folders = [f for f in live.folders if f not in removed] + [f for f in added if f is not None]
        if folders:
            live.set_workspace_folders(folders)


def connect_notifications(server: CaoLanguageServer, core: Orchestrator, *, ask_user: bool = True) -> Optional[UserAsker]:
    """What needs pygls of the core's events: handoff progress, and asking the editor's user about
    agents' questions (editor.ask) unless it opted out. Returns the asker (to close with the
    connection), if any. The notifications themselves: editor.pushes."""
    asker = UserAsker(server, core) if ask_user else None

    def on_status(agent: Agent, previous: Optional[AgentStatus], status: AgentStatus) -> None:
        for progress in list(_HandoffProgress.active.get(agent.terminal_id, ())):
            progress.report(status)
        if asker is not None:
            asker.on_status(agent, previous, status)

    core.add_status_listener(on_status)
    if asker is not None:
        core.add_prompt_listener(asker.on_prompt)
        # Questions already waiting (agents adopted after a restart, or asked while pygls loaded): ask about them too.
        for agent in core.list_agents():  # not the pool's warm workers
            if agent.status is AgentStatus.WAITING_USER_ANSWER:
                asker.on_status(agent, None, agent.status)
    return asker


class _HandoffProgress:
    """Work-done progress for one handoff, when the client sent a workDoneToken."""

    active: ClassVar[dict[str, list["_HandoffProgress"]]] = {}

    def __init__(self, ls: CaoLanguageServer, token: wire.ProgressToken | None) -> None:
        self._ls = ls
        # Only for clients that said they show progress (eglot does not, and drops it silently).
        window = getattr(getattr(ls.protocol, "client_capabilities", None), "window", None)
        self._token = token if window is not None and window.work_done_progress else None
        self._terminal_id: Optional[str] = None

    def begin(self, agent: Agent) -> None:
        if self._token is None:
            return
        self._terminal_id = agent.terminal_id
        self.active.setdefault(agent.terminal_id, []).append(self)
        self._ls.work_done_progress.begin(
            self._token,
            types.WorkDoneProgressBegin(title=f"Handoff to {agent.profile.name}", message=agent.status.value, cancellable=True),
        )

    def report(self, status: AgentStatus) -> None:
        if self._token is not None:
            self._ls.work_done_progress.report(self._token, types.WorkDoneProgressReport(message=status.value))

    def end(self) -> None:
        if self._token is None or self._terminal_id is None:
            return
        waiting = self.active.get(self._terminal_id, [])
        if self in waiting:
            waiting.remove(self)
        if not waiting:
            self.active.pop(self._terminal_id, None)
        self._ls.work_done_progress.end(self._token, types.WorkDoneProgressEnd(message="done"))
