"""`cao-sidecar node`: the program headless on a host, reached by the orchestrator over ssh.

The node is the host's own orchestrator (`cao-sidecar serve`: its tmux server, inbox, loopback
MCP endpoint; detached, so a dropped link loses nothing) with this process relaying the link
(its stdio, LSP-framed JSON-RPC) to it, exactly as `--stdio` does. Its workspace is
`~/.cache/cao-sidecar/node` unless `--workspace` says otherwise.

The link's requests come as `cao/nodeCall {key, method, params}`: a call runs in the node's
process, not in the connection, and a key seen again (the orchestrator re-sends what a dropped
link left unanswered) joins the running or finished call instead of starting another: every
acknowledged request ends once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

NODE_CALL = "cao/nodeCall"
CAPACITY = "cao/nodeCapacity"  # a nodeCall's method: CPUs, available memory, which commands are here
KEEP_RESULTS_SECONDS = 3600.0  # a link down longer than this re-runs nothing: the result is gone
MAX_KEPT = 10000


def is_node_link(initialize_params: Any) -> bool:
    options = initialize_params.get("initializationOptions") if isinstance(initialize_params, dict) else None
    return isinstance(options, dict) and options.get("caoNode") is True


class KeyedCalls:
    """Calls by key, run once each; their outcomes kept for a while for a re-sent key."""

    def __init__(self) -> None:
        self._calls: dict[str, tuple[float, asyncio.Task[Any]]] = {}

    def run(self, key: str, start: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
        self._forget_old()
        known = self._calls.get(key)
        if known is not None:
            return known[1]
        task: asyncio.Task[Any] = asyncio.ensure_future(start())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning
        self._calls[key] = (time.monotonic(), task)
        return task

    def _forget_old(self) -> None:
        now = time.monotonic()
        if len(self._calls) < MAX_KEPT and not any(now - t > KEEP_RESULTS_SECONDS for t, _ in self._calls.values()):
            return
        for key, (started, task) in list(self._calls.items()):
            if task.done() and (now - started > KEEP_RESULTS_SECONDS or len(self._calls) >= MAX_KEPT):
                del self._calls[key]


CALLS = KeyedCalls()  # one per node process: outlives every link connection


def node_name(initialize_params: Any) -> Optional[str]:
    options = initialize_params.get("initializationOptions") if isinstance(initialize_params, dict) else None
    name = options.get("nodeName") if isinstance(options, dict) else None
    return name if isinstance(name, str) else None


def register_node_call(server: Any, initialize_params: Any) -> Callable[[], None]:
    """`cao/nodeCall` on an LSP connection that is a node link (the orchestrator's), which is
    also the way up for this node's team calls to other hosts. Returns what to call when the
    connection ends."""
    from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

    from cao_sidecar.core.errors import CaoError

    async def node_call(ls: Any, raw: Any) -> Any:
        params = raw if isinstance(raw, dict) else getattr(raw, "__dict__", {})
        key, method = params.get("key"), params.get("method")
        if method == CAPACITY:  # host: auto asks what this host has now (hosts.placement)
            from cao_sidecar.hosts.placement import capacity_here

            return await asyncio.to_thread(capacity_here, params.get("params"))
        handler = ls.cao_handlers.get(method) if isinstance(method, str) else None
        if not isinstance(key, str) or not key or handler is None:
            raise JsonRpcInvalidParams(f"{NODE_CALL}: needs a 'key' and a cao/* 'method'", data={"kind": "invalidParams"})
        inner = params.get("params")
        definition, provider = params.get("profile"), params.get("provider")

        async def run() -> Any:
            if definition is not None or provider is not None:  # the orchestrator's, checked here (hosts.profiles)
                from cao_sidecar.hosts.profiles import supply

                try:
                    requested = inner.get("profile") if isinstance(inner, dict) else None
                    await supply(await ls.core(), definition, requested, provider)
                except CaoError as exc:
                    raise JsonRpcException(message=exc.message, code=exc.code, data=exc.data or None) from None
            return await handler(ls, inner)

        return await asyncio.shield(CALLS.run(key, run))

    server.feature(NODE_CALL)(node_call)
    return UPSTREAM.attach(server, node_name(initialize_params))


def _end_older_version(workspace: Path) -> None:
    """An upgrade: the node's orchestrator of another install (another program path) ends first;
    its agents keep running in tmux and the new one adopts them."""
    import signal

    from cao_sidecar import paths
    from cao_sidecar.daemon import locate

    info = locate.read_info(locate.place(paths.tmux_socket_name(None, workspace)))
    pid = info.get("pid") if isinstance(info, dict) else None
    if not isinstance(pid, int) or pid <= 0:
        return
    try:
        program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return
    if program == sys.executable:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)


def main_node(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cao-sidecar node", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="the node's workspace folder (default ~/.cache/cao-sidecar/node)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    workspace = Path(args.workspace or Path.home() / ".cache" / "cao-sidecar" / "node").expanduser()
    workspace.mkdir(parents=True, exist_ok=True)
    os.chdir(workspace)  # the relayed `initialize` names no root: the project is this folder
    _end_older_version(workspace)
    from cao_sidecar.app import configure_logging
    from cao_sidecar.daemon.forward import main_forward

    configure_logging(args.log_level)
    return main_forward("lsp", tmux_socket=None, project=None, session="cao", log_level=args.log_level)


UP_CALL = "cao/nodeUp"  # node -> orchestrator: a team call for another host (or the main machine)


class Upstream:
    """The orchestrator's link as a node's serve process sees it: team calls for other hosts go
    up it. A call waits while the link is down and is sent again, same key, on the next link."""

    def __init__(self) -> None:
        self.node_name: Optional[str] = None  # set on the first link: this process is then a node
        self._server: Any = None
        self._lost: dict[int, asyncio.Event] = {}
        self._changed: Optional[asyncio.Event] = None

    def attach(self, server: Any, name: Optional[str]) -> Callable[[], None]:
        self.node_name = name or self.node_name or "node"
        self._server = server
        self._lost[id(server)] = asyncio.Event()
        self._wake()

        def detach() -> None:
            lost = self._lost.pop(id(server), None)
            if lost is not None:
                lost.set()
            if self._server is server:
                self._server = None

        return detach

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
        self._changed = asyncio.Event()

    async def call(self, method: str, params: dict[str, Any], caller: Optional[dict[str, str]] = None) -> Any:
        """`method` on the orchestrator; `caller` ({terminalId, session}): the agent here that
        asks, which an assign's report comes back to."""
        from cao_sidecar.core.errors import CaoError

        key = secrets.token_hex(8)
        up: dict[str, Any] = {"key": key, "method": method, "params": params}
        if caller is not None:
            up["caller"] = caller
        while True:
            while self._server is None:
                changed = self._changed = self._changed or asyncio.Event()
                await changed.wait()
            server = self._server
            lost = self._lost[id(server)]
            answer = asyncio.ensure_future(server.protocol.send_request_async(UP_CALL, up))
            lost_wait = asyncio.ensure_future(lost.wait())
            await asyncio.wait([answer, lost_wait], return_when=asyncio.FIRST_COMPLETED)
            lost_wait.cancel()
            if answer.done():
                try:
                    return _plain(answer.result())
                except Exception as exc:  # noqa: BLE001 - the orchestrator's error, as the caller's
                    raise CaoError(str(getattr(exc, "message", exc)) or type(exc).__name__) from None
            answer.cancel()  # the link dropped: the next one gets the same key


UPSTREAM = Upstream()


async def end_idle_tmux(core: Any) -> None:
    """On a host, once the node's orchestrator has ended with no agent at all (none running, none
    exited whose window could still be read), its tmux server goes too: an idle host keeps no
    process of ours. The next link starts both again."""
    if UPSTREAM.node_name is None or core.agents:
        return
    try:
        await core.tmux.kill_server()
    except Exception as exc:  # noqa: BLE001 - the process is ending anyway
        import logging

        logging.getLogger(__name__).info("ending the node's tmux server: %s", exc)


def _plain(value: Any) -> Any:
    """pygls hands an answer to a request of its own over as namedtuples; make them dicts."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
