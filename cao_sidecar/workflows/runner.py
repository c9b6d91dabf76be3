"""The process that runs one workflow script: `python -m cao_sidecar.workflows.runner RUN PATH
RESULT PROJECT INPUTS_JSON`, started by the sidecar (cao_sidecar.workflows.engine).

It joins the project's team as a script client (cao_client), binds `cao_client.workflow.step`
to the run, runs the script's `main` (Python) or the YAML file's steps, and writes the outcome
to RESULT as JSON (`{"output": ...}` or `{"error": "..."}`). Exit codes: 0 done, 1 the script
failed, 75 the connection to the sidecar was lost (the sidecar resumes the run when it is back).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

LOST = 75


class ScriptError(Exception):
    """The script cannot run as written (no main, inputs it does not take, ...)."""


async def _python(path: Path, inputs: dict[str, str]) -> Any:
    sys.path.insert(0, str(path.parent))  # a script may import its neighbours
    namespace = runpy.run_path(str(path), run_name="__cao_workflow__")
    main = namespace.get("main")
    if not callable(main):
        raise ScriptError("the script has no `main` function")
    params = inspect.signature(main).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        takes = {p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
        unknown = sorted(set(inputs) - takes)
        if unknown:
            raise ScriptError(f"unknown input(s) {', '.join(unknown)}; main takes: {', '.join(sorted(takes)) or 'none'}")
        missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name in takes and p.name not in inputs]
        if missing:
            raise ScriptError(f"missing input(s) {', '.join(missing)} (give them with --input NAME=VALUE)")
    result = main(**inputs)
    return await result if inspect.isawaitable(result) else result


async def _yaml(path: Path, inputs: dict[str, str]) -> Any:
    import yaml

    from cao_client.workflow import step
    from cao_sidecar.workflows.catalog import fill, parse_yaml

    spec, problems = parse_yaml(yaml.safe_load(_read(path)))
    if spec is None:
        raise ScriptError("; ".join(problems))
    values = {k: v for k, v in spec["inputs"].items() if v is not None}
    unknown = sorted(set(inputs) - set(spec["inputs"]))
    if unknown:
        raise ScriptError(f"unknown input(s) {', '.join(unknown)}; the workflow takes: {', '.join(spec['inputs']) or 'none'}")
    values.update(inputs)
    missing = [k for k in spec["inputs"] if k not in values]
    if missing:
        raise ScriptError(f"missing input(s) {', '.join(missing)} (give them with --input NAME=VALUE)")
    previous = ""
    for group in spec["steps"]:
        here = {**values, "previous": previous}
        answers = await asyncio.gather(
            *(
                step(s["profile"], fill(s["task"], here), worktree=bool(s.get("worktree")), timeout=s.get("timeout"))
                for s in group
            )
        )
        previous = "\n\n".join(answers)
    return previous


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _write_result(path: Path, outcome: dict[str, Any]) -> None:
    try:
        text = json.dumps(outcome, ensure_ascii=False)
    except (TypeError, ValueError):
        text = json.dumps({"output": str(outcome.get("output"))}, ensure_ascii=False)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


async def _run(run_id: str, script: Path, result: Path, project: Path, inputs: dict[str, str]) -> int:
    from cao_client import workflow
    from cao_client.client import CaoClient

    client = await CaoClient.connect(workspace=project, cwd=project, command=[sys.executable, "-m", "cao_sidecar", "--stdio"])
    workflow.bind(client, run_id, inputs)
    try:
        output = await (_yaml(script, inputs) if script.suffix in (".yaml", ".yml") else _python(script, inputs))
    except ConnectionError as exc:
        print(f"workflow run {run_id}: lost the sidecar ({exc}); it resumes the run when it is back", file=sys.stderr)
        return LOST
    except ScriptError as exc:
        _write_result(result, {"error": str(exc)})
        return 1
    except Exception as exc:  # noqa: BLE001 - the script's own failure is the run's
        traceback.print_exc()
        _write_result(result, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    finally:
        try:
            await client.close()
        except Exception:  # noqa: BLE001 - the sidecar may be gone already
            pass
    _write_result(result, {"output": output})
    return 0


def main(argv: list[str]) -> int:
    run_id, script, result, project, inputs = argv
    return asyncio.run(_run(run_id, Path(script), Path(result), Path(project), json.loads(inputs)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
