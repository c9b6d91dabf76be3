"""Wire types of workers' git worktrees: cao/listWorktrees, cao/mergeWorktree, cao/discardWorktree
(core.worktree_manager).
"""

from __future__ import annotations

from typing import Literal, Optional

import attrs

from cao_sidecar.core.status import AgentStatus


@attrs.define
class WorktreeInfo:
    """A worker's git worktree and the work on its branch (core.worktree_manager)."""

    terminal_id: str
    profile: str
    session: str
    repository: str  # the repository's top folder
    path: str  # the worktree's folder (under the state dir)
    branch: str
    base: str  # the branch it started from (a commit when the folder's HEAD was detached)
    base_commit: str  # where the branch left the base
    state: Literal["active", "kept", "merged", "discarded"]
    head: Optional[str] = None  # the branch's last commit (null until its work was first summarised)
    commits: list[str] = attrs.Factory(list)  # "<short sha> <subject>" on the branch, oldest first
    files: list[str] = attrs.Factory(list)  # files the branch changes
    diff_stat: str = ""  # git diff --stat of the branch against the base
    committed_leftovers: bool = False  # changes the worker left uncommitted were committed by the sidecar
    dirty: Optional[bool] = None  # uncommitted changes in the worktree now (null: not looked)
    copied_files: list[str] = attrs.Factory(list)  # untracked files copied in (never committed)
    notes: list[str] = attrs.Factory(list)  # files not copied and why, a folder gone, git problems
    agent_status: Optional[AgentStatus] = None  # null once its agent is gone


@attrs.define
class ListWorktreesParams:
    session: Optional[str] = None


@attrs.define
class ListWorktreesResult:
    worktrees: list[WorktreeInfo]


@attrs.define
class MergeWorktreeParams:
    terminal_id: str
    strategy: Literal["merge", "rebase"] = "merge"


@attrs.define
class MergeWorktreeResult:
    merged: bool
    message: str
    worktree: WorktreeInfo
    conflicts: list[str] = attrs.Factory(list)  # files that conflict; nothing was changed
    commit: Optional[str] = None  # the base's new head


@attrs.define
class DiscardWorktreeParams:
    terminal_id: str


@attrs.define
class DiscardWorktreeResult:
    worktree: WorktreeInfo
