"""Diagnostics of workflow files as they are saved (like profiles' and flows'), for editors.

The live config (profiles.live) watches the workflow directories and asks `scan()` what changed:
each workflow file's problems as (line, message) (workflows.catalog's checks: Python parsed
with `ast`, YAML's shape; nothing imported or run), and an empty list for a file that is fixed
or gone, so the editor clears it. The live config makes them Diagnostics.
"""

from __future__ import annotations

import re
from pathlib import Path

from cao_sidecar.workflows import catalog

LINE = re.compile(r"^line (\d+): (.*)$", re.S)


Problem = tuple[int, str]  # (1-based line, message)


def located(problem: str) -> Problem:
    """`line N: message` (or a message about the whole file: line 1) as (line, message)."""
    match = LINE.match(problem)
    if match is None:
        return 1, problem
    return max(1, int(match.group(1))), match.group(2)


class WorkflowFiles:
    def __init__(self, folders: list[Path]) -> None:
        self.folders = list(folders)
        self._last: dict[Path, list[Problem]] = {}

    def directories(self) -> list[Path]:
        return [*(catalog.workspace_workflows_dir(f) for f in self.folders), catalog.user_workflows_dir()]

    def current(self) -> dict[Path, list[Problem]]:
        return {path: list(found) for path, found in self._last.items() if found}

    def scan(self) -> dict[Path, list[Problem]]:
        """Blocking (file reads): call it off the event loop. What changed since the last scan."""
        now: dict[Path, list[Problem]] = {}
        for directory in self.directories():
            for path in catalog.workflow_files(directory):
                _description, problems = catalog.check_file(path)
                now[path] = [located(p) for p in problems]
        changes = {path: found for path, found in now.items() if self._last.get(path) != found}
        changes.update({path: [] for path in self._last if path not in now and self._last[path]})
        self._last = now
        return changes
