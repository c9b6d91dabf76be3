"""The ACP methods (an `acp.Agent`) over the orchestration core.

A prompt becomes a task for the session's supervisor agent (a real CLI in tmux): its answer comes
back as `agent_message_chunk`s, what its team does meanwhile as tool calls (team.py), and the
turn ends with a stop reason (`end_turn`, or `cancelled` after `session/cancel`).

The supervisor's profile: `_meta: {"cao": {"profile": NAME}}` on session/new or session/load, a
`/profile NAME` command in the conversation, else $CAO_ACP_DEFAULT_PROFILE, else `supervisor`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable, Optional

import attrs
from acp import (
    PROTOCOL_VERSION,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PromptResponse,
    RequestError,
    update_agent_message_text,
    update_user_message_text,
)
from acp.helpers import update_available_commands
from acp.schema import (
    AgentCapabilities,
    AvailableCommand,
    AvailableCommandInput,
    Implementation,
    McpCapabilities,
    PromptCapabilities,
    StopReason,
    UnstructuredCommandInput,
)

from cao_sidecar import __version__, handlers, wire
from cao_sidecar.acp_face.sessions import AcpSession, SessionStore, new_session_id
from cao_sidecar.acp_face.team import TeamReporter, Updates
from cao_sidecar.core.errors import CaoError
from cao_sidecar.profiles.profile import McpServer
from cao_sidecar.settings import settings

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "supervisor"
TURN_TIMEOUT = settings().acp_turn_timeout
ANSWER_CHUNK = 4000  # characters per agent_message_chunk

COMMANDS = [
    AvailableCommand(
        name="profile",
        description="Show or choose the supervisor's profile for this conversation",
        input=AvailableCommandInput(root=UnstructuredCommandInput(hint="profile name")),
    ),
    AvailableCommand(name="agents", description="List the agents of this conversation and their status"),
]


def default_profile() -> str:
    return settings().acp_default_profile or DEFAULT_PROFILE


def rpc_error(exc: CaoError) -> RequestError:
    return RequestError(exc.code, exc.message, exc.data)


def prompt_text(blocks: list[Any]) -> str:
    """The prompt as one task text: text blocks, links and embedded text files."""
    parts: list[str] = []
    for block in blocks:
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource_link":
            parts.append(f"[{block.name}]({block.uri})")
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            if text is not None:
                parts.append(f"\n--- {resource.uri}\n{text}\n---")
            else:
                parts.append(f"[{resource.uri}]")
    return "\n".join(parts).strip()


def mcp_server_of(server: dict[str, Any]) -> Optional[McpServer]:
    """An MCP server the editor passed (ACP shape, as JSON) as a profile's extra server."""
    name = str(server.get("name") or "")
    if not name or name == "cao":  # the sidecar's own server cannot be redefined
        return None
    if server.get("url"):
        return McpServer(
            name=name,
            transport="sse" if server.get("type") == "sse" else "http",
            url=server["url"],
            headers=tuple((h["name"], h["value"]) for h in server.get("headers") or []),
        )
    if server.get("command"):
        return McpServer(
            name=name,
            transport="stdio",
            command=server["command"],
            args=tuple(server.get("args") or ()),
            env=tuple((e["name"], e["value"]) for e in server.get("env") or []),
        )
    return None


