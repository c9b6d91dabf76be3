"""Serves the MCP app with uvicorn inside the sidecar's event loop.

Two listeners, one app: 127.0.0.1 on an ephemeral port (Claude Code, Codex and the mock agent
use Streamable HTTP) and a 0600 Unix socket (for `cao-sidecar mcp-bridge`). Every request must
carry the bearer token of an agent we launched; anything else gets 401 before the SDK sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Callable, Optional

from cao_sidecar import paths
from cao_sidecar.agent_face.credentials import CredentialStore
from cao_sidecar.core.agent import Agent
from cao_sidecar.core.orchestrator import Orchestrator

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
LISTEN_BACKLOG = 1024  # agents that connect before the server accepts wait here


class AuthMiddleware:
    """ASGI: refuse requests without a valid agent token (401) and browser requests (403).

    Every route (MCP and hooks) gets the same checks: a Host other than ours is a DNS-rebinding
    page reaching 127.0.0.1 under a foreign name, an Origin is a browser.
    """

    def __init__(
        self,
        app: Any,
        credentials: CredentialStore,
        allowed_hosts: tuple[str, ...] = (),
        on_mcp_request: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._app = app
        self._credentials = credentials
        self._allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        # `on_mcp_request(terminal_id)` once an agent's CLI has our tools: its `tools/list` answered
        # (connecting alone is not enough: a first turn sent before the list has no tools), or a
        # tool called (a CLI that knew them already).
        self._on_mcp_request = on_mcp_request

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self._allowed_hosts and headers.get("host", "").lower() not in self._allowed_hosts:
            await _reply(send, 421, "this Host is not the sidecar's")
            return
        origin = headers.get("origin")
        if origin is not None and origin != "null":
            await _reply(send, 403, "browser origins are not allowed")
            return
        terminal_id = self._credentials.agent_for(headers.get("authorization"))
        if terminal_id is None:
            await _reply(send, 401, "missing or invalid agent credential", {"www-authenticate": "Bearer"})
            return
        if self._on_mcp_request is not None and scope.get("path", "").rstrip("/") == MCP_PATH:
            await self._app(*_watch_tools(scope, receive, send, lambda: self._on_mcp_request(terminal_id)))  # type: ignore[misc]
            return
        await self._app(scope, receive, send)


TOOLS_SEEN_BODY_LIMIT = 64 * 1024  # a tools/list request is small; bigger bodies are not read


def _watch_tools(scope: Any, receive: Any, send: Any, has_tools: Callable[[], None]) -> tuple[Any, Any, Any]:
    """`scope, receive, send` that call `has_tools()` when the request calls a tool (at once), or
    when its answer to a `tools/list` has been sent whole."""
    body = bytearray()
    lists_tools = False

    async def peek() -> Any:
        nonlocal lists_tools
        message = await receive()
        if message.get("type") == "http.request" and len(body) < TOOLS_SEEN_BODY_LIMIT:
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                methods = _methods(bytes(body))
                if "tools/call" in methods:
                    has_tools()
                lists_tools = "tools/list" in methods
        return message

    async def watch(message: Any) -> None:
        await send(message)
        if lists_tools and message.get("type") == "http.response.body" and not message.get("more_body"):
            has_tools()

    return scope, peek, watch


def _methods(body: bytes) -> set[str]:
    """The JSON-RPC methods in a request body (one message or a batch); none if it is not JSON."""
    if b"tools/" not in body:
        return set()
    try:
        parsed = json.loads(body)
    except ValueError:
        return set()
    messages = parsed if isinstance(parsed, list) else [parsed]
    return {m["method"] for m in messages if isinstance(m, dict) and isinstance(m.get("method"), str)}


async def _reply(send: Any, status: int, message: str, extra: Optional[dict[str, str]] = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AgentFace:
    def __init__(self, core: Orchestrator, unix_socket_path: Path, port_file: Optional[Path] = None) -> None:
        self._core = core
        self.credentials = CredentialStore()
        self.unix_socket_path = unix_socket_path
        self._port_file = port_file
        self.url: Optional[str] = None
        self._server: Any = None
        self._task: Optional[asyncio.Task[None]] = None
        self._sockets: list[socket.socket] = []
        self._allowed_hosts: tuple[str, ...] = ()

    def caller_of(self, ctx: Any) -> Agent:
        from mcp.server.mcpserver.exceptions import ToolError

        headers = ctx.headers or {}
        terminal_id = self.credentials.agent_for(headers.get("authorization"))
        agent = self._core.agents.get(terminal_id or "")
        if agent is None:
            raise ToolError("this credential belongs to no running agent")
        return agent

    def agent_env(self, agent: Agent) -> dict[str, str]:
        """What a launched agent needs to reach us: URL, its own token, the bridge socket."""
        assert self.url is not None
        token = self.credentials.issue(agent.terminal_id, agent.agent_dir)
        return {"CAO_MCP_URL": self.url, "CAO_MCP_TOKEN": token, "CAO_MCP_SOCKET": str(self.unix_socket_path)}

    def bind(self) -> None:
        """Listen on both sockets and let agents launch: their URL and credentials are known
        now, and a CLI that connects before the server runs waits in the listen backlog. Needs
        no MCP SDK (about a second to import), so the first spawn does not wait for it."""
        if self.url is not None:
            return
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets of a listener
        # created with it, and without it keep-alive clients wait ~40 ms per call (Nagle + delayed ACK).
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", self._previous_port()))
        except OSError:  # taken by something else meanwhile
            tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        if self._port_file is not None:
            try:  # only lets a restarted sidecar reuse the port: a full disk must not stop the server
                paths.write_private_text(self._port_file, str(port))
            except OSError as exc:
                log.warning("could not record the MCP port in %s: %s", self._port_file, exc)
        with contextlib.suppress(FileNotFoundError):
            self.unix_socket_path.unlink()
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            unix.bind(str(self.unix_socket_path))
        finally:
            os.umask(old_umask)
        os.chmod(self.unix_socket_path, 0o600)
        for sock in (tcp, unix):
            sock.listen(LISTEN_BACKLOG)
        self._sockets = [tcp, unix]
        self._allowed_hosts = (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1", "localhost")
        self.url = f"http://127.0.0.1:{port}{MCP_PATH}"
        self._core.add_env_hook(self.agent_env)
        self.adopt_credentials()
        self._core.add_status_listener(self._on_status)

    async def start(self) -> None:
        """Bind (if not yet), then serve MCP on the bound sockets once the SDK is imported."""
        self.bind()
        # Imported here: the SDK costs about a second, and the editor's initialize must not wait.
        import uvicorn
        from mcp.server.transport_security import TransportSecuritySettings

        from cao_sidecar.agent_face import guard
        from cao_sidecar.agent_face.tools import build_mcp_server

        mcp = build_mcp_server(self._core, self.caller_of)
        allowed_hosts = self._allowed_hosts
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=list(allowed_hosts), allowed_origins=[]
        )
        from cao_sidecar.agent_face.progress_stream import ProgressRouter

        # Two apps of one server: plain JSON answers, and SSE for tool calls that asked for progress.
        apps = [
            mcp.streamable_http_app(
                streamable_http_path=MCP_PATH, stateless_http=True, json_response=json_mode, transport_security=security
            )
            for json_mode in (True, False)
        ]
        app = self.progress = ProgressRouter(*apps)
        guard.raise_open_files_limit()
        config = uvicorn.Config(
            AuthMiddleware(self._hooks(app), self.credentials, allowed_hosts, self._core.mcp_request_seen),
            **guard.protocol_options(),
            log_config=None,
            access_log=False,
            lifespan="on",
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        started = asyncio.Event()

        class _Server(uvicorn.Server):
            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets=sockets)
                started.set()  # a wait on an event, not a poll of `server.started`

        server = _Server(config)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment] # the sidecar owns signals
        self._server = server
        self._task = asyncio.get_running_loop().create_task(server.serve(sockets=self._sockets))
        ready = asyncio.ensure_future(started.wait())
        await asyncio.wait([ready, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not started.is_set():
            ready.cancel()
            self._task.result()
            raise RuntimeError("the MCP server stopped while starting")
        log.info("MCP server on %s and %s", self.url, self.unix_socket_path)

    def _previous_port(self) -> int:
        """The port the last sidecar on this tmux socket used (0: none): agents adopted after a
        restart call the URL they were started with."""
        try:
            port = int(self._port_file.read_text()) if self._port_file is not None else 0
        except (OSError, ValueError):
            return 0
        return port if 1024 <= port <= 65535 else 0

    def adopt_credentials(self) -> None:
        """Take back the credentials of agents adopted from a previous sidecar."""
        for agent in self._core.agents.values():
            if agent.alive:
                self.credentials.adopt(agent.terminal_id, agent.agent_dir)

    def _hooks(self, app: Any) -> Any:
        """`POST /hooks/<provider>`: CLI hooks and notify programs (agent_face/hooks.py)."""
        from cao_sidecar.agent_face.hooks import HookEndpoint

        self.hooks = HookEndpoint(app, self._core, self.credentials)
        return self.hooks

    def _on_status(self, agent: Agent, _previous: object, status: object) -> None:
        if not agent.alive:
            self.credentials.revoke(agent.terminal_id)

    async def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 3)
        for sock in self._sockets:  # bound but perhaps never served
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.unix_socket_path.unlink()
