"""The team's hosts, as the orchestrator sees them: one link per host, ids qualified by host.

A request that names a host (`host: box1`) or a qualified terminal id (`box1:ab12cd34`) goes to
that host's node with the id unqualified; what comes back (results, the node's `cao/agentStatus`
and `cao/workerCompleted`) has its terminal ids qualified again. The last status of each remote
agent is kept, so `cao/listAgents` shows them while a link is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import attrs

from cao_sidecar import paths
from cao_sidecar.core.errors import CaoError, InvalidRequest
from cao_sidecar.hosts.config import HostConfig, HostsError, attach_over_ssh, load_hosts, qualify, split_terminal_id
from cao_sidecar.hosts.inboxes import RemoteInboxes, ReportRoutes
from cao_sidecar.hosts.install import Probe
from cao_sidecar.hosts.link import HostLink
from cao_sidecar.hosts.node import CAPACITY, KeyedCalls
from cao_sidecar.hosts.placement import Needs, capacity_probe, here_lacks, host_lacks, needs_of, no_fit_error
from cao_sidecar.hosts.profiles import carried_for

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 180.0  # a first contact may install the node (pip) on the host
PLACE_CONNECT_TIMEOUT = 20.0  # host: auto does not wait for a host's first install
PLACE_RETRY_FAILED = 60.0  # host: auto tries a host that failed again after this long
CAPACITY_TIMEOUT = 10.0  # host: auto leaves out a host whose node does not say what it has by then
MAIN = "main"
CALLER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # an agent's id on its host (8 hex digits there)
AUTO = "auto"
ASSIGN_ANSWER_WAIT = 30.0  # a report waits this long at most for the assigns on its host to be answered

Listener = Callable[[str, Any], None]


class RemoteHosts:
    def __init__(self, core: Any, hosts: Optional[dict[str, HostConfig]] = None) -> None:
        self.core = core
        self._configs = hosts
        self._up_calls = KeyedCalls()
        self._report_to: dict[str, Any] = {}  # qualified worker id -> the lead its report goes to
        self._assigns_out: dict[str, set[asyncio.Future[None]]] = {}  # host -> its assigns not answered yet
        self._remember: Optional[Path] = None
        self._inboxes: Optional[RemoteInboxes] = None
        self._routes: Optional[ReportRoutes] = None
        self._tasks: set[asyncio.Task[Any]] = set()
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

    def remember_in(self, path: Path) -> None:
        """Keep the names of the hosts this team uses in `path`, and link to them again now (after
        an orchestrator restart, their agents show up without waiting for a request)."""
        self._remember = path
        self._routes = ReportRoutes(path.with_name(f"{path.stem}-routes.json"), self._background)

        def read() -> list[str]:
            try:
                names = json.loads(path.read_text())
            except (OSError, ValueError):
                return []
            return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []

        async def reconnect() -> None:
            assert self._routes is not None
            for worker, caller in (await asyncio.to_thread(self._routes.read)).items():  # before any report comes
                self._report_to.setdefault(
                    worker, RemoteCaller(caller["terminalId"], caller["session"], str(self.core.default_cwd))
                )
            for name in await asyncio.to_thread(read):
                try:
                    if name in self.configs():
                        self.link(name)
                except InvalidRequest as exc:  # hosts.yaml broken now: said on the next request
                    log.warning("%s", exc.message)
                    return

        self._background(reconnect())

    def _background(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _save_used(self) -> None:
        if self._remember is None:
            return
        path, names = self._remember, sorted(self.links)
        self._background(asyncio.to_thread(paths.write_private_text, path, json.dumps(names)))

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """`listener(method, params)` for each notification of any node (ids qualified)."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def link(self, name: str) -> HostLink:
        link = self.links.get(name)
        if link is None or link.state == "failed":  # a failed host is tried again on its next request
            config = self.configs().get(name)
            if config is None:
                known = ", ".join(sorted(self.configs())) or "none (add them to hosts.yaml)"
                raise InvalidRequest(f"unknown host '{name}'; hosts: {known}", field="host")
            link = HostLink(config, self._on_notification, self._on_connected, self._serve_up)
            seen = name in self.links
            self.links[name] = link
            link.start()
            if not seen:
                self._save_used()
        return link

    async def call(self, host: str, method: str, params: dict[str, Any], key: Optional[str] = None) -> Any:
        link = self.link(host)
        if link.connects == 0:  # a first contact: fail fast if the host cannot be reached
            await link.wait_connected(CONNECT_TIMEOUT)
        carry = await carried_for(self.core, method, params)  # the host need not have them
        return qualify(await link.call(method, params, carry, key), host)

    def forward_messages(self, supervisor: Any) -> None:
        """Messages this core stores for agents of hosts (an assign's report for the host's agent
        that asked) go to them (hosts.inboxes), now and after each reconnect."""
        self._inboxes = RemoteInboxes(
            supervisor.stores.messages, lambda host, method, params, key: self.call(host, method, params, key), self._background
        )
        supervisor.route_elsewhere = self._inboxes.accept

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
            fresh = qualify(found.get("agents", []), name)
            for gone in [t for t in self.agents if t.startswith(f"{name}:")]:
                self.agents.pop(gone)  # what the node no longer lists is gone
            for info in fresh:
                if isinstance(info.get("attachCommand"), list):
                    info["attachCommand"] = attach_over_ssh(link.host, info["attachCommand"])
                self.agents[info["terminalId"]] = info

        await asyncio.gather(*(one(n, link) for n, link in self.links.items()))
        return [a for a in self.agents.values() if session is None or a.get("session") == session]

    async def list_worktrees(self, session: Optional[str]) -> list[dict[str, Any]]:
        """The open worktrees of every connected host's workers (ids qualified; paths are the
        host's). A host whose link is down is left out: its worktrees are on its disk."""

        async def one(name: str, link: HostLink) -> list[dict[str, Any]]:
            if link.state != "connected":
                return []
            try:
                found = await asyncio.wait_for(link.call("cao/listWorktrees", {"session": session} if session else {}), 10)
            except Exception as exc:  # noqa: BLE001 - a host that fails to answer is left out
                log.info("listWorktrees on %s: %s", name, exc)
                return []
            return list(qualify(found.get("worktrees", []), name))

        found = await asyncio.gather(*(one(n, link) for n, link in self.links.items()))
        return [w for worktrees in found for w in worktrees]

    @contextlib.contextmanager
    def assigning(self, host: str) -> Iterator[None]:
        """Around an assign on `host` and the `report_to` of its answer: a fast worker's report
        (a request of its own on the link) waits for it, not to miss its lead."""
        out: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._assigns_out.setdefault(host, set()).add(out)
        try:
            yield
        finally:
            self._assigns_out[host].discard(out)
            out.set_result(None)

    def report_to(self, worker: str, lead: Any) -> None:
        self._report_to[worker] = lead
        if self._routes is not None:  # kept across a restart: the report may come after one
            self._routes.add(worker, lead.terminal_id, lead.session)

    async def place(self, local_live: int, needs: Needs) -> str:
        """`host: auto`: of the machines that can take one more agent (hosts.placement: the
        provider's command, memory), the one with the fewest live agents per CPU (main: this one;
        hosts: the node's agents, and the CPUs, commands and memory a fresh probe finds). Hosts not
        linked yet are linked first (briefly); one that cannot be reached is left out."""
        lacking: dict[str, list[str]] = {}
        candidates = []
        here = await here_lacks(needs)
        if here:
            lacking[MAIN] = here
        else:
            candidates.append((local_live / (os.cpu_count() or 1), MAIN))
        unreachable: dict[str, str] = {}

        async def linked(name: str) -> Optional[HostLink]:
            known = self.links.get(name)
            if known is not None and known.state == "failed" and time.monotonic() - known.failed_at < PLACE_RETRY_FAILED:
                unreachable[name] = known.reason  # failed just now: not tried again for each placement
                return None
            try:
                link = self.link(name)
                if link.connects == 0:
                    await link.wait_connected(PLACE_CONNECT_TIMEOUT)
                return link
            except CaoError as exc:
                unreachable[name] = exc.message
                return None

        names = list(self.configs())
        found_links = await asyncio.gather(*(linked(name) for name in names))
        links = [(name, link) for name, link in zip(names, found_links, strict=True) if link is not None]
        for name in names:
            if name in unreachable:
                log.info("host: auto leaves out %s: %s", name, unreachable[name])
                lacking[name] = [f"a connection ({unreachable[name]})"]
        probes, _ = await asyncio.gather(
            asyncio.gather(*(self._capacity(link, needs) for _, link in links)), self.list_agents(None)
        )
        for (name, link), found in zip(links, probes, strict=True):
            missing = host_lacks(needs, found)
            if missing:
                lacking[name] = missing
                continue
            live = self._live(self._agents_on(name))
            cpus = found.cpus or (link.probe.cpus if link.probe is not None else 0) or 1
            candidates.append((live / cpus, name))
        if not candidates:
            raise no_fit_error(needs, lacking)
        return min(candidates, key=lambda c: c[0])[1]  # ties: the first, main

    @staticmethod
    async def _capacity(link: HostLink, needs: Needs) -> Probe:
        """What a linked host has now, from its node (unreachable: its link is down)."""
        if link.state != "connected":
            return Probe(reachable=False, error=f"{link.state}: {link.reason}")
        commands = [needs.command] if needs.command else []
        try:
            return capacity_probe(await asyncio.wait_for(link.call(CAPACITY, {"commands": commands}), CAPACITY_TIMEOUT))
        except (CaoError, asyncio.TimeoutError) as exc:
            return Probe(reachable=False, error=getattr(exc, "message", None) or "no answer")

    async def run_here(self, method: str, params: Any, caller: Optional[RemoteCaller] = None) -> Any:
        """A cao/* method on this orchestrator, as the editor face runs it (host routing included).
        `caller`: the agent of a host that asks (its assign's report goes back to it)."""
        from cao_sidecar import handlers, wire

        body = handlers.HANDLERS[method]
        try:
            typed = wire.structure_params(params, wire.METHODS[method][0])
        except wire.ParamsError as exc:
            raise InvalidRequest(f"{method}: {exc}") from None
        return wire.unstructure(await body(LinkDoor(self.core, caller), typed))

    async def _serve_up(self, host: str, params: Any) -> Any:
        """A node's team call (`cao/nodeUp`): run here, once per key, as the editor face would."""
        if not isinstance(params, dict) or not isinstance(params.get("key"), str):
            raise CaoError("cao/nodeUp: needs a 'key'")
        method = params.get("method")
        from cao_sidecar.hosts import node_reports, team_calls  # they build on this module

        if method == node_reports.NODE_REPORT:  # a worker of the host ended
            return await asyncio.shield(
                self._up_calls.run(f"{host}:{params['key']}", lambda: self._take_report(host, params.get("params")))
            )
        if method not in ("cao/handoff", "cao/assign", "cao/spawn", *team_calls.UP_METHODS):
            raise CaoError(f"cao/nodeUp: a node may not call {method!r}")

        caller = self._caller(host, params.get("caller"))
        if method in team_calls.UP_METHODS:  # an agent's own tool call, held to its session
            run = lambda: team_calls.serve(self.core, method, params.get("params"), caller)  # noqa: E731
        else:
            run = lambda: self.run_here(method, params.get("params"), caller)  # noqa: E731
        return await asyncio.shield(self._up_calls.run(f"{host}:{params['key']}", run))

    def _caller(self, host: str, raw: Any) -> Optional[RemoteCaller]:
        """The agent of `host` that made a team call (cao/nodeUp's `caller`), if it says."""
        if raw is None:
            return None
        terminal_id = raw.get("terminalId") if isinstance(raw, dict) else None
        session = raw.get("session") if isinstance(raw, dict) else None
        if not isinstance(terminal_id, str) or not CALLER_ID.fullmatch(terminal_id):
            raise CaoError("cao/nodeUp: 'caller' needs the caller's 'terminalId'")
        if not isinstance(session, str) or not session:
            session = self.core.default_session
        return RemoteCaller(f"{host}:{terminal_id}", session, str(self.core.default_cwd))

    async def _take_report(self, host: str, params: Any) -> Any:
        """A host's worker's report (hosts.node_reports), to the editors and the lead that
        assigned the worker (one of this machine or of a host), once."""
        from cao_sidecar.hosts import node_reports

        worker = f"{host}:{params.get('terminalId')}" if isinstance(params, dict) else ""
        pending = self._assigns_out.get(host)
        if worker not in self._report_to and pending:  # maybe its assign's answer, not handled yet
            await asyncio.wait(list(pending), timeout=ASSIGN_ANSWER_WAIT)
        lead = self._report_to.get(worker)
        taken = await node_reports.take(self.core, host, params, lead.terminal_id if lead is not None else None)
        if self._report_to.pop(worker, None) is not None and self._routes is not None:
            self._routes.drop(worker)
        return taken

    def _on_notification(self, host: str, method: str, params: Any) -> None:
        params = qualify(params, host)
        link = self.links.get(host)
        if isinstance(params, dict) and isinstance(params.get("attachCommand"), list) and link is not None:
            params["attachCommand"] = attach_over_ssh(link.host, params["attachCommand"])
        if method == "cao/agentStatus" and isinstance(params, dict):
            known = self.agents.get(params["terminalId"])
            if known is not None:  # a full AgentInfo from listAgents; the notification updates it
                known.update({k: v for k, v in params.items() if k in ("status", "prompt")})
        for listener in list(self._listeners):
            listener(method, params)

    def _on_connected(self, host: str) -> None:
        """After a (re)connect: reconcile the agents' state (the node kept them); send the
        messages that wait for its agents."""
        self._background(self.list_agents(None))
        if self._inboxes is not None:
            self._inboxes.resend(host)

    def _agents_on(self, name: str) -> list[dict[str, Any]]:
        return [a for t, a in self.agents.items() if t.startswith(f"{name}:")]

    @staticmethod
    def _live(agents: list[dict[str, Any]]) -> int:
        return sum(1 for a in agents if a.get("status") not in ("exited", "error"))

    async def stats(self) -> list[dict[str, Any]]:
        """Each linked host's link state and agents (fresh from connected hosts, as last seen
        from the others), for cao/stats."""
        if self.links:
            await self.list_agents(None)
        out = []
        for name, link in self.links.items():
            mine = self._agents_on(name)
            out.append({
                "name": name, "state": link.state, "agents": len(mine), "liveAgents": self._live(mine),
                "connects": link.connects, "reason": link.reason or None,
            })  # fmt: skip
        return out

    def state(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "state": link.state, "reason": link.reason, "sshPid": link.ssh_pid, "connects": link.connects}
            for n, link in self.links.items()
        ]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(link.close() for link in self.links.values()))


