"""What a workflow script is written against: `step` (a handoff to a new worker of a profile,
journaled by the sidecar) and `inputs`.

    import asyncio
    from cao_client.workflow import step

    async def main(topic: str):
        plan = await step("developer", f"plan {topic}")
        review, tests = await asyncio.gather(
            step("reviewer", f"review this plan: {plan}"),
            step("tester", f"write the tests for: {plan}"),
        )
        return await step("developer", f"do it, with {review} and {tests}")

The sidecar runs the script (`cao-sidecar workflow run NAME --input topic=...`); `main`'s keyword
arguments are the run's inputs, its return value is the run's output. Every step is journaled
before it is sent and when it answers: if the script or the sidecar dies, `cao-sidecar workflow
resume RUN` runs the script again and each step that had finished answers from the journal at
once (one still working is waited for), so no step runs twice. Steps are told apart by the order
of the `step(...)` calls, so the script must call them in the same order on every run (plain
code, `asyncio.gather` for fan-out: fine; order that depends on timing or randomness: not).
"""

from __future__ import annotations

import itertools
from typing import Any, Awaitable, Optional

from cao_client.client import CaoClient, CaoError


class StepFailed(CaoError):
    """A step's worker failed (an error, a timeout, it exited), or the step was refused."""


class Answer(str):
    """A step's answer (a str), with the worker that gave it: `merge(answer)` merges its branch."""

    terminal_id: str = ""
    replayed: bool = False  # answered from the journal (the step had finished before a resume)


class _Run:
    def __init__(self, client: CaoClient, run_id: str, inputs: dict[str, str]) -> None:
        self.client = client
        self.run_id = run_id
        self.inputs = dict(inputs)
        self._keys = itertools.count()

    def next_key(self) -> int:
        return next(self._keys)

    async def step(self, key: int, profile: str, task: str, worktree: bool, timeout: Optional[float]) -> "Answer":
        params: dict[str, Any] = {"runId": self.run_id, "key": key, "profile": profile, "task": task}
        if worktree:
            params["worktree"] = True
        if timeout is not None:
            params["timeoutSeconds"] = timeout
        try:
            result = await self.client.request("cao/workflowStep", params)
        except CaoError as exc:
            raise StepFailed(exc.code, f"step {key} ({profile}): {exc.message}", exc.data) from None
        answer = Answer(result["answer"])
        answer.terminal_id, answer.replayed = str(result["terminalId"]), bool(result["replayed"])
        return answer


_current: Optional[_Run] = None


def _run() -> _Run:
    if _current is None:
        raise RuntimeError("step() works inside a workflow run: start it with `cao-sidecar workflow run NAME`")
    return _current


def bind(client: CaoClient, run_id: str, inputs: dict[str, str]) -> None:
    """Used by the sidecar's runner (cao_sidecar.workflows.runner), not by scripts."""
    global _current
    _current = _Run(client, run_id, inputs)


def step(profile: str, task: str, *, worktree: bool = False, timeout: Optional[float] = None) -> Awaitable[Answer]:
    """Hand `task` to a new worker of `profile` and return its answer (awaitable). The step's
    place in the journal is taken when it is called, so `asyncio.gather(step(a), step(b))`
    journals a before b. `worktree`: the worker works in a git worktree of its own (its branch is
    kept). `timeout`: seconds the worker may take (default: the sidecar's assign timeout)."""
    run = _run()
    return run.step(run.next_key(), profile, task, worktree, timeout)


def inputs() -> dict[str, str]:
    """The run's inputs (`--input k=v`, or from the editor)."""
    return dict(_run().inputs)


def run_id() -> str:
    return _run().run_id


async def merge(answer: Answer, strategy: str = "merge") -> Optional[dict[str, Any]]:
    """Merge the branch of the worker that gave `answer` (a step with `worktree=True`) into its
    base (cao/mergeWorktree). Returns its MergeWorktreeResult (`merged` false and `conflicts` on a
    conflict: nothing changed), or None when there is nothing left to merge (merged before a
    resume, or the worker changed nothing)."""
    if not answer.terminal_id:
        raise ValueError("merge() takes a step's answer")
    try:
        return await _run().client.request("cao/mergeWorktree", {"terminalId": answer.terminal_id, "strategy": strategy})
    except CaoError as exc:
        if isinstance(exc.data, dict) and exc.data.get("reason") == "noWorktree":
            return None
        raise
