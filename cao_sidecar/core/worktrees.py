"""Git operations for worker worktrees, each one an asyncio subprocess (never on the event loop).

A worker with a worktree works on its own branch in its own folder (under the state dir), so
parallel workers never see each other's edits. This module only speaks git: creating a worktree,
copying listed untracked files in (from inside the repository only), committing what a worker
left, summarising its work, merging or rebasing it into its base without losing anything, and
removing it. core.worktree_manager ties it to agents and the state db.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path
from typing import Optional, Sequence

import attrs

from cao_sidecar.core.errors import WorktreeError

GIT_TIMEOUT = 120.0
MAX_COPY_BYTES = 10 * 1024 * 1024  # a listed file larger than this is not copied
DIFF_STAT_LIMIT = 8000  # characters of `git diff --stat` kept in a summary
# Used only when the repository has no identity of its own (git would refuse to commit).
FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "cao-sidecar",
    "GIT_AUTHOR_EMAIL": "cao-sidecar@localhost",
    "GIT_COMMITTER_NAME": "cao-sidecar",
    "GIT_COMMITTER_EMAIL": "cao-sidecar@localhost",
}


@attrs.define
class GitResult:
    code: int
    out: str
    err: str


@attrs.define
class WorkSummary:
    """Where a worker's work is: its branch against its base."""

    branch: str
    base: str
    base_commit: str
    head: str
    commits: list[str]  # "<short sha> <subject>", oldest first
    files: list[str]  # changed files (relative to the repository)
    diff_stat: str


@attrs.define
class MergeOutcome:
    merged: bool
    conflicts: list[str] = attrs.Factory(list)
    commit: Optional[str] = None  # the base's new head after a merge
    message: str = ""


def git_path() -> str:
    found = shutil.which("git")
    if found is None:
        raise WorktreeError("git is not installed (or not on PATH): worktrees need git", reason="gitMissing")
    return found


