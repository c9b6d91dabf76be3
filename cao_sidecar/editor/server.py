"""The editor face: cao/* methods and notifications on a pygls language server.

Handlers only translate: params in (validated into wire types), a call into the orchestration
core, a wire result out. Errors of the core become JSON-RPC errors with their documented codes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Generator, Optional

import attrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, default_converter
from pygls.protocol.language_server import lsp_method

from cao_sidecar import __version__, wire
from cao_sidecar.core.agent import Agent
from cao_sidecar.core.errors import CaoError
from cao_sidecar.core.orchestrator import READY_TIMEOUT, Orchestrator
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.editor.ask import UserAsker, attach_command
from cao_sidecar.storage.reports import Report

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


def _make_converter():
    converter = default_converter()
    converter.register_structure_hook(
        RawRequest, lambda obj, _: RawRequest(obj["id"], obj["method"], obj["jsonrpc"], obj.get("params"))
    )
    converter.register_structure_hook(
        RawNotification, lambda obj, _: RawNotification(obj["method"], obj["jsonrpc"], obj.get("params"))
    )
    return converter


class CaoProtocol(LanguageServerProtocol):
    def get_message_type(self, method: str) -> Any:
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
        result = yield server.cao_handlers[method], (server, arguments[0] if arguments else {}), None
        return result

    def _send_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:  # type: ignore[override]
        if msg_id is not None and msg_id == self.answered_initialize_id:
            self.answered_initialize_id = None
            return
        super()._send_response(msg_id, result, error)


class CaoLanguageServer(LanguageServer):
    """pygls server plus the orchestrator it fronts (set once the core has started)."""

    def __init__(self, core_ready: "asyncio.Future[Orchestrator]") -> None:
        super().__init__(
            "cao-sidecar", __version__, protocol_cls=CaoProtocol, converter_factory=_make_converter
        )
        self.core_ready = core_ready
        self.cao_handlers: dict[str, Callable[["CaoLanguageServer", Any], Awaitable[Any]]] = {}

    async def core(self) -> Orchestrator:
        return await asyncio.shield(self.core_ready)

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


def prompt_info(agent: Agent) -> Optional[wire.PromptInfo]:
    pending = agent.prompt
    if pending is None or agent.status is not AgentStatus.WAITING_USER_ANSWER:
        return None
    return wire.PromptInfo(
        id=pending.id,
        text=pending.prompt.text,
        choices=[c.label for c in pending.prompt.choices],
        detail=pending.prompt.detail,
    )


def _agent_info(agent: Agent, core: Orchestrator) -> wire.AgentInfo:
    return wire.AgentInfo(
        terminal_id=agent.terminal_id,
        session=agent.session,
        profile=agent.profile.name,
        provider=agent.provider.name,
        status=agent.status,
        working_directory=agent.working_directory,
        created_at=agent.created_at,
        name=agent.name,
        prompt=prompt_info(agent),
        attach_command=attach_command(core, agent),
    )


def build_server(core_ready: "asyncio.Future[Orchestrator]") -> CaoLanguageServer:
    server = CaoLanguageServer(core_ready)

    @_cao_method(server, "cao/spawn")
    async def spawn(ls: CaoLanguageServer, p: wire.SpawnParams) -> wire.SpawnResult:
        core = await ls.core()
        if p.timeout_seconds is not None and p.timeout_seconds <= 0:
            raise _invalid_params("cao/spawn: field 'timeoutSeconds' must be positive")
        agent = await core.spawn(
            p.profile,
            provider=p.provider,
            working_directory=p.working_directory,
            session=p.session,
            name=p.name,
            ready_timeout=p.timeout_seconds or READY_TIMEOUT,
        )
        return wire.SpawnResult(
            terminal_id=agent.terminal_id,
            session=agent.session,
            profile=agent.profile.name,
            provider=agent.provider.name,
            status=agent.status,
            name=agent.name,
        )

    @_cao_method(server, "cao/handoff")
    async def handoff(ls: CaoLanguageServer, p: wire.HandoffParams) -> wire.HandoffResult:
        core = await ls.core()
        progress = _HandoffProgress(ls, p.work_done_token)
        try:
            agent, answer = await core.handoff(
                p.message,
                profile=p.profile,
                terminal_id=p.terminal_id,
                provider=p.provider,
                working_directory=p.working_directory,
                session=p.session,
                timeout=p.timeout_seconds,
                keep=p.keep,
                on_agent=progress.begin,
            )
        finally:
            progress.end()
        return wire.HandoffResult(terminal_id=agent.terminal_id, status=AgentStatus.COMPLETED, output=answer)

    @_cao_method(server, "cao/assign")
    async def assign(ls: CaoLanguageServer, p: wire.AssignParams) -> wire.AssignResult:
        core = await ls.core()
        agent = core.assign(
            p.message,
            profile=p.profile,
            provider=p.provider,
            working_directory=p.working_directory,
            session=p.session,
            timeout=p.timeout_seconds,
            keep=p.keep,
        )
        return wire.AssignResult(terminal_id=agent.terminal_id)

    @_cao_method(server, "cao/sendMessage")
    async def send_message(ls: CaoLanguageServer, p: wire.SendMessageParams) -> wire.SendMessageResult:
        core = await ls.core()
        message_id, state = await core.send_message(p.terminal_id, p.message, p.sender)
        return wire.SendMessageResult(message_id=message_id, state=state)  # type: ignore[arg-type]

    @_cao_method(server, "cao/listAgents")
    async def list_agents(ls: CaoLanguageServer, p: wire.ListAgentsParams) -> wire.ListAgentsResult:
        core = await ls.core()
        return wire.ListAgentsResult(agents=[_agent_info(a, core) for a in core.list_agents(p.session)])

    @_cao_method(server, "cao/answer")
    async def answer(ls: CaoLanguageServer, p: wire.AnswerParams) -> wire.AnswerResult:
        core = await ls.core()
        prompt_id, typed = await core.answer(p.terminal_id, p.answer, p.prompt_id)
        return wire.AnswerResult(terminal_id=p.terminal_id, prompt_id=prompt_id, typed=typed)

    @_cao_method(server, "cao/getOutput")
    async def get_output(ls: CaoLanguageServer, p: wire.GetOutputParams) -> wire.GetOutputResult:
        core = await ls.core()
        return wire.GetOutputResult(output=await core.get_output(p.terminal_id, p.mode))

    @_cao_method(server, "cao/terminate")
    async def terminate(ls: CaoLanguageServer, p: wire.TerminateParams) -> wire.TerminateResult:
        core = await ls.core()
        await core.terminate(p.terminal_id)
        return wire.TerminateResult()

    @_cao_method(server, "cao/listProfiles")
    async def list_profiles(ls: CaoLanguageServer, p: wire.ListProfilesParams) -> wire.ListProfilesResult:
        core = await ls.core()
        from cao_sidecar.profiles.live import profile_info

        return wire.ListProfilesResult(profiles=[profile_info(e) for e in core.catalog.entries()])

    @_cao_method(server, "cao/getLog")
    async def get_log(ls: CaoLanguageServer, p: wire.GetLogParams) -> wire.GetLogResult:
        from cao_sidecar.storage.logs import read_events, read_output

        core = await ls.core()
        if p.limit is not None and p.limit <= 0:
            raise _invalid_params("cao/getLog: field 'limit' must be positive")
        # The event log can be megabytes: read it off the event loop.
        events = await asyncio.to_thread(read_events, core.logs.directory, p.terminal_id, p.since, p.limit)
        output = await asyncio.to_thread(read_output, core.logs.directory, p.terminal_id) if p.terminal_id else None
        if p.terminal_id is not None and p.terminal_id not in core.agents and not events and not output:
            core.get_agent(p.terminal_id)  # raises unknownTerminal (agents that are gone keep their logs)
        return wire.GetLogResult(events=events, output=output)

    @_cao_method(server, "cao/stats")
    async def stats(ls: CaoLanguageServer, p: wire.StatsParams) -> wire.StatsResult:
        """Resource counts, for leak checks (bench/soak.py) and for users debugging a sidecar."""
        import os

        core = await ls.core()
        agent_face = getattr(ls, "agent_face", None)
        rss = 0
        try:
            with open("/proc/self/statm") as statm:
                rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
        try:
            open_files = len(os.listdir("/proc/self/fd"))
        except OSError:
            open_files = -1
        return wire.StatsResult(
            agents=len(core.agents),
            live_agents=sum(1 for a in core.agents.values() if a.alive),
            tasks=len(asyncio.all_tasks()),
            credentials=agent_face.credentials.count if agent_face is not None else 0,
            queued_messages=core.queued_messages,
            open_files=open_files,
            rss_bytes=rss,
        )

    @_cao_method(server, "cao/doctor")
    async def doctor(ls: CaoLanguageServer, p: wire.DoctorParams) -> wire.DoctorResult:
        """What `cao-sidecar doctor` reports; needs no core, so it answers when tmux is missing."""
        from cao_sidecar.doctor import gather

        ready = ls.core_ready
        core = ready.result() if ready.done() and not ready.cancelled() and ready.exception() is None else None
        report = await gather(workspace=core.default_cwd if core is not None else None)
        return wire.DoctorResult(**report)

    _register_profile_and_flow_methods(server)

    return server


# ---- profiles and flows (cao_sidecar.profiles.live) ----------------------------------------


async def _live(ls: CaoLanguageServer) -> Any:
    await ls.core()
    live = getattr(ls, "live", None)
    if live is None:
        raise CaoError("profiles and flows are not available (their watcher failed to start; see the log)")
    return live


def _register_profile_and_flow_methods(server: CaoLanguageServer) -> None:
    from cao_sidecar.profiles.live import flow_info, run_info

    @_cao_method(server, "cao/installProfile")
    async def install_profile(ls: CaoLanguageServer, p: wire.InstallProfileParams) -> wire.InstallProfileResult:
        from cao_sidecar.profiles.install import install_profile as install

        live = await _live(ls)
        cwd = live.folders[0] if live.folders else None
        done = install(p.profile, catalog=live.profiles, user_dir=live.user_profiles, overwrite=p.overwrite, cwd=cwd)
        await live.reload({"profiles"})  # answer once cao/listProfiles shows it
        return wire.InstallProfileResult(name=done.name, path=str(done.path), replaced=done.replaced, warnings=done.warnings)

    @_cao_method(server, "cao/listFlows")
    async def list_flows(ls: CaoLanguageServer, p: wire.ListFlowsParams) -> wire.ListFlowsResult:
        live = await _live(ls)
        return wire.ListFlowsResult(flows=live.flow_infos())

    @_cao_method(server, "cao/runFlow")
    async def run_flow(ls: CaoLanguageServer, p: wire.RunFlowParams) -> wire.RunFlowResult:
        live = await _live(ls)
        return wire.RunFlowResult(run=run_info(await live.scheduler.run_now(p.name)))

    @_cao_method(server, "cao/setFlowEnabled")
    async def set_flow_enabled(ls: CaoLanguageServer, p: wire.SetFlowEnabledParams) -> wire.SetFlowEnabledResult:
        live = await _live(ls)
        return wire.SetFlowEnabledResult(flow=flow_info(live.scheduler.set_enabled(p.name, p.enabled)))

    @_cao_method(server, "cao/getTrust")
    async def get_trust(ls: CaoLanguageServer, p: wire.GetTrustParams) -> wire.GetTrustResult:
        live = await _live(ls)
        return wire.GetTrustResult(folders=live.trust_infos())

    @_cao_method(server, "cao/setTrust")
    async def set_trust(ls: CaoLanguageServer, p: wire.SetTrustParams) -> wire.SetTrustResult:
        live = await _live(ls)
        return wire.SetTrustResult(folders=await live.set_trust(p.trusted, p.path, p.persist))

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    async def workspace_folders_changed(ls: CaoLanguageServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        from cao_sidecar.profiles.live import _file_path

        live = getattr(ls, "live", None)
        if live is None:
            return
        removed = {_file_path(f.uri) for f in params.event.removed or []}
        added = [_file_path(f.uri) for f in params.event.added or []]
        folders = [f for f in live.folders if f not in removed] + [f for f in added if f is not None]
        if folders:
            live.set_workspace_folders(folders)


def connect_live(server: CaoLanguageServer, live: Any) -> None:
    """Push profile and flow changes, and the problems found in their files, to the editor."""
    server.live = live  # type: ignore[attr-defined]

    def on_profiles() -> None:
        server.notify("cao/profilesChanged", wire.ProfilesChangedNotification(profiles=live.profile_infos()))

    def on_flows() -> None:
        server.notify("cao/flowsChanged", wire.FlowsChangedNotification(flows=live.flow_infos()))

    def on_diagnostics(path: Any, diagnostics: list[Any]) -> None:
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=path.as_uri(), diagnostics=[_lsp_diagnostic(d) for d in diagnostics])
        )

    def on_trust(folders: list[wire.TrustInfo]) -> None:
        server.notify("cao/trustChanged", wire.TrustChangedNotification(folders=folders))

    def on_notice(info: wire.TrustInfo) -> None:
        from cao_sidecar.trust import how_to_trust

        text = f"cao-sidecar: {info.path} is not trusted, so its .cao/ is held back: " + "; ".join(info.held_back)
        message = types.ShowMessageParams(type=types.MessageType.Warning, message=f"{text}. {how_to_trust(info.path)}")
        asyncio.get_running_loop().call_soon(server.window_show_message, message)

    live.on_profiles_changed(on_profiles)
    live.on_flows_changed(on_flows)
    live.on_diagnostics(on_diagnostics)
    live.on_trust_changed(on_trust)
    live.on_trust_notice(on_notice)
    for path, diagnostics in live.all_diagnostics().items():
        on_diagnostics(path, diagnostics)
    live.send_notices()


def _lsp_diagnostic(d: Any) -> types.Diagnostic:
    line = max(0, d.line - 1)
    end = types.Position(line=line, character=d.end_column) if d.end_column else types.Position(line=line + 1, character=0)
    return types.Diagnostic(
        range=types.Range(start=types.Position(line=line, character=d.column), end=end),
        message=d.message,
        severity=types.DiagnosticSeverity.Error if d.severity == "error" else types.DiagnosticSeverity.Warning,
        source="cao-sidecar",
    )


def connect_notifications(server: CaoLanguageServer, core: Orchestrator, *, ask_user: bool = True) -> None:
    """Push the core's events to the editor; ask its user about agents' questions (editor.ask)
    unless it opted out."""
    asker = UserAsker(server, core) if ask_user else None

    def notify_status(agent: Agent, previous: Optional[AgentStatus], status: AgentStatus) -> None:
        server.notify(
            "cao/agentStatus",
            wire.AgentStatusNotification(
                terminal_id=agent.terminal_id,
                profile=agent.profile.name,
                status=status,
                previous_status=previous,
                session=agent.session,
                prompt=prompt_info(agent),
            ),
        )

    def on_status(agent: Agent, previous: Optional[AgentStatus], status: AgentStatus) -> None:
        notify_status(agent, previous, status)
        for progress in list(_HandoffProgress.active.get(agent.terminal_id, ())):
            progress.report(status)
        if asker is not None:
            asker.on_status(agent, previous, status)

    def on_prompt(agent: Agent, pending: Any) -> None:
        # The question changed while the agent keeps waiting: same status, new prompt.
        notify_status(agent, agent.status, agent.status)
        if asker is not None:
            asker.on_prompt(agent, pending)

    core.add_prompt_listener(on_prompt)
    if asker is not None:
        # Questions already waiting (agents adopted after a restart): ask about them too.
        for agent in list(core.agents.values()):
            if agent.status is AgentStatus.WAITING_USER_ANSWER:
                asker.on_status(agent, None, agent.status)

    def on_report(report: Report) -> None:
        server.notify(
            "cao/workerCompleted",
            wire.WorkerCompletedNotification(
                terminal_id=report.terminal_id,
                profile=report.profile,
                status=AgentStatus(report.status),
                output=report.output,
                error=report.error,
            ),
        )

    core.add_status_listener(on_status)
    # Reports are stored until sent: those made while no editor was connected come now.
    writer = getattr(server.protocol, "writer", None)
    buffered = getattr(writer, "buffered", None)
    core.set_report_sink(on_report, (lambda: buffered() == 0) if buffered is not None else (lambda: True))
    for notice in core.notices:
        server.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=f"cao-sidecar: {notice}"))


class _HandoffProgress:
    """Work-done progress for one handoff, when the client sent a workDoneToken."""

    active: dict[str, list["_HandoffProgress"]] = {}

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
            types.WorkDoneProgressBegin(
                title=f"Handoff to {agent.profile.name}", message=agent.status.value, cancellable=True
            ),
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