_BY_CORE: "weakref.WeakKeyDictionary[Any, RemoteHosts]" = weakref.WeakKeyDictionary()


@attrs.frozen
class RemoteCaller:
    """An agent of a host that asked this orchestrator for work (core.leads.Caller): reports for
    it are stored for its qualified id and sent to its host (hosts.inboxes)."""

    terminal_id: str  # box1:ab12cd34
    session: str
    working_directory: str  # this machine's default: the caller's own is a path on its host


class LinkDoor:
    """handlers.Door for calls that come up a node's link: no progress, no questions, no shutdown.
    `caller`: the host's agent that made the call, if it said."""

    def __init__(self, core: Any, caller: Optional[RemoteCaller] = None) -> None:
        self._core = core
        self.caller = caller

    async def core(self) -> Any:
        return self._core

    def started_core(self) -> Any:
        return self._core

    def live_config(self) -> Any:
        return None

    def credential_count(self) -> int:
        return 0

    def handoff_progress(self, token: Any) -> Any:
        from cao_sidecar.handlers import NoProgress

        return NoProgress()

    def shutdown_hook(self) -> Any:
        return None


def hosts_of(core: Any) -> RemoteHosts:
    """The hosts of one orchestration core (made on first use). Keyed by its supervisor: every
    connection's view of the core (daemon.fanout.CoreScope) shares it."""
    key = getattr(core, "supervisor", core)
    hosts = _BY_CORE.get(key)
    if hosts is None:
        hosts = _BY_CORE[key] = RemoteHosts(core)
    return hosts


def remote_host(host: Optional[str]) -> Optional[str]:
    """The host a request names, None for this machine (on a node: its own name too)."""
    from cao_sidecar.hosts.node import UPSTREAM

    return None if host in (None, "", "local", MAIN, UPSTREAM.node_name) else host


async def resolve_host(
    core: Any, host: Optional[str], profile: Optional[str] = None, provider: Optional[str] = None
) -> Optional[str]:
    """The host a request goes to (None: this machine); `auto` is placed here, where an agent of
    `profile` (with `provider`, if given) fits."""
    if host == AUTO:
        from cao_sidecar.settings import settings

        live = sum(1 for agent in core.agents.values() if agent.alive)
        host = await hosts_of(core).place(live, needs_of(core, profile, provider, settings().agent_memory_mb))
    return remote_host(host)
