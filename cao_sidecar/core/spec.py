"""What a spawn asks for: the same five fields every face and team operation passes on."""

from __future__ import annotations

import re
from typing import Optional

import attrs

from cao_sidecar.core.errors import InvalidRequest
from cao_sidecar.core.leads import Caller


@attrs.frozen
class WorkerSpec:
    """What to start: a profile, optionally another provider, working directory, session, name."""

    profile: str
    provider: Optional[str] = None
    working_directory: Optional[str] = None
    session: Optional[str] = None
    name: Optional[str] = None
    worktree: Optional[bool] = None  # its own git worktree (core.worktree_manager)
    base_ref: Optional[str] = None  # where that worktree's branch starts
    model: Optional[str] = None  # this worker's model instead of its profile's (handoff/assign `model`)
    pooled: bool = False  # a warm worker the pool keeps (core.pool): not the user's until taken

    def joining(self, caller: Optional[Caller]) -> "WorkerSpec":
        """A worker started for an agent joins the caller's session and working directory."""
        if caller is None:
            return self
        return attrs.evolve(
            self, session=self.session or caller.session, working_directory=self.working_directory or caller.working_directory
        )


MODEL_PATTERN = re.compile(r"[^\s\x00-\x1f\x7f-]\S{0,199}")


def checked_model(model: str) -> str:
    """A per-call model name (each provider puts it on its command line or config): one word of
    at most 200 characters, not flag-like."""
    if not MODEL_PATTERN.fullmatch(model) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in model):
        raise InvalidRequest("field 'model' must be one word of 1-200 characters, not starting with '-'", field="model")
    return model
