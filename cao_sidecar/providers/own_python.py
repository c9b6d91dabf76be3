"""Command lines that run one of our own Python modules in an agent's working directory.

`python -m cao_sidecar...` puts the current directory first on sys.path, and an agent's current
directory is the workspace: a repository holding its own `cao_sidecar/` package would run its code
instead of ours. `-P` (Python 3.11+, "safe path") leaves the current directory out; older
interpreters get the same effect from a two-line bootstrap. Relative or empty PYTHONPATH entries
name the current directory too, so they are dropped from the agent's PYTHONPATH.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Optional

# Python 3.10: `-c` puts '' (the current directory) first; drop it, then run the module as -m would.
_BOOTSTRAP = "import runpy, sys; del sys.path[0]; runpy.run_module(sys.argv[1], run_name='__main__', alter_sys=True)"


def module_argv(module: str, *args: str) -> list[str]:
    """`python -m MODULE ARGS` that never imports from the current directory."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", module, *args]
    return [sys.executable, "-c", _BOOTSTRAP, module, *args]


def stdlib_module_launch(module: str, env: Mapping[str, str], *args: str) -> tuple[list[str], dict[str, str]]:
    """`python -S` running one of our modules that needs only the standard library (the mock
    agent): no site-packages set-up (its .pth files) at every start, our package found through
    PYTHONPATH instead. Returns the argv and the PYTHONPATH for the launch environment."""
    ours = str(Path(__file__).resolve().parents[2])  # the folder holding the cao_sidecar package
    rest = [p for p in safe_pythonpath(env).get("PYTHONPATH", "").split(os.pathsep) if p and p != ours]
    argv = module_argv(module, *args)
    return [argv[0], "-S", *argv[1:]], {"PYTHONPATH": os.pathsep.join([ours, *rest])}


def safe_pythonpath(env: Mapping[str, str]) -> dict[str, str]:
    """PYTHONPATH with only absolute entries (for the launch environment), if there is one."""
    value: Optional[str] = env.get("PYTHONPATH")
    if value is None:
        return {}
    return {"PYTHONPATH": os.pathsep.join(p for p in value.split(os.pathsep) if os.path.isabs(p))}