class CaoAcpAgent:
    def __init__(self, core_ready: "asyncio.Future[Any]", on_shutdown: Optional[Callable[[bool], None]] = None) -> None:
        self._core_ready = core_ready
        self._on_shutdown = on_shutdown  # `_cao/shutdown` (ends the orchestrator for everyone)
        self._conn: Any = None
        self.updates = Updates(self._send_update)
        self.store = SessionStore(None)
        self.team: Optional[TeamReporter] = None
        self.live: Any = None  # profiles.live.LiveConfig, once started
        self.agent_face: Any = None  # agent_face.http.AgentFace, once started

    def on_connect(self, conn: Any) -> None:
        self._conn = conn

    def attach(self, core: Any) -> None:
        """The core is up: keep sessions in its state dir and listen to its agents."""
        self.store = SessionStore(core.state_dir / "acp-sessions.json")
        self.team = TeamReporter(core, self.updates, self._session_of_tmux, self._conn.request_permission)

    def _session_of_tmux(self, tmux_session: str) -> Optional[AcpSession]:
        if not tmux_session.startswith("acp-"):
            return None
        return self.store.get(tmux_session[4:])

    async def _send_update(self, session_id: str, update: Any) -> None:
        await self._conn.session_update(session_id=session_id, update=update)

    async def _core(self) -> Any:
        try:
            return await asyncio.shield(self._core_ready)
        except CaoError as exc:
            raise rpc_error(exc) from None
        except Exception as exc:  # noqa: BLE001
            raise RequestError.internal_error({"details": f"the orchestration core failed to start: {exc}"}) from None

    def _session(self, session_id: str) -> AcpSession:
        session = self.store.get(session_id)
        if session is None:
            raise RequestError.invalid_params({"sessionId": session_id, "details": "unknown session"})
        return session

    # ---- ACP methods ---------------------------------------------------------------------------

    async def initialize(
        self, protocol_version: int, client_capabilities: Any = None, client_info: Any = None, **kwargs: Any
    ) -> InitializeResponse:
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION,
            agent_capabilities=AgentCapabilities(
                load_session=True,
                prompt_capabilities=PromptCapabilities(image=False, audio=False, embedded_context=True),
                mcp_capabilities=McpCapabilities(http=True, sse=True),
            ),
            agent_info=Implementation(name="cao-sidecar", title="CAO sidecar (agent team)", version=__version__),
            auth_methods=[],
        )

    async def authenticate(self, method_id: str, **kwargs: Any) -> None:
        return None

    async def new_session(self, cwd: str, mcp_servers: Optional[list[Any]] = None, **kwargs: Any) -> NewSessionResponse:
        await self._core()
        if not os.path.isabs(cwd) or not await asyncio.to_thread(os.path.isdir, cwd):
            raise RequestError.invalid_params({"cwd": cwd, "details": "cwd must be an existing absolute directory"})
        session = AcpSession(
            session_id=new_session_id(),
            cwd=cwd,
            profile=_meta_profile(kwargs),
            mcp_servers=[s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in mcp_servers or []],
        )
        self.store.add(session)
        self.updates.put(session.session_id, update_available_commands(COMMANDS))
        return NewSessionResponse(session_id=session.session_id)

    async def load_session(
        self, cwd: str, session_id: str, mcp_servers: Optional[list[Any]] = None, **kwargs: Any
    ) -> LoadSessionResponse:
        core = await self._core()
        session = self.store.load(session_id)
        if session is None:
            raise RequestError.invalid_params({"sessionId": session_id, "details": "no such session was kept"})
        if os.path.isabs(cwd) and await asyncio.to_thread(os.path.isdir, cwd):
            session.cwd = cwd
        if mcp_servers:
            session.mcp_servers = [s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in mcp_servers]
        session.profile = _meta_profile(kwargs) or session.profile
        supervisor = core.agents.get(session.supervisor_id or "")
        if supervisor is None or not supervisor.alive:
            session.supervisor_id = None
        self.store.save(session)
        for entry in session.history:
            make = update_user_message_text if entry.get("role") == "user" else update_agent_message_text
            self.updates.put(session_id, make(entry.get("text", "")))
        self.updates.put(session_id, update_available_commands(COMMANDS))
        await self.updates.drain()
        return LoadSessionResponse()

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> PromptResponse:
        session = self._session(session_id)
        if session.turn is not None and not session.turn.done():
            raise RequestError.invalid_request({"details": "a prompt is already running in this session"})
        text = prompt_text(prompt)
        session.cancelled = False
        if text.startswith("/"):
            reply = await self._command(session, text)
            if reply is not None:
                return await self._end(session, text, reply, "end_turn")
        if not text:
            return await self._end(session, text, "(empty prompt)", "end_turn")
        session.turn = asyncio.get_running_loop().create_task(self._run_turn(session, text))
        try:
            answer = await asyncio.shield(session.turn)
        except asyncio.CancelledError:
            session.turn.cancel()
            raise
        except CaoError as exc:
            if session.cancelled:
                return await self._end(session, text, None, "cancelled")
            return await self._end(session, text, f"[cao-sidecar] {exc.message}", "end_turn")
        if session.cancelled or answer is None:
            return await self._end(session, text, None, "cancelled")
        return await self._end(session, text, answer, "end_turn")

    async def _run_turn(self, session: AcpSession, text: str) -> Optional[str]:
        core = await self._core()
        try:
            supervisor = await self._supervisor(core, session)
            _agent, answer = await core.handoff(text, terminal_id=supervisor.terminal_id, timeout=TURN_TIMEOUT)
        except asyncio.CancelledError:
            return None  # handoff interrupted the supervisor's turn
        return answer

    async def _end(self, session: AcpSession, text: str, reply: Optional[str], stop: StopReason) -> PromptResponse:
        if reply:
            for start in range(0, len(reply), ANSWER_CHUNK):
                self.updates.put(session.session_id, update_agent_message_text(reply[start : start + ANSWER_CHUNK]))
        session.history.append({"role": "user", "text": text})
        if reply:
            session.history.append({"role": "agent", "text": reply})
        self.store.save(session)
        await self.updates.drain()
        session.turn = None
        return PromptResponse(stop_reason=stop)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        session = self.store.get(session_id)
        if session is None or session.turn is None or session.turn.done():
            return
        session.cancelled = True
        session.turn.cancel()

    async def _supervisor(self, core: Any, session: AcpSession) -> Any:
        profile = session.profile or default_profile()
        current = core.agents.get(session.supervisor_id or "")
        if current is not None and current.alive and current.profile.name == profile:
            return current
        if current is not None and current.alive:
            await core.teardown(current)  # the profile was changed with /profile
        session.creating_supervisor = True
        try:
            agent = core.create(profile, working_directory=session.cwd, session=session.tmux_session)
        except CaoError:
            raise
        finally:
            session.creating_supervisor = False
        session.supervisor_id = agent.terminal_id
        extra = [s for s in (mcp_server_of(d) for d in session.mcp_servers) if s is not None]
        if extra:  # the editor's MCP servers, besides the profile's own
            agent.profile = attrs.evolve(agent.profile, mcp_servers=[*agent.profile.mcp_servers, *extra])
        self.store.save(session)
        await core.launch(agent)
        return agent

    async def _command(self, session: AcpSession, text: str) -> Optional[str]:
        """Slash commands; None: not one of ours (the text goes to the supervisor as is)."""
        name, _, arg = text[1:].partition(" ")
        arg = arg.strip()
        core = await self._core()
        if name == "profile":
            if not arg:
                names = ", ".join(sorted(core.catalog.names()))
                return f"supervisor profile: {session.profile or default_profile()} (available: {names})"
            try:
                core.catalog.get(arg)
            except CaoError as exc:
                return f"[cao-sidecar] {exc.message}"
            session.profile = arg
            self.store.save(session)
            return f"supervisor profile set to {arg}"
        if name == "agents":
            agents = core.list_agents(session.tmux_session)
            if not agents:
                return "no agents yet"
            return "\n".join(
                f"- {a.profile.name} {a.terminal_id}: {a.status.value}"
                + (" (supervisor)" if a.terminal_id == session.supervisor_id else "")
                for a in agents
            )
        return None

    # ---- _cao/... extension methods ------------------------------------------------------------

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """`_cao/<name>`: the editor face's `cao/<name>`, same params (plus an optional `sessionId`
        that puts the agents in that conversation's team), same handler, same result."""
        handler = handlers.HANDLERS.get(method)
        if handler is None:
            raise RequestError.method_not_found(f"_{method}")
        params_type, _result_type = wire.METHODS[method]
        try:
            typed = wire.structure_params(self._with_tmux_session(params), params_type)
        except wire.ParamsError as exc:
            raise RequestError.invalid_params({"details": f"_{method}: {exc}"}) from None
        try:
            return wire.unstructure(await handler(self, typed))
        except CaoError as exc:
            raise rpc_error(exc) from None

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    def _with_tmux_session(self, params: Any) -> Any:
        """An ACP `sessionId` stands for its conversation's tmux session (`session`)."""
        if not isinstance(params, dict) or params.get("sessionId") is None:
            return params
        return {**params, "session": self._session(str(params["sessionId"])).tmux_session}

    # ---- handlers.Door (what the shared cao/* handlers need of this face) ---------------------

    async def core(self) -> Any:
        return await self._core()

    def started_core(self) -> Any:
        return handlers.started(self._core_ready)

    def live_config(self) -> Any:
        return self.live

    def credential_count(self) -> int:
        return self.agent_face.credentials.count if self.agent_face is not None else 0

    def handoff_progress(self, token: Any) -> handlers.HandoffProgress:
        return handlers.NoProgress()  # ACP shows workers as tool calls (team.py) instead

    def shutdown_hook(self) -> Optional[Callable[[bool], None]]:
        return self._on_shutdown

    def close(self) -> None:
        if self.team is not None:
            self.team.close()
        self.updates.close()


def _meta_profile(meta: dict[str, Any]) -> Optional[str]:
    cao = meta.get("cao")
    if isinstance(cao, dict) and isinstance(cao.get("profile"), str) and cao["profile"]:
        return cao["profile"]
    return None
