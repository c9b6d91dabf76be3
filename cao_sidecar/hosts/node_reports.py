"""Workers' reports from a host's node to its orchestrator, each taken exactly once.

On a node, how an assign ended is stored (core.reporting) and goes up the link as the request
`cao/nodeReport`, keyed by the node's own id for it (`<node instance>-<report id>`). The node
marks it sent only when the orchestrator has answered: a link that drops, a node or an
orchestrator that crashes in between, and it is sent again (while the link is down the call
waits for the next one, hosts.node.Upstream; after a node restart, with the node's unsent
reports at its first link). The orchestrator takes each key once (`take`): in one transaction it
records the key, stores the report for its editors (sent to them as a local worker's is) and the
message for the agent that assigned the worker, if one did; a re-send is answered and dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from pathlib import Path
from typing import Any, Optional

from cao_sidecar import paths, views, wire
from cao_sidecar.core.errors import InvalidRequest
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.hosts.config import qualify
from cao_sidecar.hosts.node import UPSTREAM
from cao_sidecar.storage.reports import Report

log = logging.getLogger(__name__)

NODE_REPORT = "cao/nodeReport"  # a nodeUp method: node -> orchestrator, one report
INSTANCE_FILE = "node-instance"  # in the node's state dir: its reports' keys are its own


async def forward_reports(core: Any) -> None:
    """On a node, at its first link (again after a restart): its reports go up from now on,
    those still unsent first."""
    instance = await asyncio.to_thread(_instance_id, Path(core.state_dir))

    async def forward(report: Report) -> None:
        worktree = views.stored_worktree(core, report.terminal_id)
        params = {
            "key": f"{instance}-{report.report_id}", "terminalId": report.terminal_id, "profile": report.profile,
            "status": report.status, "output": report.output, "error": report.error,
            "worktree": wire.unstructure(worktree) if worktree is not None else None,
            "work": core.worktrees.describe(report.terminal_id),
        }  # fmt: skip
        await UPSTREAM.call(NODE_REPORT, params)

    core.assigns.set_forwarder(forward)


def _instance_id(state_dir: Path) -> str:
    """This node's id, made once: a node whose state is wiped numbers its reports from 1 again,
    under a new id."""
    path = state_dir / INSTANCE_FILE
    try:
        found = path.read_text(encoding="utf-8").strip()
    except OSError:
        found = ""
    if len(found) == 16 and all(c in "0123456789abcdef" for c in found):
        return found
    made = secrets.token_hex(8)
    paths.write_private_text(path, made)
    return made


async def take(core: Any, host: str, raw: Any, lead_id: Optional[str]) -> dict[str, Any]:
    """A report `host`'s node sent (`cao/nodeReport` params): stored and sent on once per key.
    `lead_id`: the agent that assigned the worker, which gets it as a message."""
    params = raw if isinstance(raw, dict) else {}
    key, worker, profile, status = (params.get(k) for k in ("key", "terminalId", "profile", "status"))
    if not all(isinstance(v, str) and v for v in (key, worker, profile, status)):
        raise InvalidRequest(f"{NODE_REPORT}: needs 'key', 'terminalId', 'profile' and 'status'")
    try:
        outcome = AgentStatus(status)
    except ValueError:
        raise InvalidRequest(f"{NODE_REPORT}: unknown status {status!r}") from None
    output, error, work = params.get("output"), params.get("error"), params.get("work")
    worktree = params.get("worktree")
    taken = await core.assigns.report_from_host(
        f"{host}:{key}", f"{host}:{worker}", profile, outcome,
        output if isinstance(output, str) else "",
        error if isinstance(error, str) else None,
        lead_id,
        worktree=json.dumps(qualify(worktree, host)) if isinstance(worktree, dict) else None,
        work=work if isinstance(work, str) else None,
    )  # fmt: skip
    if not taken:
        log.info("report %s from %s taken before: dropped", key, host)
    return {"taken": True}
