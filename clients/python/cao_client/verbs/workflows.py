"""`cao-sidecar workflow list|check|run|resume|runs|show|follow`: workflow runs from a terminal.

`run` and `resume` print each step as it moves on stderr (from the cao/workflowRun notifications)
and the run's output on stdout; exit 0 when the run completed, 1 when it failed or was cut off
(`resume RUN` goes on from where it stopped)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Optional

from cao_client.verbs.session import USAGE, Team, VerbFailed

FINAL = ("completed", "failed", "interrupted")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "workflow", help="workflows: multi-step team runs that survive a crash (list, run, resume, runs, show, follow, cancel)"
    )
    verbs = p.add_subparsers(dest="workflow_command", required=True)
    q = verbs.add_parser("list", help="the workflows of this project and of your config dir")
    q.add_argument("--json", action="store_true")
    q = verbs.add_parser("check", help="check workflow files (syntax, shape) without running them")
    q.add_argument("files", nargs="*", type=Path, help="default: every workflow of the project")
    q = verbs.add_parser("run", help="run a workflow, print each step and its output")
    q.add_argument("name")
    q.add_argument(
        "--input", "-i", action="append", default=[], metavar="NAME=VALUE", help="an input of the workflow (repeatable)"
    )
    q.add_argument("--no-wait", action="store_true", help="print the run's id and return at once")
    q.add_argument("--json", action="store_true", help="print the run (WorkflowRunInfo) as JSON at the end")
    q = verbs.add_parser("resume", help="go on with a run whose script or sidecar died (finished steps are not run again)")
    q.add_argument("run_id", metavar="RUN")
    q.add_argument("--force", action="store_true", help="even though the script changed since the run started")
    q.add_argument("--no-wait", action="store_true")
    q.add_argument("--json", action="store_true")
    q = verbs.add_parser("runs", help="the latest runs")
    q.add_argument("--limit", type=int, default=20)
    q.add_argument("--json", action="store_true")
    q = verbs.add_parser("show", help="one run: its steps, their workers and answers")
    q.add_argument("run_id", metavar="RUN")
    q.add_argument("--json", action="store_true")
    q = verbs.add_parser("follow", help="print a run's steps as they move on, until it ends")
    q.add_argument("run_id", metavar="RUN")
    q = verbs.add_parser("cancel", help="stop a run for good: its script and its steps' workers")
    q.add_argument("run_id", metavar="RUN")
    return p


def parse_inputs(pairs: list[str]) -> dict[str, str]:
    inputs: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise VerbFailed(f"--input {pair!r}: give NAME=VALUE", USAGE)
        inputs[name.strip()] = value
    return inputs


def check_files(args: argparse.Namespace) -> int:
    """Offline: no team needed, nothing imported or run (cao_sidecar.workflows.catalog)."""
    from cao_sidecar.workflows.catalog import check_file, list_workflows

    files = list(args.files) or [w.path for w in list_workflows((args.project or Path.cwd()).resolve())]
    bad = 0
    for path in files:
        _description, problems = check_file(path)
        for problem in problems:
            print(f"{path}: {problem}")
        bad += bool(problems)
    if not files:
        print("no workflows found (.cao/workflows/ of the project, or workflows/ in your config dir)", file=sys.stderr)
    return 1 if bad else 0


def _line(text: Optional[str], size: int = 100) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= size else text[: size - 1] + "…"


class Progress:
    """Prints what changed in a run (steps that moved on, the run's end) as lines."""

    def __init__(self, run_id: Optional[str] = None, name: Optional[str] = None) -> None:
        self.run_id = run_id
        self.name = name  # `run`: the first run of this workflow seen is ours
        self.seen: dict[int, tuple[str, Optional[str]]] = {}
        self.ended = asyncio.Event()
        self.last: Optional[dict[str, Any]] = None

    def on_notification(self, method: str, params: Any) -> None:
        if method != "cao/workflowRun" or not isinstance(params, dict):
            return
        if self.run_id is None and params.get("name") == self.name:
            self.run_id = params.get("runId")
        if params.get("runId") == self.run_id:
            self.show(params)

    def show(self, run: dict[str, Any]) -> None:
        self.last = run
        for step in run.get("steps", []):
            state = (step["status"], step.get("terminalId"))
            if self.seen.get(step["key"]) == state:
                continue
            self.seen[step["key"]] = state
            detail = {
                "pending": "journaled",
                "sent": f"sent to {step.get('terminalId')}",
                "completed": f"answered: {_line(step.get('answer'))}",
                "failed": f"failed: {_line(step.get('error'))}",
            }[step["status"]]
            print(f"[{run['runId']}] step {step['key']} {step['profile']}: {detail}", file=sys.stderr, flush=True)
        if run["status"] in FINAL:
            self.ended.set()


def _show(run: dict[str, Any]) -> str:
    lines = [
        f"run {run['runId']}  {run['name']}  {run['status']}  started {run['startedAt']}"
        + (f"  ended {run['endedAt']}" if run.get("endedAt") else "")
    ]
    if run.get("inputs"):
        lines.append("inputs: " + ", ".join(f"{k}={v}" for k, v in run["inputs"].items()))
    for step in run.get("steps", []):
        what = step.get("answer") if step["status"] == "completed" else step.get("error") or ""
        lines.append(
            f"  {step['key']:>3}  {step['profile']:<20} {step['status']:<9} {step.get('terminalId') or '-':<10} {_line(what, 70)}"
        )
    if run.get("error"):
        lines.append(f"error: {run['error']}")
    if run["status"] == "completed":
        output = run.get("output")
        lines.append("output: " + (output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)))
    return "\n".join(lines)


