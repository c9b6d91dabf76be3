"""One flow: a scheduled task. Markdown with YAML frontmatter; the body is the task.

    ---
    name: nightly-review
    schedule: "0 2 * * *"          # 5-field cron, local time (or @hourly, @daily, ...)
    profile: reviewer
    gate:                          # optional: decides at run time, may fill {{placeholders}}
      command: ["python3", "scripts/changes.py"]
    ---
    Review these changes: {{commits}}

See docs/flows.md. Nothing in a flow file makes the sidecar run a command other than its
declared gate: the gate is an argv list run without a shell, or an explicit `shell:` script.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Optional

import attrs

from cao_sidecar.profiles.files import (
    CONTROL,
    Checker,
    Diagnostic,
    Frontmatter,
    checked_working_directory,
    show,
    suggest,
    yaml_type,
)
from cao_sidecar.profiles.profile import known_providers

KNOWN_FIELDS = (
    "name",
    "description",
    "schedule",
    "profile",
    "provider",
    "workingDirectory",
    "enabled",
    "gate",
    "timeoutSeconds",
    "keep",
    "worktree",
    "agent_profile",  # CAO's name for 'profile'
    "workflow",  # run this workflow (docs/workflows.md) instead of one task; the body is ignored
    "inputs",  # the workflow's inputs (name: value; {{placeholders}} filled by the gate)
)
ALIASES = {"cron": "schedule", "agent": "profile", "cwd": "workingDirectory", "timeout": "timeoutSeconds"}
SCHEDULE_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
SCHEDULE_CHARS = re.compile(r"\A[0-9A-Za-z*/,\- ]+\Z")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
DEFAULT_TIMEOUT = 3600.0
DEFAULT_GATE_TIMEOUT = 60.0


@attrs.define(frozen=True)
class Gate:
    argv: tuple[str, ...]  # for a shell gate: ("/bin/sh", "-c", script)
    shell: bool = False
    timeout: float = DEFAULT_GATE_TIMEOUT


@attrs.define
class Flow:
    name: str
    schedule: str
    profile: str
    task: str
    path: Path
    scope: str  # workspace | user
    description: str = ""
    provider: Optional[str] = None
    working_directory: Optional[str] = None  # absolute; None: the sidecar's workspace root
    enabled: bool = True
    gate: Optional[Gate] = None
    timeout: float = DEFAULT_TIMEOUT
    keep: bool = False
    worktree: Optional[bool] = None  # the worker's own git worktree; None: its profile decides
    profile_line: int = attrs.field(default=1, eq=False)  # where 'profile' is, for diagnostics
    workflow: Optional[str] = None  # a workflow to run instead of a task (profile is "workflow:NAME")
    inputs: dict[str, str] = attrs.Factory(dict)  # the workflow's inputs

    @property
    def placeholders(self) -> list[str]:
        return sorted(set(PLACEHOLDER.findall(self.task)))


def check_schedule(value: str) -> Optional[str]:
    """None if `value` is a usable schedule, else what is wrong with it."""
    if CONTROL.search(value):
        return "the schedule must not contain newlines or control characters"
    text = " ".join(value.split())
    if text.startswith("@"):
        if text in SCHEDULE_ALIASES:
            return None
        return f"unknown schedule {show(text)}; use 5 cron fields or one of {', '.join(SCHEDULE_ALIASES)}"
    if not SCHEDULE_CHARS.match(text):
        return f"the schedule {show(text)} has characters cron does not use"
    fields = text.split(" ")
    if len(fields) != 5:
        return f"the schedule must have 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}: {show(text)}"
    from croniter import croniter  # ~10 ms of imports: only a project with cron flows pays them

    try:
        if not croniter.is_valid(text):
            return f"{show(text)} is not a valid cron expression"
        croniter(text)
    except Exception as exc:  # noqa: BLE001 - croniter raises several kinds
        return f"{show(text)} is not a valid cron expression: {exc}"
    return None


def check_flow(
    fm: Frontmatter,
    *,
    path: Path,
    scope: str,
    base_dir: Optional[Path],
    providers: Optional[list[str]] = None,
) -> tuple[Optional[Flow], list[Diagnostic]]:
    c = Checker(fm)
    f = fm.fields
    name = c.name("name")
    schedule = c.string("schedule", required=True, max_len=200)
    if schedule is not None:
        problem = check_schedule(schedule)
        if problem:
            c.error(problem, "schedule")
            schedule = None
        else:
            schedule = " ".join(schedule.split())
    profile_key = "agent_profile" if "profile" not in f and "agent_profile" in f else "profile"
    workflow, inputs = _workflow(c, f)
    profile = f"workflow:{workflow}" if workflow is not None else c.name(profile_key)
    if profile_key == "profile" and "agent_profile" in f:
        c.warning("'agent_profile' (CAO's name for 'profile') is ignored: 'profile' is given", "agent_profile")
    provider = c.name("provider", required=False)
    if provider is not None:
        known = known_providers() if providers is None else providers
        if known and provider not in known:
            c.warning(
                f"provider '{provider}' is not available in this sidecar{suggest(provider, known)} "
                f"(available: {', '.join(known)}); runs fail until it is",
                "provider",
            )
    description = c.string("description", fold=True, max_len=1000) or ""
    working_directory = _working_directory(c, base_dir)
    enabled = c.boolean("enabled", True)
    keep = c.boolean("keep", False)
    worktree = c.boolean("worktree", None)  # type: ignore[arg-type]
    timeout = c.number("timeoutSeconds", DEFAULT_TIMEOUT, minimum=1, maximum=7 * 24 * 3600)
    gate = _gate(c, f.get("gate")) if "gate" in f else None
    c.unknown_fields(KNOWN_FIELDS, ALIASES)
    task = fm.body.strip()
    if workflow is not None:
        task = task or f"workflow {workflow}"
    if not task:
        c.error("the body (the task the agent gets) is empty", line=fm.end_line)
    first = PLACEHOLDER.search(fm.body)
    if first is not None and "gate" not in f:
        c.warning(
            f"placeholder {first.group(0)} is never filled: only a gate's output fills placeholders",
            line=fm.body_line + fm.body.count("\n", 0, first.start()),
        )
    if c.failed or None in (name, schedule, profile):
        return None, c.diagnostics
    return (
        Flow(
            name=name,  # type: ignore[arg-type]
            schedule=schedule,  # type: ignore[arg-type]
            profile=profile,  # type: ignore[arg-type]
            task=task,
            path=path,
            scope=scope,
            description=description,
            provider=provider,
            working_directory=working_directory,
            enabled=enabled,
            gate=gate,
            timeout=timeout,
            keep=keep,
            worktree=worktree,
            profile_line=fm.where(profile_key)[0],
            workflow=workflow,
            inputs=inputs,
        ),
        c.diagnostics,
    )


def _workflow(c: Checker, f: dict) -> tuple[Optional[str], dict[str, str]]:
    """`workflow: NAME` and its `inputs:` (a mapping of strings), if the flow runs a workflow."""
    if "workflow" not in f:
        if "inputs" in f:
            c.warning("'inputs' is for a flow with 'workflow'; ignored", "inputs")
        return None, {}
    workflow = c.name("workflow")
    if "profile" in f:
        c.warning("'profile' is ignored: the flow runs workflow steps, each with its own profile", "profile")
    raw = f.get("inputs") or {}
    if not isinstance(raw, dict) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in raw.values()):
        c.error(f"'inputs' must be a mapping of name: value, got {yaml_type(raw)}", "inputs")
        return workflow, {}
    return workflow, {str(k): str(v) for k, v in raw.items()}


def _working_directory(c: Checker, base_dir: Optional[Path]) -> Optional[str]:
    default = str(base_dir) if base_dir is not None else None
    return checked_working_directory(c, base_dir, "runs fail", default)


def _gate(c: Checker, value: object) -> Optional[Gate]:
    key = "gate"
    timeout = DEFAULT_GATE_TIMEOUT
    shell = False
    if isinstance(value, dict):
        unknown = set(map(str, value)) - {"command", "shell", "timeoutSeconds"}
        for extra in sorted(unknown):
            c.warning(
                f"'gate': unknown setting '{extra}' is ignored{suggest(extra, ['command', 'shell', 'timeoutSeconds'])}", key
            )
        if ("command" in value) == ("shell" in value):
            c.error(
                "'gate' needs exactly one of 'command' (a program and its arguments, no shell) or 'shell' (a script for /bin/sh)",
                key,
            )
            return None
        t = value.get("timeoutSeconds", DEFAULT_GATE_TIMEOUT)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 1 <= t <= 3600:
            c.error("'gate.timeoutSeconds' must be a number between 1 and 3600", key)
            return None
        timeout = float(t)
        if "shell" in value:
            script = value["shell"]
            if not isinstance(script, str) or not script.strip():
                c.error(f"'gate.shell' must be a non-empty string, got {yaml_type(script)}", key)
                return None
            if CONTROL.search(script):
                c.error("'gate.shell' must be one line without control characters (join commands with ';' or '&&')", key)
                return None
            return Gate(("/bin/sh", "-c", script), shell=True, timeout=timeout)
        value = value["command"]
    if isinstance(value, str):
        if CONTROL.search(value):
            c.error("'gate' must not contain newlines or control characters", key)
            return None
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            c.error(f"'gate': cannot split the command into words: {exc}", key)
            return None
    elif isinstance(value, list):
        if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value):
            c.error("'gate' must be a list of strings (the program and its arguments)", key)
            return None
        argv = [str(a) for a in value]
        if any(CONTROL.search(a) for a in argv):
            c.error("'gate' arguments must not contain newlines or control characters", key)
            return None
    else:
        c.error(
            f"'gate' must be a command (a list, a string, or a mapping with 'command' or 'shell'), got {yaml_type(value)}", key
        )
        return None
    if not argv or not argv[0]:
        c.error("'gate' names no program", key)
        return None
    return Gate(tuple(argv), shell=shell, timeout=timeout)


def fill_placeholders(task: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """Replace {{name}} in one pass (a value is never expanded again). Returns (text, missing)."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        missing.append(key)
        return match.group(0)

    return PLACEHOLDER.sub(replace, task), sorted(set(missing))
