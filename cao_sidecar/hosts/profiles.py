"""Profiles travel with the request: a host runs the profile the orchestrator resolved.

The orchestrator sends the definition it has in force (the file's text, and whether the folder it
came from is trusted) with each `cao/spawn`, `cao/handoff` and `cao/assign` for a host. The node
checks it as it checks a file of its own and keeps it for that name (beside its files, taking
precedence): nothing is copied to the host's disk. What a profile from an untrusted folder may
not set is held back on the node too; the orchestrator's `workingDirectory` (a path on another
machine), `host` (the node is that host) and `pool` (warm workers are the orchestrator's) do not
apply there.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Optional

import attrs

from cao_sidecar.core.errors import InvalidRequest
from cao_sidecar.profiles.files import MAX_FILE_BYTES, FrontmatterError, split_frontmatter
from cao_sidecar.profiles.profile import Profile, check_profile, known_providers
from cao_sidecar.profiles.untrusted import hold_back_profile

CARRY_PROFILE = ("cao/spawn", "cao/handoff", "cao/assign")  # the methods that start an agent by profile
SCOPES = ("builtin", "user", "workspace")


async def definition_for(catalog: Any, method: str, params: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The definition to send with `method` (None: it starts no agent by a profile this side knows)."""
    name = params.get("profile")
    if method not in CARRY_PROFILE or not isinstance(name, str):
        return None
    entry = catalog.entry(name)
    if entry is None:
        return None  # the host may know it; if not, its node says so
    try:
        text = await asyncio.to_thread(Path(entry.path).read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # gone since it was loaded: the node's own profile of that name, if any
    return {"name": name, "text": text, "trusted": bool(entry.layer.trusted), "scope": entry.layer.scope}


def supplied_profile(definition: Any, requested: Any, folder: Path) -> Profile:
    """A definition sent by the orchestrator, checked as a profile file of this machine's would
    be; `folder`: the node's workspace (what a held-back profile may still name)."""

    def refuse(why: str) -> InvalidRequest:
        return InvalidRequest(f"the orchestrator's definition of profile {requested!r}: {why}", field="profile")

    if not isinstance(definition, dict):
        raise refuse("expected an object")
    text, name, trusted = definition.get("text"), definition.get("name"), definition.get("trusted")
    if not isinstance(text, str) or len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise refuse(f"'text' must be a profile file of at most {MAX_FILE_BYTES // 1024} KiB")
    if not isinstance(trusted, bool):
        raise refuse("'trusted' must be true or false")
    if name != requested:
        raise refuse(f"it names {name!r}")
    try:
        frontmatter = split_frontmatter(text)
    except FrontmatterError as exc:
        raise refuse(f"line {exc.line}: {exc.message}") from None
    scope = str(definition.get("scope")) if definition.get("scope") in SCOPES else "user"
    profile, diagnostics = check_profile(frontmatter, source=scope, base_dir=folder, providers=known_providers(folder))
    if profile is None:
        first = next((d for d in diagnostics if d.severity == "error"), None)
        raise refuse(f"line {first.line}: {first.message}" if first is not None else "not a valid profile")
    if profile.name != requested:
        raise refuse(f"its 'name' is {profile.name!r}")
    if not trusted:
        profile, _held = hold_back_profile(profile, folder)
    return attrs.evolve(profile, working_directory=None, host=None, pool=0, path=None)


async def supply(core: Any, definition: Any, requested: Any) -> None:
    """Keep the orchestrator's definition of `requested` on this node (before its request runs)."""
    folder = Path(core.default_cwd)
    profile = await asyncio.to_thread(supplied_profile, definition, requested, folder)
    core.catalog.supply(profile)