def _finish(team: Team, run: dict[str, Any]) -> int:
    if team.args.json:
        print(json.dumps(run, ensure_ascii=False))
    elif run["status"] == "completed":
        output = run.get("output")
        print(output if isinstance(output, str) else json.dumps(output, ensure_ascii=False))
    if run["status"] != "completed":
        hint = f"; `cao-sidecar workflow resume {run['runId']}` goes on" if run["status"] == "interrupted" else ""
        raise VerbFailed(f"run {run['runId']} {run['status']}: {run.get('error') or ''}{hint}".rstrip(": "))
    return 0


async def workflow(team: Team) -> int:
    args = team.args
    client = team.client
    assert client is not None
    command = args.workflow_command
    if command == "list":
        listed = (await client.request("cao/listWorkflows", {}))["workflows"]
        if args.json:
            print(json.dumps(listed, ensure_ascii=False))
        for w in [] if args.json else listed:
            flag = " (untrusted folder: does not run)" if w["untrusted"] else (" (has problems)" if w["problems"] else "")
            print(f"{w['name']:<24} {w['kind']:<7} {w['scope']:<10} {w['description']}{flag}")
        if not listed and not args.json:
            print("no workflows (put one in .cao/workflows/ of the project, or workflows/ in your config dir)", file=sys.stderr)
        return 0
    if command == "runs":
        runs = (await client.request("cao/listWorkflowRuns", {"limit": max(1, args.limit)}))["runs"]
        if args.json:
            print(json.dumps(runs, ensure_ascii=False))
            return 0
        for run in runs:
            done = sum(1 for s in run["steps"] if s["status"] == "completed")
            print(f"{run['runId']}  {run['name']:<20} {run['status']:<11} {done}/{len(run['steps'])} steps  {run['startedAt']}")
        return 0
    if command == "cancel":
        run = (await client.request("cao/cancelWorkflow", {"runId": args.run_id}))["run"]
        print(f"run {run['runId']} cancelled", file=sys.stderr)
        return 0
    if command == "show":
        run = (await client.request("cao/getWorkflowRun", {"runId": args.run_id}))["run"]
        print(json.dumps(run, ensure_ascii=False) if args.json else _show(run))
        return 0
    progress = Progress(None, args.name) if command == "run" else Progress(args.run_id)
    team.on_notification(progress.on_notification)
    if command == "follow":
        run = (await client.request("cao/getWorkflowRun", {"runId": args.run_id}))["run"]
        progress.show(run)
        while not progress.ended.is_set():  # notifications, with a look now and then (one may be missed on a restart)
            try:
                await asyncio.wait_for(progress.ended.wait(), 5.0)
            except asyncio.TimeoutError:
                progress.show((await client.request("cao/getWorkflowRun", {"runId": args.run_id}))["run"])
        assert progress.last is not None
        print(_show(progress.last))
        return 0 if progress.last["status"] == "completed" else 1
    if command == "run":
        params: dict[str, Any] = {"name": args.name, "inputs": parse_inputs(args.input), "wait": not args.no_wait}
        started = client.request("cao/runWorkflow", params)
    else:
        started = client.request("cao/resumeWorkflow", {"runId": args.run_id, "force": args.force, "wait": not args.no_wait})
    run = (await started)["run"]
    if args.no_wait:
        print(run["runId"])
        return 0
    progress.show(run)
    return _finish(team, run)
