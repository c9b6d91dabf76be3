"""An agent's team tools across machines: `send_message`, `merge_work` and `list_sessions` for
agents of other hosts, held to the caller's session exactly as on one machine (team_tools).

On the orchestrator's machine they go to the other agent's node. On a node they go up the link
with the calling agent named (`cao/nodeUp` with `caller`), and the orchestrator runs them for
that agent (`serve`), checking its session there: a node's agents act only on their own team,
wherever its members run. Seen from a node, `main:1a2b3c4d` names an agent of the orchestrator's
machine, and `box2:1a2b3c4d` one of another host.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

from cao_sidecar import views, wire
from cao_sidecar.core.errors import CaoError, InvalidRequest, UnknownTerminal, WorktreeError
from cao_sidecar.hosts.config import qualify, split_terminal_id
from cao_sidecar.hosts.node import UPSTREAM
from cao_sidecar.hosts.team import MAIN, RemoteCaller, hosts_of

log = logging.getLogger(__name__)

UP_METHODS = ("cao/sendMessage", "cao/mergeWorktree", "cao/listAgents")  # run for the calling agent (`serve`)
LIST_TIMEOUT = 10.0  # list_sessions on a node shows only its own agents when the orchestrator is not reached by then


def on_node() -> bool:
    return UPSTREAM.node_name is not None


def names_elsewhere(terminal_id: str) -> bool:
    """Whether a terminal id names an agent of another machine than this process's."""
    host, _ = split_terminal_id(terminal_id)
    if host is None:
        return False
    return host != UPSTREAM.node_name if on_node() else host != MAIN


def as_others_name(terminal_id: str) -> str:
    """An agent of this machine as the other machines name it (`box1:1a2b3c4d` for host box1's,
    `main:1a2b3c4d` for the orchestrator's)."""
    return f"{UPSTREAM.node_name if on_node() else MAIN}:{terminal_id}"


def as_main_names(terminal_id: str) -> str:
    """A node's name for an agent (`main:ab12cd34`, `box2:ab12cd34`), as the orchestrator names it."""
    host, local = split_terminal_id(terminal_id)
    return local if host == MAIN else terminal_id


def as_node_sees(value: Any) -> Any:
    """What the orchestrator answered a node, with its own agents' ids as `main:…` and the node's
    own as plain ids."""
    own = f"{UPSTREAM.node_name}:"
    return _strip(qualify(value, MAIN), own)


def _strip(value: Any, prefix: str) -> Any:
    if isinstance(value, list):
        return [_strip(v, prefix) for v in value]
    if isinstance(value, dict):
        return {
            k: (v[len(prefix) :] if k == "terminalId" and isinstance(v, str) and v.startswith(prefix) else _strip(v, prefix))
            for k, v in value.items()
        }
    return value


def _caller(lead_id: str, session: str) -> dict[str, str]:
    return {"terminalId": lead_id, "session": session}


# ---- the tools' side: an agent (on either machine) acts on an agent of another ------------------


async def send(core: Any, lead_id: str, session: str, target: str, message: str, label: str) -> dict[str, Any]:
    """`message` for `target` (a qualified id of another machine), signed `label`."""
    if not message.strip():
        raise InvalidRequest("field 'message' must not be empty", field="message")
    if on_node():
        params = {"terminalId": as_main_names(target), "message": message, "sender": label}
        return dict(as_node_sees(await UPSTREAM.call("cao/sendMessage", params, _caller(lead_id, session))))
    return await _send_here(core, target, message, label, session, None)


async def merge(core: Any, lead_id: str, session: str, worker: str, strategy: str) -> dict[str, Any]:
    """Merge the worktree of `worker` (a qualified id of another machine) into its base."""
    if on_node():
        params = {"terminalId": as_main_names(worker), "strategy": strategy}
        return dict(as_node_sees(await UPSTREAM.call("cao/mergeWorktree", params, _caller(lead_id, session))))
    return await _merge_here(core, worker, strategy, session)


