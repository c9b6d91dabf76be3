"""Where a team call that names a host goes: this machine, a node (from the orchestrator), or up
the link to the orchestrator (from a node), which sends it on. `main` names the orchestrator's
machine from anywhere; `local` (or no host) is the caller's own machine."""

from __future__ import annotations

import contextlib
from typing import Any, Optional

from cao_sidecar.hosts.node import UPSTREAM
from cao_sidecar.hosts.team import AUTO, MAIN, hosts_of
from cao_sidecar.hosts.team_calls import as_node_sees


def elsewhere(host: Optional[str]) -> bool:
    """Whether `host` is another machine than the one this process runs on."""
    if host in (None, "", "local"):
        return False
    if UPSTREAM.node_name is not None:  # this process is a node
        return host != UPSTREAM.node_name
    return host != MAIN


async def call_elsewhere(core: Any, host: str, method: str, params: dict[str, Any], report_to: Any = None) -> Any:
    """`method` on `host`; `report_to`: a lead that gets the worker's report as a message (assign)."""
    params = {k: v for k, v in params.items() if v is not None}
    if UPSTREAM.node_name is not None:  # up the link; the caller named, for its assign's report
        caller = {"terminalId": report_to.terminal_id, "session": report_to.session} if report_to is not None else None
        return as_node_sees(await UPSTREAM.call(method, {**params, "host": host}, caller))
    hosts = hosts_of(core)
    if host == AUTO:  # placed here, then run as the editor face runs it
        return await hosts.run_here(method, {**params, "host": AUTO}, report_to)
    with hosts.assigning(host) if method == "cao/assign" else contextlib.nullcontext():
        result = await hosts.call(host, method, params)
        if report_to is not None and isinstance(result, dict) and ":" in result.get("terminalId", ""):
            hosts.report_to(result["terminalId"], report_to)
    return result
