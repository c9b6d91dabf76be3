"""The editor face's worktree methods: cao/listWorktrees, cao/mergeWorktree, cao/discardWorktree,
and the WorktreeInfo that spawn, handoff and cao/workerCompleted carry (core.worktree_manager)."""

from __future__ import annotations

from typing import Any, Callable, Optional

from cao_sidecar import wire
from cao_sidecar.core.orchestrator import Orchestrator


def to_wire(info: dict[str, Any]) -> wire.WorktreeInfo:
    """The manager's camelCase dict as the wire type."""
    return wire.converter.structure(info, wire.WorktreeInfo)


def stored_worktree(core: Orchestrator, terminal_id: str) -> Optional[wire.WorktreeInfo]:
    """The agent's worktree as last summarised (no git runs), or None if it has none."""
    info = core.worktrees.stored_info(terminal_id)
    return to_wire(info) if info is not None else None


def register_worktree_methods(server: Any, cao_method: Callable[[Any, str], Callable[[Any], Any]]) -> None:
    """Add the worktree methods to `server` with the face's own method decorator."""

    @cao_method(server, "cao/listWorktrees")
    async def list_worktrees(ls: Any, p: wire.ListWorktreesParams) -> wire.ListWorktreesResult:
        core = await ls.core()
        return wire.ListWorktreesResult(worktrees=[to_wire(i) for i in await core.worktrees.list(p.session)])

    @cao_method(server, "cao/mergeWorktree")
    async def merge_worktree(ls: Any, p: wire.MergeWorktreeParams) -> wire.MergeWorktreeResult:
        core = await ls.core()
        done = await core.worktrees.merge(p.terminal_id, p.strategy)
        return wire.MergeWorktreeResult(
            merged=done["merged"], message=done["message"], worktree=to_wire(done["worktree"]),
            conflicts=done["conflicts"], commit=done["commit"],
        )  # fmt: skip

    @cao_method(server, "cao/discardWorktree")
    async def discard_worktree(ls: Any, p: wire.DiscardWorktreeParams) -> wire.DiscardWorktreeResult:
        core = await ls.core()
        return wire.DiscardWorktreeResult(worktree=to_wire(await core.worktrees.discard(p.terminal_id)))
