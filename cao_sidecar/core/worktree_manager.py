"""Worker worktrees: which agents get one, making it before launch, reporting the work, merging
or discarding it, listing them (after a restart too).

The orchestrator calls `plan` when it registers an agent (cheap checks, no subprocess), `prepare`
before the agent's CLI starts (git makes the worktree; the agent's working directory becomes it),
and `finish` when a task ends (what the worker left uncommitted is committed on its branch and
its work summarised). Nothing here runs on agent teardown: a worktree stays until merged or
discarded. Git itself is in core.worktrees; the rows in storage.worktrees.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import attrs

from cao_sidecar.core import worktrees as gitops
from cao_sidecar.core.agent import Agent
from cao_sidecar.core.errors import InvalidRequest, WorktreeError
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.storage.agents import AgentStore
from cao_sidecar.storage.worktrees import WorktreeRecord, WorktreeStore

log = logging.getLogger(__name__)

BUSY = (AgentStatus.STARTING, AgentStatus.PROCESSING, AgentStatus.STALLED, AgentStatus.WAITING_USER_ANSWER)
BRANCH_PART = re.compile(r"[^A-Za-z0-9_.-]+")


@attrs.define(frozen=True)
class WorktreePlan:
    folder: str  # the folder the worker would have worked in
    base_ref: Optional[str]
    files: tuple[str, ...]  # untracked files to copy in (the profile's worktreeFiles)
    label: Optional[str]  # the agent's name, if given: part of the branch name


class WorktreeManager:
    def __init__(
        self,
        *,
        state_dir: Path,
        db: sqlite3.Connection,
        agents: dict[str, Agent],
        agent_store: AgentStore,
        terminate: Callable[[str], Awaitable[None]],
    ) -> None:
        self.store = WorktreeStore(db)
        self._root = state_dir / "worktrees"
        self._agents = agents
        self._agent_store = agent_store
        self._terminate = terminate
        self._locks: dict[str, asyncio.Lock] = {}  # per repository: one git change at a time

    # ---- making one ---------------------------------------------------------------------------

    def plan(self, agent: Agent, worktree: Optional[bool], base_ref: Optional[str]) -> Optional[WorktreePlan]:
        """Decide whether `agent` gets a worktree (the caller's choice, else its profile's) and
        check what can be checked without git running: git is there, the folder is in a repository."""
        wanted = worktree if worktree is not None else agent.profile.worktree
        if not wanted:
            if base_ref is not None:
                raise InvalidRequest("field 'baseRef' needs a worktree ('worktree': true)", field="baseRef")
            return None
        gitops.git_path()
        if gitops.find_repository_marker(agent.working_directory) is None:
            raise WorktreeError(
                f"'{agent.working_directory}' is not in a git repository: a worker's worktree needs one",
                reason="notGitRepo",
            )
        plan = WorktreePlan(agent.working_directory, base_ref, tuple(agent.profile.worktree_files), agent.name)
        self.store.add_plan(agent.terminal_id, attrs.asdict(plan))
        return plan

    async def prepare(self, agent: Agent) -> None:
        """Before the agent starts: make its worktree (or find the one it had before a restart)
        and move its working directory into it."""
        record = self.store.get(agent.terminal_id)
        if record is not None:  # launched again after a restart: same worktree
            if not await asyncio.to_thread(os.path.isdir, record.path):
                raise WorktreeError(f"the worktree {record.path} of this worker is gone", reason="noWorktree")
            self._enter(agent, record)
            return
        stored = self.store.plan(agent.terminal_id)
        if stored is None:
            return
        plan = WorktreePlan(stored["folder"], stored["base_ref"], tuple(stored["files"]), stored["label"])
        repo = await gitops.repository_root(plan.folder)
        async with self._lock(repo):
            base, base_commit = await gitops.resolve_base(repo, plan.base_ref)
            label = BRANCH_PART.sub("-", plan.label or agent.terminal_id).strip("-.") or agent.terminal_id
            branch = f"cao/{BRANCH_PART.sub('-', agent.profile.name)}-{label}"
            path = self._root / f"{BRANCH_PART.sub('-', os.path.basename(repo)) or 'repo'}-{agent.terminal_id}"
            if await gitops.checkout_of(repo, branch) != str(path):  # not made by a sidecar that died since
                await gitops.add_worktree(repo, path, branch, base_commit)
        copied, notes = await asyncio.to_thread(gitops.copy_untracked, repo, path, list(plan.files))
        sub = os.path.relpath(await asyncio.to_thread(os.path.realpath, plan.folder), repo)  # noqa: ASYNC240 - relpath: string work
        record = WorktreeRecord(
            terminal_id=agent.terminal_id, profile=agent.profile.name, session=agent.session, repository=repo,
            path=str(path), subdirectory="" if sub == "." or sub.startswith("..") else sub, branch=branch, base=base,
            base_commit=base_commit, copied=copied, notes=notes,
        )  # fmt: skip
        self.store.add(record)
        self.store.remove_plan(agent.terminal_id)
        self._enter(agent, record)
        log.info("worker %s works in %s on branch %s (from %s)", agent.terminal_id, path, branch, base)

    def _enter(self, agent: Agent, record: WorktreeRecord) -> None:
        folder = os.path.join(record.path, record.subdirectory) if record.subdirectory else record.path
        agent.working_directory = folder if os.path.isdir(folder) else record.path
        self._agent_store.set_working_directory(agent.terminal_id, agent.working_directory)

    async def drop_if_empty(self, terminal_id: str) -> None:
        """An agent is gone for good (terminated, or it never started): its worktree goes too if
        it holds no work at all (no commit, no change); one with work is kept until merged or
        discarded."""
        self.store.remove_plan(terminal_id)
        record = self.store.get(terminal_id)
        if record is None:
            return
        try:
            async with self._lock(record.repository):
                if await asyncio.to_thread(os.path.isdir, record.path) and await gitops.is_dirty(record.path, record.copied):
                    return
                summary = await gitops.summarize(record.repository, record.branch, record.base, record.base_commit)
                if summary.commits:
                    return
                await gitops.remove_worktree(record.repository, record.path, record.branch, force_branch=False)
                self.store.remove(terminal_id)
        except Exception:  # kept, then: listed for the user to discard
            log.exception("could not look at the worktree of %s", terminal_id)

    # ---- reporting the work -------------------------------------------------------------------

    async def finish(self, terminal_id: str) -> Optional[dict[str, Any]]:
        """A task ended: commit what the worker left uncommitted on its branch, summarise its
        work, store the summary. None if the agent has no worktree."""
        record = self.store.get(terminal_id)
        if record is None:
            return None
        try:
            async with self._lock(record.repository):
                committed = False
                if await asyncio.to_thread(os.path.isdir, record.path):
                    committed = await gitops.commit_leftovers(
                        record.path, f"cao: changes {record.profile} worker {terminal_id} left uncommitted", record.copied
                    )
                summary = await gitops.summarize(record.repository, record.branch, record.base, record.base_commit)
        except WorktreeError as exc:
            log.warning("worktree of %s: %s", terminal_id, exc.message)
            return self.info(record, note=exc.message)
        except Exception:  # a report must go out whatever git did
            log.exception("worktree of %s could not be summarised", terminal_id)
            return self.info(record)
        self.store.set_summary(terminal_id, attrs.asdict(summary), committed)
        return self.info(self.store.get(terminal_id) or record)

    def info(self, record: WorktreeRecord, *, state: Optional[str] = None, note: Optional[str] = None,
             dirty: Optional[bool] = None) -> dict[str, Any]:  # fmt: skip
        """The worktree as the wire's WorktreeInfo (camelCase), from the store (no git)."""
        agent = self._agents.get(record.terminal_id)
        alive = agent is not None and agent.alive
        summary = record.summary or {}
        return {
            "terminalId": record.terminal_id,
            "profile": record.profile,
            "session": record.session,
            "repository": record.repository,
            "path": record.path,
            "branch": record.branch,
            "base": record.base,
            "baseCommit": summary.get("base_commit", record.base_commit),
            "head": summary.get("head"),
            "commits": summary.get("commits", []),
            "files": summary.get("files", []),
            "diffStat": summary.get("diff_stat", ""),
            "committedLeftovers": record.committed_leftovers,
            "dirty": dirty,
            "copiedFiles": record.copied,
            "notes": record.notes + ([note] if note else []),
            "agentStatus": agent.status.value if agent is not None else None,
            "state": state or ("active" if alive else "kept"),
        }

    def stored_info(self, terminal_id: str) -> Optional[dict[str, Any]]:
        record = self.store.get(terminal_id)
        return self.info(record) if record is not None else None

    def describe(self, terminal_id: str) -> Optional[str]:
        """One paragraph for an agent: where a worker's work is (None: it had no worktree)."""
        info = self.stored_info(terminal_id)
        if info is None:
            return None
        commits = info["commits"]
        text = (
            f"Its work is on branch {info['branch']} (base {info['base']}, worktree {info['path']}): "
            f"{len(commits)} commit(s), {len(info['files'])} file(s) changed"
        )
        if info["files"]:
            text += ": " + ", ".join(info["files"][:20])
        if info["committedLeftovers"]:
            text += ". Changes it left uncommitted were committed on its branch"
        return text + ". Ask for a merge with the merge_work tool."

    # ---- listing, merging, discarding --------------------------------------------------------

    async def list(self, session: Optional[str] = None) -> list[dict[str, Any]]:
        """Every worktree not merged or discarded yet, with its work as it is now."""
        result = []
        for record in self.store.all():
            if session is not None and record.session != session:
                continue
            result.append(await self._live_info(record))
        return result

    async def _live_info(self, record: WorktreeRecord) -> dict[str, Any]:
        if not await asyncio.to_thread(os.path.isdir, record.path):
            return self.info(record, note=f"the worktree folder {record.path} is gone; its branch is kept")
        try:
            summary = await gitops.summarize(record.repository, record.branch, record.base, record.base_commit)
            dirty = await gitops.is_dirty(record.path, record.copied)
        except WorktreeError as exc:
            return self.info(record, note=exc.message)
        record.summary = attrs.asdict(summary)
        return self.info(record, dirty=dirty)

    def get(self, terminal_id: str, session: Optional[str] = None) -> WorktreeRecord:
        record = self.store.get(terminal_id)
        if record is None or (session is not None and record.session != session):
            raise WorktreeError(f"no open worktree for worker '{terminal_id}'", reason="noWorktree", terminalId=terminal_id)
        return record

    async def merge(self, terminal_id: str, strategy: str = "merge", session: Optional[str] = None) -> dict[str, Any]:
        """Bring a worker's branch into its base (merge, or rebase then fast-forward). On a
        conflict nothing changes and the files are listed. A merged worktree whose agent has
        ended is removed (its branch too: it is in the base now)."""
        record = self.get(terminal_id, session)
        agent = self._agents.get(terminal_id)
        if agent is not None and agent.alive and agent.status in BUSY:
            raise WorktreeError(
                f"worker '{terminal_id}' is still working (status {agent.status.value}): merge it when it has finished",
                reason="workerBusy", terminalId=terminal_id,
            )  # fmt: skip
        async with self._lock(record.repository):
            committed = False
            if await asyncio.to_thread(os.path.isdir, record.path):
                committed = await gitops.commit_leftovers(
                    record.path, f"cao: changes {record.profile} worker {terminal_id} left uncommitted", record.copied
                )
            message = f"Merge {record.branch} ({record.profile} worker {terminal_id})"
            if strategy == "rebase":
                outcome = await gitops.rebase(record.repository, record.path, record.branch, record.base)
            else:
                outcome = await gitops.merge(record.repository, record.branch, record.base, message)
            record.committed_leftovers = record.committed_leftovers or committed
            state = None
            if outcome.merged and not (agent is not None and agent.alive):
                await gitops.remove_worktree(record.repository, record.path, record.branch, force_branch=False)
                self.store.remove(terminal_id)
                state = "merged"
        info = await self._live_info(record) if state is None else self.info(record, state=state)
        if committed and state is None:
            self.store.set_summary(terminal_id, record.summary or {}, True)
            info["committedLeftovers"] = True
        return {
            "merged": outcome.merged,
            "conflicts": outcome.conflicts,
            "commit": outcome.commit,
            "message": outcome.message,
            "worktree": info,
        }

    async def discard(self, terminal_id: str, session: Optional[str] = None) -> dict[str, Any]:
        """Throw a worker's work away: end its agent if it runs, remove its worktree and branch."""
        record = self.get(terminal_id, session)
        agent = self._agents.get(terminal_id)
        if agent is not None:
            await self._terminate(terminal_id)
        async with self._lock(record.repository):
            await gitops.remove_worktree(record.repository, record.path, record.branch, force_branch=True)
            self.store.remove(terminal_id)
        return self.info(record, state="discarded")

    def _lock(self, repository: str) -> asyncio.Lock:
        return self._locks.setdefault(repository, asyncio.Lock())
