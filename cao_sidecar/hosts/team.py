"""The team's hosts, as the orchestrator sees them: one link per host, ids qualified by host.

A request that names a host (`host: box1`) or a qualified terminal id (`box1:ab12cd34`) goes to
that host's node with the id unqualified; what comes back (results, the node's `cao/agentStatus`
and `cao/workerCompleted`) has its terminal ids qualified again. The last status of each remote
agent is kept, so `cao/listAgents` shows them while a link is down.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Callable, Optional

from cao_sidecar.core.errors import InvalidRequest
from cao_sidecar.hosts.config import HostConfig, HostsError, load_hosts, split_terminal_id
from cao_sidecar.hosts.link import HostLink

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 180.0  # a first contact may install the node (pip) on the host
QUALIFIED_KEYS = ("terminalId",)

Listener = Callable[[str, Any], None]


def qualify(value: Any, host: str) -> Any:
    """`value` with every `terminalId` made `host:id`."""
    if isinstance(value, list):
        return [qualify(v, host) for v in value]
    if isinstance(value, dict):
        return {
            k: (f"{host}:{v}" if k in QUALIFIED_KEYS and isinstance(v, str) and ":" not in v else qualify(v, host))
            for k, v in value.items()
        }
    return value


class RemoteHosts:
    def __init__(self, hosts: Optional[dict[str, HostConfig]] = None) -> None:
        self._configs = hosts
        self.links: dict[str, HostLink] = {}
        self.agents: dict[str, dict[str, Any]] = {}  # qualified id -> its last AgentInfo-like state
        self._listeners: set[Listener] = set()

    def configs(self) -> dict[str, HostConfig]:
        if self._configs is None:
            try:
                return load_hosts()
            except HostsError as exc:
                raise InvalidRequest(str(exc), field="host") from None
        return self._configs

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """`listener(method, params)` for each notification of any node (ids qualified)."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def link(self, name: str) -> HostLink:
        link = self.links.get(name)
        if link is None:
            config = self.configs().get(name)
            if config is None:
                known = ", ".join(sorted(self.configs())) or "none (add them to hosts.yaml)"
                raise InvalidRequest(f"unknown host '{name}'; hosts: {known}", field="host")
            link = HostLink(config, self._on_notification, self._on_connected)
            self.links[name] = link
            link.start()
        return link

    async def call(self, host: str, method: str, params: dict[str, Any]) -> Any:
        link = self.link(host)
        await link.wait_connected(CONNECT_TIMEOUT)
        return qualify(await link.call(method, params), host)

    async def call_terminal(self, terminal_id: str, method: str, params: dict[str, Any]) -> Any:
        """`method` for a qualified terminal id, on its host."""
        host, local_id = split_terminal_id(terminal_id)
        assert host is not None
        return await self.call(host, method, {**params, "terminalId": local_id})

    async def list_agents(self, session: Optional[str]) -> list[dict[str, Any]]:
        """Every remote agent: fresh from connected hosts, as last seen from the others."""

        async def one(name: str, link: HostLink) -> None:
            if link.state != "connected":
                return
            try:
                found = await asyncio.wait_for(link.call("cao/listAgents", {}), 10)
            except Exception as exc:  # noqa: BLE001 - a host that fails to answer shows its last state
                log.info("listAgents on %s: %s", name, exc)
                return
            for info in qualify(found.get("agents", []), name):
                self.agents[info["terminalId"]] = info

        await asyncio.gather(*(one(n, link) for n, link in self.links.items()))
        return [a for a in self.agents.values() if session is None or a.get("session") == session]

    def _on_notification(self, host: str, method: str, params: Any) -> None:
        params = qualify(params, host)
        if method == "cao/agentStatus" and isinstance(params, dict):
            known = self.agents.get(params["terminalId"])
            if known is not None:  # a full AgentInfo from listAgents; the notification updates it
                known.update({k: v for k, v in params.items() if k in ("status", "prompt")})
        for listener in list(self._listeners):
            listener(method, params)

    def _on_connected(self, host: str) -> None:
        """After a (re)connect: reconcile the agents' state (the node kept them)."""
        asyncio.get_running_loop().create_task(self.list_agents(None))

    def state(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "state": link.state, "reason": link.reason, "sshPid": link.ssh_pid, "connects": link.connects}
            for n, link in self.links.items()
        ]

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links.values()))


_BY_CORE: "weakref.WeakKeyDictionary[Any, RemoteHosts]" = weakref.WeakKeyDictionary()


def hosts_of(core: Any) -> RemoteHosts:
    """The hosts of one orchestration core (made on first use). Keyed by its supervisor: every
    connection's view of the core (daemon.fanout.CoreScope) shares it."""
    key = getattr(core, "supervisor", core)
    hosts = _BY_CORE.get(key)
    if hosts is None:
        hosts = _BY_CORE[key] = RemoteHosts()
    return hosts


def remote_host(host: Optional[str]) -> Optional[str]:
    """The host a request names, None for this machine."""
    return None if host in (None, "", "local") else host