async def teammates(core: Any, lead_id: str, session: str) -> list[dict[str, Any]]:
    """The agents of `session` on other machines (AgentInfo-like dicts, qualified ids). On a node
    whose link is down (or slow), none: its own agents are listed anyway."""
    if not on_node():
        return await hosts_of(core).list_agents(session)
    try:
        found = await asyncio.wait_for(UPSTREAM.call("cao/listAgents", {}, _caller(lead_id, session)), LIST_TIMEOUT)
    except (asyncio.TimeoutError, CaoError) as exc:
        log.info("list_sessions: the orchestrator's agents are not listed: %s", exc)
        return []
    agents = as_node_sees(found.get("agents", []) if isinstance(found, dict) else [])
    return [a for a in agents if isinstance(a, dict) and names_elsewhere(str(a.get("terminalId", "")))]


# ---- the orchestrator's side: what a host's agent asked for ------------------------------------


async def serve(core: Any, method: str, params: Any, caller: Optional[RemoteCaller]) -> Any:
    """`method` (one of UP_METHODS) for the host's agent `caller`, in its session only."""
    if caller is None:
        raise InvalidRequest(f"cao/nodeUp: {method} needs its 'caller'")
    params = params if isinstance(params, dict) else {}
    target = params.get("terminalId")
    if method == "cao/listAgents":
        infos = [wire.unstructure(views.agent_info(a, core)) for a in core.list_agents(caller.session)]
        return {"agents": infos + await hosts_of(core).list_agents(caller.session)}
    if not isinstance(target, str) or not target:
        raise InvalidRequest(f"{method}: needs a 'terminalId'", field="terminalId")
    if method == "cao/sendMessage":
        if target == caller.terminal_id:
            raise InvalidRequest("you cannot send a message to yourself", field="terminalId")
        message, label = params.get("message"), params.get("sender")
        if not isinstance(message, str) or not message.strip():
            raise InvalidRequest("field 'message' must not be empty", field="message")
        return await _send_here(
            core, target, message, label if isinstance(label, str) else caller.terminal_id, caller.session, caller
        )
    strategy = params.get("strategy", "merge")
    if strategy not in ("merge", "rebase"):
        raise InvalidRequest("strategy must be 'merge' or 'rebase'", field="strategy")
    return await _merge_here(core, target, strategy, caller.session)


async def _send_here(core: Any, target: str, message: str, label: str, session: str, sender: Any) -> dict[str, Any]:
    """From the orchestrator: to an agent of its own (`1a2b3c4d`) or of a host (`box1:1a2b3c4d`),
    if it is of `session`. `sender`: the agent told if it can never be delivered."""
    if split_terminal_id(target)[0] is None:
        receiver = core.resolve_target(target, session, same_session=True)
        message_id, state = await core.send_message(receiver.terminal_id, message, sender=label, sender_agent=sender)
        return {"messageId": message_id, "state": state, "terminalId": receiver.terminal_id}
    hosts = hosts_of(core)
    await _check_session(hosts, target, session)
    done = await hosts.call_terminal(target, "cao/sendMessage", {"message": message, "sender": label})
    return {**done, "terminalId": target}


async def _merge_here(core: Any, worker: str, strategy: str, session: str) -> dict[str, Any]:
    if split_terminal_id(worker)[0] is None:
        return dict(await core.worktrees.merge(worker, strategy, session=session))
    hosts = hosts_of(core)
    host, _ = split_terminal_id(worker)
    if host not in hosts.links or worker not in {w.get("terminalId") for w in await hosts.list_worktrees(session)}:
        raise WorktreeError(f"no open worktree for worker '{worker}'", reason="noWorktree", terminalId=worker)
    return dict(await hosts.call_terminal(worker, "cao/mergeWorktree", {"strategy": strategy}))


async def _check_session(hosts: Any, target: str, session: str) -> None:
    host, _ = split_terminal_id(target)
    if host not in hosts.links and host not in hosts.configs():
        raise UnknownTerminal(f"no agent '{target}': no host '{host}'", terminalId=target)
    if target not in {a.get("terminalId") for a in await hosts.list_agents(session)}:
        raise UnknownTerminal(f"no agent '{target}' in your session '{session}'", terminalId=target)
