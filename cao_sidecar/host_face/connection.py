"""One MCP host connection: its lead identity, the core it reaches, what it is told unasked.

The host's identity is a lead id made from its name (the MCP clientInfo name): the
same host reconnecting finds the messages that arrived for it meanwhile. While connected, each
arriving message, and each question an agent of its session waits on, is also announced as an MCP
log notification (`notifications/message`), and long calls send progress notifications when the
host gave a progress token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from typing import Any, AsyncIterator, Callable, Optional

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPDeprecationWarning

from cao_sidecar.core.agent import Agent
from cao_sidecar.core.leads import HostLead, lead_id_for
from cao_sidecar.core.orchestrator import Orchestrator
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.storage.messages import StoredMessage
from cao_sidecar.team_tools import question_of

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 3.0  # a long call tells the host it is alive this often (tool-call timeouts)
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


class HostConnection:
    def __init__(self, core: Orchestrator, status_events: Any = None) -> None:
        """`status_events`: this connection's scope of the core's status listeners (the shared
        runtime's, dropped at close), to announce agents' questions; None: not announced."""
        self._core = core
        self._status_events = status_events
        if status_events is not None:
            status_events.add_status_listener(self._status_changed)
        self._lead: Optional[HostLead] = None
        self._mcp_session: Any = None  # the SDK's session: notifications outside a request
        self.log_level = "info"  # the host may raise it (logging/setLevel)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def core(self) -> Orchestrator:
        return self._core

    def lead(self, ctx: Context) -> tuple[Orchestrator, HostLead]:
        """The core and this connection's lead identity (made on first use)."""
        if self._lead is None:
            self._bind(ctx.session)
        assert self._lead is not None
        return self._core, self._lead

    def initialized(self, mcp_session: Any) -> None:
        """The host finished its handshake: take the identity now, so that messages are announced
        before its first tool call."""
        self._mcp_session = mcp_session
        if self._lead is None:
            self._bind(mcp_session)

    def _bind(self, mcp_session: Any) -> None:
        if self._mcp_session is None:
            self._mcp_session = mcp_session
        params = getattr(mcp_session, "client_params", None)
        name = getattr(getattr(params, "client_info", None), "name", None) or "mcp-host"
        wanted = HostLead(lead_id_for(name), self._core.default_session, self._core.default_cwd, name)
        self._lead = self._core.mailboxes.connect(wanted, self._arrived)
        log.info("MCP host %r connected as lead %s (session %s)", name, self._lead.terminal_id, self._lead.session)

    def close(self) -> None:
        if self._lead is not None:
            self._core.mailboxes.disconnect(self._lead.terminal_id)
        if self._status_events is not None:
            self._status_events.close()
        for task in list(self._tasks):
            task.cancel()

    def _arrived(self, message: StoredMessage) -> None:
        self._announce(
            {
                "event": "message",
                "messageId": message.message_id,
                "sender": message.sender,
                "hint": "call read_messages to read it",
            }
        )

    def _status_changed(self, agent: Agent, previous: Optional[AgentStatus], status: AgentStatus) -> None:
        question = question_of(agent)
        if self._lead is None or agent.session != self._lead.session or question is None:
            return
        self._announce(
            {
                "event": "question",
                "terminalId": agent.terminal_id,
                "profile": agent.profile.name,
                **question.model_dump(by_alias=True),
                "hint": "call answer with its terminal id and one of the choices",
            }  # fmt: skip
        )

    def _announce(self, data: dict[str, Any]) -> None:
        if self._mcp_session is not None and LOG_LEVELS.index(self.log_level) <= LOG_LEVELS.index("info"):
            self._spawn(self._send_log(data))

    async def _send_log(self, data: dict[str, Any]) -> None:
        try:
            with warnings.catch_warnings():  # the logging capability is deprecated in newer protocol versions
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await self._mcp_session.send_log_message(level="info", data=data, logger="cao")
        except Exception:  # a notification is a courtesy: the message waits anyway
            log.debug("could not announce %s", data.get("event"), exc_info=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@contextlib.asynccontextmanager
async def progress_while(ctx: Context, describe: Callable[[], str], total: Optional[float] = None) -> AsyncIterator[None]:
    """Progress notifications every PROGRESS_SECONDS while the body runs (none when the host gave
    no progress token): hosts with tool-call timeouts keep a long call alive."""
    started = time.monotonic()

    async def tick() -> None:
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            try:
                await ctx.report_progress(round(time.monotonic() - started, 1), total, describe())
            except Exception:  # noqa: BLE001 - the host went away: the call ends with it
                return

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
