"""The workflows the sidecar knows, and their checks.

A workflow is a Python script (`NAME.py`, with a `main` function; see cao_client.workflow) or a
short YAML file (`NAME.yaml` / `NAME.yml`: a plain sequence of steps) in a workspace folder's
`.cao/workflows/` or in the user's config dir (`<config>/cao-sidecar/workflows/`). The workspace
shadows the user's dir. A workspace workflow is code from the repository: it is listed always,
but runs only when the user trusts the folder (cao_sidecar.trust).

Checks never import or run a script: Python is parsed with `ast` (syntax, a top-level `main`),
YAML is loaded with safe_load and its shape checked here.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path
from typing import Any, Optional

import attrs
import yaml

from cao_sidecar import paths, trust
from cao_sidecar.core.errors import CaoError, InvalidRequest

SUFFIXES = {".py": "python", ".yaml": "yaml", ".yml": "yaml"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_BYTES = 1024 * 1024
YAML_KEYS = {"description", "inputs", "steps"}
STEP_KEYS = {"profile", "task", "worktree", "timeout"}


@attrs.define(frozen=True)
class Workflow:
    name: str
    path: Path
    kind: str  # "python" | "yaml"
    scope: str  # "workspace" | "user"
    trusted: bool
    description: str = ""
    problems: tuple[str, ...] = ()


def user_workflows_dir() -> Path:
    return paths.config_dir() / "workflows"


def workspace_workflows_dir(folder: Path) -> Path:
    return folder / ".cao" / "workflows"


def script_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def workflow_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file() and NAME.match(p.stem))
    except OSError:
        return []


def list_workflows(project: Path) -> list[Workflow]:
    """Every workflow, the workspace's first; a name shadowed by the workspace is left out."""
    found: dict[str, Workflow] = {}
    folder_trusted = trust.decide(project).trusted
    for scope, directory, trusted in (
        ("workspace", workspace_workflows_dir(project), folder_trusted),
        ("user", user_workflows_dir(), True),
    ):
        for path in workflow_files(directory):
            if path.stem in found:
                continue
            description, problems = check_file(path)
            found[path.stem] = Workflow(path.stem, path, SUFFIXES[path.suffix], scope, trusted, description, tuple(problems))
    return list(found.values())


def find(project: Path, name: str) -> Workflow:
    """The workflow `name`, ready to run: known, trusted, and without problems; else a CaoError."""
    if not NAME.match(name):
        raise InvalidRequest(f"not a workflow name: {name!r}", field="name")
    for workflow in list_workflows(project):
        if workflow.name != name:
            continue
        if not workflow.trusted:
            raise CaoError(
                f"workflow '{name}' is in {workflow.path.parent}, a folder you have not trusted: its scripts do not run. "
                f"{trust.how_to_trust(project)}"
            )
        if workflow.problems:
            raise InvalidRequest(f"workflow '{name}' has problems: " + "; ".join(workflow.problems), field="name")
        return workflow
    raise CaoError(
        f"no workflow '{name}' (looked in {workspace_workflows_dir(project)} and {user_workflows_dir()}); "
        "`cao-sidecar workflow list` shows them"
    )


# ---- checks (never imports or runs anything) ----------------------------------------------------


def check_file(path: Path) -> tuple[str, list[str]]:
    """(description, problems) of a workflow file; problems are `line N: message`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return "", [f"cannot read it: {exc.strerror or exc}"]
    if len(data) > MAX_BYTES:
        return "", [f"larger than {MAX_BYTES} bytes"]
    text = data.decode("utf-8", "replace")
    return check_python(text) if path.suffix == ".py" else check_yaml(text)


def check_python(text: str) -> tuple[str, list[str]]:
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        return "", [f"line {exc.lineno or 1}: syntax error: {exc.msg}"]
    description = (ast.get_docstring(tree) or "").strip().splitlines()
    mains = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "main"]
    problems = [] if mains else ["line 1: no top-level `main` function (async def main(...): ... return the run's output)"]
    return (description[0] if description else ""), problems


def check_yaml(text: str) -> tuple[str, list[str]]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return "", [f"line {(mark.line + 1) if mark else 1}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]
    spec, problems = parse_yaml(doc)
    return (spec.get("description", "") if spec else ""), problems


def parse_yaml(doc: Any) -> tuple[Optional[dict[str, Any]], list[str]]:
    """A YAML workflow as {description, inputs: {name: default|None}, steps: [[step, ...], ...]}
    (each inner list runs at once: a `parallel:` group), or the problems that stop it."""
    if not isinstance(doc, dict):
        return None, ["the file must be a mapping with `steps:`"]
    problems = [f"unknown key `{k}` (known: {', '.join(sorted(YAML_KEYS))})" for k in doc if k not in YAML_KEYS]
    description = doc.get("description", "")
    if not isinstance(description, str):
        problems.append("`description` must be a string")
    inputs: dict[str, Optional[str]] = {}
    raw_inputs = doc.get("inputs") or {}
    if isinstance(raw_inputs, list) and all(isinstance(i, str) for i in raw_inputs):
        inputs = dict.fromkeys(raw_inputs)
    elif isinstance(raw_inputs, dict) and all(
        isinstance(k, str) and (v is None or isinstance(v, (str, int, float))) for k, v in raw_inputs.items()
    ):
        inputs = {k: (None if v is None else str(v)) for k, v in raw_inputs.items()}
    else:
        problems.append("`inputs` must be a list of names or a mapping of name: default")
    steps = doc.get("steps")
    groups: list[list[dict[str, Any]]] = []
    if not isinstance(steps, list) or not steps:
        problems.append("`steps` must be a non-empty list")
        steps = []
    known = set(inputs) | {"previous"}
    for n, item in enumerate(steps, 1):
        members = item.get("parallel") if isinstance(item, dict) and set(item) == {"parallel"} else [item]
        if not isinstance(members, list) or not members:
            problems.append(f"step {n}: `parallel` must be a non-empty list of steps")
            continue
        group = []
        for member in members:
            step, step_problems = _parse_step(member, n, known)
            problems += step_problems
            if step is not None:
                group.append(step)
        groups.append(group)
    if problems:
        return None, problems
    return {"description": description, "inputs": inputs, "steps": groups}, []


def _parse_step(item: Any, n: int, known: set[str]) -> tuple[Optional[dict[str, Any]], list[str]]:
    if not isinstance(item, dict):
        return None, [f"step {n}: must be a mapping with `profile` and `task` (or `parallel:`)"]
    problems = [
        f"step {n}: unknown key `{k}` (known: {', '.join(sorted(STEP_KEYS))}, or `parallel`)" for k in item if k not in STEP_KEYS
    ]
    profile, task = item.get("profile"), item.get("task")
    if not isinstance(profile, str) or not profile:
        problems.append(f"step {n}: `profile` must be a profile's name")
    if not isinstance(task, str) or not task.strip():
        problems.append(f"step {n}: `task` must be non-empty text")
    else:
        problems += [
            f"step {n}: `{{{name}}}` is neither an input nor `previous`"
            for name in PLACEHOLDER.findall(task)
            if name not in known
        ]
    if not isinstance(item.get("worktree", False), bool):
        problems.append(f"step {n}: `worktree` must be true or false")
    timeout = item.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0):
        problems.append(f"step {n}: `timeout` must be a positive number of seconds")
    return (item if not problems else None), problems


def fill(task: str, values: dict[str, str]) -> str:
    """`{name}` placeholders replaced by input values or the previous answer (nothing else: no
    attribute access, no format specs)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), task)
