"""`cao-sidecar status` (the team at a glance) and `cao-sidecar shutdown` (end its orchestrator)."""

from __future__ import annotations

import json
import os
import socket as sockets
import struct
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from cao_client.client import CaoError
from cao_client.verbs.session import Team, VerbFailed

METHOD_NOT_FOUND = -32601
# Fields of cao/stats that count the connected clients, if the orchestrator reports them.
CLIENT_FIELDS = ("clients", "connections", "connectedClients")


def orchestrator_socket(tmux_socket: str) -> Path | None:
    """Where the project's shared orchestrator listens (TEAM-CONTRACT: `<state dir>/orchestrator-
    <tmux socket>.sock`); None when the state dir is unknown here."""
    try:
        from cao_sidecar import paths
    except ImportError:
        return None
    return paths.state_dir() / f"orchestrator-{tmux_socket}.sock"


def listener_pid(path: Path | None) -> int | None:
    """The pid of the process listening on Unix socket `path` (its peer credentials), or None."""
    if path is None or not path.exists():
        return None
    try:
        with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(str(path))
            creds = conn.getsockopt(sockets.SOL_SOCKET, sockets.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid or None


def uptime_seconds(pid: int) -> float | None:
    """How long process `pid` has run (Linux /proc), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        started_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, since_boot - started_ticks / os.sysconf("SC_CLK_TCK"))


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


async def status(team: Team) -> int:
    assert team.client is not None
    agents = await team.agents()
    stats = await team.client.stats()
    shared_pid = listener_pid(orchestrator_socket(team.socket))
    pid = shared_pid or team.client.pid  # no shared orchestrator: the sidecar this command started
    clients = next((stats[f] for f in CLIENT_FIELDS if isinstance(stats.get(f), int)), None)
    report: dict[str, Any] = {
        "project": str(team.project),
        "tmuxSocket": team.socket,
        "orchestrator": {
            "pid": pid,
            "uptimeSeconds": _rounded(uptime_seconds(pid)),
            "shared": shared_pid is not None,
            "version": team.client.server_info.get("version"),
        },
        "agents": {"total": len(agents), "byStatus": dict(Counter(a.get("status") for a in agents))},
        "waiting": [
            {"terminalId": a["terminalId"], "name": a.get("name"), "question": (a.get("prompt") or {}).get("text")}
            for a in agents
            if a.get("status") == "waiting_user_answer"
        ],
        "clients": clients,
        "stats": stats,
    }
    if team.args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    orch = report["orchestrator"]
    kind = "shared by every client of the project" if orch["shared"] else "started for this command (no shared orchestrator runs)"
    print(f"project       {report['project']}")
    print(f"tmux socket   {team.socket}")
    print(f"orchestrator  pid {pid}, up {duration(orch['uptimeSeconds'])}, cao-sidecar {orch['version']}, {kind}")
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(report["agents"]["byStatus"].items()))
    print(f"agents        {len(agents)}" + (f" ({by_status})" if by_status else ""))
    for waiting in report["waiting"]:
        print(f"  waiting     {waiting['terminalId']} asks: {waiting['question']} (cao-sidecar answer {waiting['terminalId']})")
    if clients is not None:
        print(f"clients       {clients} connected")
    return 0


async def shutdown(team: Team) -> int:
    assert team.client is not None
    terminate = bool(team.args.terminate_agents)
    try:
        await team.client.shutdown_team(terminate)
    except CaoError as exc:
        if exc.code == METHOD_NOT_FOUND:
            raise VerbFailed(
                "this cao-sidecar has no cao/shutdown (no shared orchestrator in this version); "
                "end agents with `cao-sidecar terminate AGENT`"
            ) from None
        raise
    except ConnectionError:
        pass  # it went before it answered: that is what was asked
    agents = "its agents were terminated" if terminate else "its agents keep running in tmux"
    print(f"the orchestrator of {team.project} is shut down; {agents}", file=sys.stderr)
    return 0
