"""Figures for worker worktrees on a repository of 10,000 files (median of N). Not a test.

    python bench/bench_worktree.py [N] [FILES]

Measures the git work a worker's worktree costs, through the sidecar's own code
(core.worktrees, asyncio subprocesses): making one (branch + checkout), summarising a worker's
work after it edited a few files (commit of its leftovers included), and removing it; then three
made at once (one repository lock: they queue).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cao_sidecar.core import worktrees as gitops

ENV = {**os.environ, **gitops.FALLBACK_IDENTITY}


def make_repo(root: Path, files: int) -> Path:
    repo = root / "repo"
    for i in range(files):
        path = repo / f"pkg{i % 100:02d}" / f"module_{i:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# module {i}\nVALUE = {i}\n")
    subprocess.run(["git", "init", "-q", "--initial-branch=main"], cwd=repo, check=True)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "start"], cwd=repo, check=True, env=ENV)
    return repo


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms  min {min(values) * 1000:7.1f}  max {max(values) * 1000:7.1f}"


async def main(rounds: int, files: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="cao-bench-wt-"))
    try:
        started = time.perf_counter()
        repo = str(make_repo(root, files))
        print(f"repository: {files} files, made in {time.perf_counter() - started:.1f} s ({root})")
        _base, base_commit = await gitops.resolve_base(repo, None)
        create, summary, remove, baseline = [], [], [], []
        for n in range(rounds):
            # The same checkout by git alone, for comparison (the machine's own cost).
            t0 = time.perf_counter()
            subprocess.run(["git", "worktree", "add", "-q", "-b", f"plain-{n}", str(root / f"plain{n}"), base_commit],
                           cwd=repo, check=True)  # fmt: skip
            baseline.append(time.perf_counter() - t0)
            await gitops.remove_worktree(repo, str(root / f"plain{n}"), f"plain-{n}", force_branch=True)
            path = root / "worktrees" / f"w{n}"
            t0 = time.perf_counter()
            await gitops.add_worktree(repo, path, f"cao/bench-{n}", base_commit)
            t1 = time.perf_counter()
            for i in range(3):
                (path / f"pkg0{i}" / f"module_0000{i}.py").write_text(f"# edited by worker {n}\n")
            await gitops.commit_leftovers(path, "worker leftovers", [])
            work = await gitops.summarize(repo, f"cao/bench-{n}", "main", base_commit)
            t2 = time.perf_counter()
            await gitops.remove_worktree(repo, str(path), f"cao/bench-{n}", force_branch=True)
            t3 = time.perf_counter()
            assert len(work.files) == 3, work.files
            create.append(t1 - t0)
            summary.append(t2 - t1)
            remove.append(t3 - t2)
        print(f"git worktree add alone ({rounds}x): {ms(baseline)}")
        print(f"create worktree ({rounds}x):        {ms(create)}")
        print(f"commit leftovers + summary:      {ms(summary)}")
        print(f"remove worktree + branch:        {ms(remove)}")
        parallel = []
        for n in range(max(1, rounds // 3)):
            t0 = time.perf_counter()
            lock = asyncio.Lock()  # as the manager does: one git change per repository at a time

            async def one(k: int) -> None:
                async with lock:
                    await gitops.add_worktree(repo, root / "par" / f"{n}-{k}", f"cao/par-{n}-{k}", base_commit)

            await asyncio.gather(*(one(k) for k in range(3)))
            parallel.append(time.perf_counter() - t0)
            for k in range(3):
                await gitops.remove_worktree(repo, str(root / "par" / f"{n}-{k}"), f"cao/par-{n}-{k}", force_branch=True)
        print(f"three workers' worktrees at once: {ms(parallel)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, int(sys.argv[2]) if len(sys.argv) > 2 else 10_000))
