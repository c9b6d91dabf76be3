"""What a profile or flow from an untrusted workspace folder does not get (cao_sidecar.trust).

Anything that could run a program or widen what an agent may do is held back: a profile's `env`,
`mcpServers`, `permissionMode`, `allowedTools`, provider-specific options (e.g. `command`,
`args`, `dangerously_skip_permissions`), `worktreeFiles` (files copied into a worker's worktree)
and a `workingDirectory` outside the folder. The rest
(name, description, system prompt, a built-in or user provider, model, tags) applies. A flow is
listed but never scheduled and its gate never runs. Each file says so in a diagnostic whose
`held_back` line also goes into TrustInfo.heldBack.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import attrs

from cao_sidecar.profiles.files import Diagnostic
from cao_sidecar.profiles.profile import Profile
from cao_sidecar.trust import how_to_trust


def _inside(path: str, folder: Path) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def hold_back_profile(profile: Profile, folder: Path) -> tuple[Profile, Optional[Diagnostic]]:
    """The profile with what an untrusted folder may not set removed, and a diagnostic naming it."""
    held: list[str] = []
    changes: dict[str, Any] = {}
    if profile.env:
        held.append("env")
        changes["env"] = {}
    if profile.mcp_servers:
        held.append("mcpServers")
        changes["mcp_servers"] = []
    if profile.permission_mode is not None:
        held.append("permissionMode")
        changes["permission_mode"] = None
    if profile.allowed_tools is not None:
        held.append("allowedTools")
        changes["allowed_tools"] = None
    if profile.worktree_files:
        # Copying files into a worktree hands their contents (secrets, .env) to the agent.
        held.append("worktreeFiles")
        changes["worktree_files"] = []
    if profile.extra:
        held.append(", ".join(sorted(profile.extra)))
        changes["extra"] = {}
    if profile.working_directory is not None and not _inside(profile.working_directory, folder):
        held.append("workingDirectory (outside the folder)")
        changes["working_directory"] = None
    if not held:
        return profile, None
    fields = ", ".join(held)
    diagnostic = Diagnostic(
        "warning",
        f"this folder is not trusted: {fields} not applied; " + how_to_trust(folder),
        1,
        held_back=f"profile {profile.name}: {fields} not applied",
    )
    return attrs.evolve(profile, **changes), diagnostic


def flow_held_back(name: str, folder: Path, has_gate: bool) -> Diagnostic:
    gate = ", its gate does not run" if has_gate else ""
    return Diagnostic(
        "warning",
        f"this folder is not trusted: flow '{name}' is not scheduled and cannot be run{gate}; " + how_to_trust(folder),
        1,
        held_back=f"flow {name}: not scheduled{gate}",
    )