async def git(cwd: str | Path, *args: str, env: Optional[dict[str, str]] = None, check: bool = True) -> GitResult:
    """Run `git args` in `cwd`; with `check`, a non-zero exit raises WorktreeError with git's words."""
    full_env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    full_env.pop("GIT_DIR", None)
    full_env.pop("GIT_WORK_TREE", None)
    full_env.update(env or {})
    try:
        proc = await asyncio.create_subprocess_exec(
            git_path(), *args, cwd=str(cwd), env=full_env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise WorktreeError(f"cannot run git in {cwd}: {exc}", reason="gitMissing") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise WorktreeError(f"git {args[0]} took longer than {GIT_TIMEOUT:g}s in {cwd}", reason="gitFailed") from None
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
        raise
    result = GitResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
    if check and result.code != 0:
        raise WorktreeError(
            f"git {' '.join(args[:2])} failed in {cwd}: {result.err.strip() or result.out.strip()}", reason="gitFailed"
        )
    return result


def find_repository_marker(folder: str) -> Optional[str]:
    """The nearest folder at or above `folder` holding `.git` (cheap, no subprocess), or None."""
    path = os.path.abspath(folder)
    while True:
        if os.path.lexists(os.path.join(path, ".git")):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


async def repository_root(folder: str) -> str:
    result = await git(folder, "rev-parse", "--show-toplevel", check=False)
    if result.code != 0 or not result.out.strip():
        raise WorktreeError(f"'{folder}' is not in a git repository: a worktree needs one", reason="notGitRepo")
    return await asyncio.to_thread(os.path.realpath, result.out.strip())


async def resolve_base(repo: str, base_ref: Optional[str]) -> tuple[str, str]:
    """(base name, base commit): the given ref, or the folder's current branch (its commit when detached)."""
    if base_ref is not None:
        if not base_ref or base_ref.startswith("-") or any(c in base_ref for c in "\0\n\r"):
            raise WorktreeError(f"base ref {base_ref!r} is not a valid git ref", reason="unknownBaseRef")
        found = await git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{base_ref}^{{commit}}", check=False)
        if found.code != 0:
            raise WorktreeError(f"base ref '{base_ref}' is not known in {repo}", reason="unknownBaseRef")
        return base_ref, found.out.strip()
    head = await git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    if head.code != 0:
        raise WorktreeError(
            f"the repository {repo} has no commit yet: a worktree needs one to start from", reason="unknownBaseRef"
        )
    branch = await git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return (branch.out.strip() if branch.code == 0 else head.out.strip()), head.out.strip()


async def check_branch_name(repo: str, branch: str) -> None:
    valid = await git(repo, "check-ref-format", "--branch", branch, check=False)
    if valid.code != 0:
        raise WorktreeError(f"'{branch}' is not a valid branch name", reason="branchTaken")
    taken = await git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
    if taken.code == 0:
        raise WorktreeError(
            f"branch '{branch}' already exists in {repo}: merge or discard its worktree, or choose another name",
            reason="branchTaken",
        )


async def add_worktree(repo: str, path: Path, branch: str, base_commit: str) -> None:
    await check_branch_name(repo, branch)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    await git(repo, "worktree", "add", "--quiet", "-b", branch, "--", str(path), base_commit)


def copy_untracked(repo: str, worktree: Path, files: list[str]) -> tuple[list[str], list[str]]:
    """Copy each listed file from the repository into the worktree (blocking: run it in a thread).

    Only regular files inside the repository are copied: a path that leaves it (absolute, `..`)
    or passes through a symlink is refused, since the folder may be untrusted. Returns (copied,
    notes on the ones skipped)."""
    copied: list[str] = []
    notes: list[str] = []
    root = os.path.realpath(repo)
    target_root = os.path.realpath(worktree)
    for rel in files:
        parts = Path(rel).parts
        if not rel or os.path.isabs(rel) or ".." in parts or ".git" in parts:
            notes.append(f"{rel}: not copied (only paths inside the repository, without '..' or .git)")
            continue
        source = root
        refused = None
        for part in parts:
            source = os.path.join(source, part)
            try:
                mode = os.lstat(source).st_mode
            except OSError:
                refused = "not found"
                break
            if stat.S_ISLNK(mode):
                refused = "a symlink on its path is not followed"
                break
        if refused is None and not stat.S_ISREG(os.lstat(source).st_mode):
            refused = "not a regular file"
        if refused is None and os.lstat(source).st_size > MAX_COPY_BYTES:
            refused = f"larger than {MAX_COPY_BYTES // (1024 * 1024)} MiB"
        if refused is not None:
            notes.append(f"{rel}: not copied ({refused})")
            continue
        dest = os.path.join(target_root, *parts)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.realpath(os.path.dirname(dest)).startswith(target_root + os.sep) and os.path.dirname(dest) != target_root:
            notes.append(f"{rel}: not copied (its folder in the worktree leads outside it)")
            continue
        try:
            src_fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                dst_fd = os.open(
                    dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, stat.S_IMODE(os.fstat(src_fd).st_mode)
                )
                try:
                    while chunk := os.read(src_fd, 1 << 16):
                        os.write(dst_fd, chunk)
                finally:
                    os.close(dst_fd)
            finally:
                os.close(src_fd)
        except OSError as exc:
            notes.append(f"{rel}: not copied ({exc.strerror or exc})")
            continue
        copied.append(rel)
    return copied, notes


async def identity_env(cwd: str | Path) -> dict[str, str]:
    """Git's author and committer: the repository's own, or the sidecar's when it has none."""
    email = await git(cwd, "config", "user.email", check=False)
    return {} if email.code == 0 and email.out.strip() else dict(FALLBACK_IDENTITY)


async def commit_leftovers(worktree: str | Path, message: str, exclude: Sequence[str]) -> bool:
    """Commit everything the worker left uncommitted (files copied in by the sidecar excluded).
    True if a commit was made."""
    pathspec = ["--", "."] + [f":(exclude,literal){rel}" for rel in exclude]
    await git(worktree, "add", "--all", *pathspec)
    staged = await git(worktree, "diff", "--cached", "--quiet", check=False)
    if staged.code == 0:
        return False
    await git(worktree, "commit", "--quiet", "--no-verify", "-m", message, env=await identity_env(worktree))
    return True


async def is_dirty(worktree: str | Path, exclude: Sequence[str] = ()) -> bool:
    pathspec = ["--", "."] + [f":(exclude,literal){rel}" for rel in exclude]
    result = await git(worktree, "status", "--porcelain", *pathspec, check=False)
    return result.code == 0 and bool(result.out.strip())


async def summarize(repo: str, branch: str, base: str, base_commit: str) -> WorkSummary:
    """The branch's work since it left its base (the base branch's current head when it still
    exists, so merged work is not counted again)."""
    base_now = await git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{base}^{{commit}}", check=False)
    against = base_now.out.strip() if base_now.code == 0 else base_commit
    head = (await git(repo, "rev-parse", f"refs/heads/{branch}")).out.strip()
    fork = await git(repo, "merge-base", against, head, check=False)
    fork_point = fork.out.strip() if fork.code == 0 and fork.out.strip() else base_commit
    log_out = (await git(repo, "log", "--reverse", "--format=%h %s", f"{fork_point}..{head}")).out
    files = (await git(repo, "diff", "--name-only", fork_point, head)).out
    stat_out = (await git(repo, "diff", "--stat=100", fork_point, head)).out.rstrip()
    if len(stat_out) > DIFF_STAT_LIMIT:
        stat_out = stat_out[:DIFF_STAT_LIMIT] + "\n..."
    return WorkSummary(
        branch=branch, base=base, base_commit=fork_point, head=head,
        commits=[line for line in log_out.splitlines() if line], files=[f for f in files.splitlines() if f],
        diff_stat=stat_out,
    )  # fmt: skip


async def checkout_of(repo: str, branch: str) -> Optional[str]:
    """The worktree folder where `branch` is checked out, if any."""
    listing = (await git(repo, "worktree", "list", "--porcelain")).out
    folder = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            folder = line[len("worktree ") :]
        elif line == f"branch refs/heads/{branch}" and folder is not None:
            return folder
    return None


async def conflicts_between(repo: str, base: str, branch: str) -> Optional[list[str]]:
    """The files a merge of `branch` into `base` would conflict on, without touching any tree or
    ref (git merge-tree); None if this git cannot tell (older than 2.38)."""
    result = await git(
        repo,
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        f"refs/heads/{base}",
        f"refs/heads/{branch}",
        check=False,
    )
    if result.code == 0:
        return []
    if result.code == 1:
        lines = result.out.splitlines()
        return sorted(set(lines[1:])) if lines else []
    return None


async def merge(repo: str, branch: str, base: str, message: str) -> MergeOutcome:
    """Merge `branch` into the local branch `base`. A conflict changes nothing (the base's
    checkout, if any, is left as it was) and lists the files; a dirty base checkout is refused."""
    await _check_base_branch(repo, base)
    conflicts = await conflicts_between(repo, base, branch)
    if conflicts:
        return MergeOutcome(False, conflicts, message=f"merging {branch} into {base} conflicts in {len(conflicts)} file(s)")
    checkout = await checkout_of(repo, base)
    env = await identity_env(repo)
    if checkout is None:
        # Nobody has the base checked out: make the merge commit from the merged tree directly.
        tree = await git(repo, "merge-tree", "--write-tree", f"refs/heads/{base}", f"refs/heads/{branch}", check=False)
        if tree.code != 0:
            return MergeOutcome(False, conflicts or [], message=f"git merge-tree could not merge {branch} into {base}")
        old = (await git(repo, "rev-parse", f"refs/heads/{base}")).out.strip()
        new = (
            await git(repo, "commit-tree", tree.out.split()[0], "-p", old, "-p", f"refs/heads/{branch}", "-m", message, env=env)
        ).out.strip()
        await git(repo, "update-ref", "-m", message, f"refs/heads/{base}", new, old)
        return MergeOutcome(True, commit=new, message=f"merged {branch} into {base}")
    await _check_clean(checkout, base)
    result = await git(checkout, "merge", "--no-ff", "--no-edit", "-m", message, f"refs/heads/{branch}", env=env, check=False)
    if result.code != 0:
        unmerged = (await git(checkout, "diff", "--name-only", "--diff-filter=U", check=False)).out.split()
        await git(checkout, "merge", "--abort", check=False)
        reason = result.err.strip() or result.out.strip()
        return MergeOutcome(False, sorted(unmerged), message=f"git merge of {branch} into {base} failed and was undone: {reason}")
    head = (await git(checkout, "rev-parse", "HEAD")).out.strip()
    return MergeOutcome(True, commit=head, message=f"merged {branch} into {base}")


async def rebase(repo: str, worktree: str, branch: str, base: str) -> MergeOutcome:
    """Rebase `branch` (checked out in `worktree`) onto `base`, then fast-forward `base` to it.
    A conflict is undone (rebase --abort) and its files listed."""
    await _check_base_branch(repo, base)
    checkout = await checkout_of(repo, base)
    if checkout is not None:
        await _check_clean(checkout, base)
    result = await git(worktree, "rebase", "--quiet", f"refs/heads/{base}", env=await identity_env(repo), check=False)
    if result.code != 0:
        unmerged = (await git(worktree, "diff", "--name-only", "--diff-filter=U", check=False)).out.split()
        await git(worktree, "rebase", "--abort", check=False)
        return MergeOutcome(False, sorted(unmerged), message=f"rebasing {branch} onto {base} conflicts; it was undone")
    head = (await git(worktree, "rev-parse", "HEAD")).out.strip()
    if checkout is None:
        old = (await git(repo, "rev-parse", f"refs/heads/{base}")).out.strip()
        await git(repo, "update-ref", f"refs/heads/{base}", head, old)
    else:
        await git(checkout, "merge", "--ff-only", "--quiet", head)
    return MergeOutcome(True, commit=head, message=f"rebased {branch} onto {base} and fast-forwarded {base}")


async def _check_base_branch(repo: str, base: str) -> None:
    found = await git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{base}", check=False)
    if found.code != 0:
        raise WorktreeError(
            f"the base '{base}' is not a local branch (a commit or tag): merge the worker's branch yourself",
            reason="unknownBaseRef",
        )


async def _check_clean(checkout: str, base: str) -> None:
    status = await git(checkout, "status", "--porcelain", "--untracked-files=no")
    if status.out.strip():
        files = [line[3:] for line in status.out.splitlines()][:20]
        raise WorktreeError(
            f"the base '{base}' checked out in {checkout} has uncommitted changes ({', '.join(files)}): "
            "commit or stash them, then merge again",
            reason="dirtyBase",
            files=files,
        )


async def remove_worktree(repo: str, path: str, branch: str, *, force_branch: bool) -> None:
    """Remove the worktree folder and its branch (`force_branch`: even if it is not merged)."""
    if await asyncio.to_thread(os.path.isdir, path):
        await git(repo, "worktree", "remove", "--force", "--force", path, check=False)
        if await asyncio.to_thread(os.path.isdir, path):
            await asyncio.to_thread(shutil.rmtree, path, True)
    await git(repo, "worktree", "prune", check=False)
    await git(repo, "branch", "-D" if force_branch else "-d", "--", branch, check=False)
