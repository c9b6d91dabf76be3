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
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

NODE_CALL = "cao/nodeCall"
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
        task = asyncio.get_running_loop().create_task(start())  # type: ignore[arg-type]
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


def register_node_call(server: Any) -> None:
    """`cao/nodeCall` on an LSP connection that is a node link (the orchestrator's)."""
    from pygls.exceptions import JsonRpcInvalidParams

    async def node_call(ls: Any, raw: Any) -> Any:
        params = raw if isinstance(raw, dict) else getattr(raw, "__dict__", {})
        key, method = params.get("key"), params.get("method")
        handler = ls.cao_handlers.get(method) if isinstance(method, str) else None
        if not isinstance(key, str) or not key or handler is None:
            raise JsonRpcInvalidParams(f"{NODE_CALL}: needs a 'key' and a cao/* 'method'", data={"kind": "invalidParams"})
        inner = params.get("params")
        return await asyncio.shield(CALLS.run(key, lambda: handler(ls, inner)))

    server.feature(NODE_CALL)(node_call)


def main_node(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cao-sidecar node", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="the node's workspace folder (default ~/.cache/cao-sidecar/node)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    workspace = Path(args.workspace or Path.home() / ".cache" / "cao-sidecar" / "node").expanduser()
    workspace.mkdir(parents=True, exist_ok=True)
    os.chdir(workspace)  # the relayed `initialize` names no root: the project is this folder
    from cao_sidecar.app import configure_logging
    from cao_sidecar.daemon.forward import main_forward

    configure_logging(args.log_level)
    return main_forward("lsp", tmux_socket=None, project=None, session="cao", log_level=args.log_level)
