"""Wire types about the sidecar itself: cao/stats (with each linked host), cao/shutdown, cao/doctor."""

from __future__ import annotations

from typing import Any, Literal, Optional

import attrs


@attrs.define
class StatsParams:
    pass


@attrs.define
class HostStats:
    """One host's link and its agents (fresh from a connected host, as last seen from another)."""

    name: str
    state: Literal["starting", "installing", "connecting", "connected", "reconnecting", "failed"]
    agents: int  # its agents, as last listed or reported
    live_agents: int  # of those, not exited (nor in error)
    connects: int  # links made so far (more than 1: it dropped and came back)
    reason: Optional[str] = None  # why it is not connected


@attrs.define
class StatsResult:
    agents: int  # agents the sidecar knows (exited ones included until terminated)
    live_agents: int
    tasks: int  # asyncio tasks in the sidecar
    credentials: int  # MCP credentials currently valid
    queued_messages: int
    open_files: int
    rss_bytes: int
    # The counts above are this machine's; each host of hosts.yaml the team linked to (issue 19):
    hosts: list[HostStats] = attrs.Factory(list)


@attrs.define
class ShutdownParams:
    terminate_agents: bool = False  # end every agent first (default: they keep running in tmux)


@attrs.define
class ShutdownResult:
    pass


@attrs.define
class DoctorParams:
    pass


@attrs.define
class DoctorResult:
    # The report of `cao-sidecar doctor --json` (cao_sidecar.doctor): tmux, each provider's CLI
    # (found, path, version, loggedIn, install / login hints), the editors; ok: tmux is there.
    tmux: dict[str, Any]
    providers: list[dict[str, Any]]
    editors: list[dict[str, Any]]
    ok: bool
