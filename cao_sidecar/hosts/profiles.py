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
from typing import Any, Callable, Optional

import attrs

from cao_sidecar.core.errors import InvalidRequest
from cao_sidecar.profiles.files import MAX_FILE_BYTES, FrontmatterError, split_frontmatter
from cao_sidecar.profiles.profile import Profile, check_profile, known_providers
from cao_sidecar.profiles.untrusted import hold_back_profile

CARRY_PROFILE = ("cao/spawn", "cao/handoff", "cao/assign")  # the methods that start an agent by profile
SCOPES = ("builtin", "user", "workspace")


async def carried_for(core: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """What to send with `method`: `profile`, the definition of the profile it starts, and
    `provider`, the file of the user-defined provider that agent runs on (either left out when
    this side has none: the host's own, if any, applies)."""
    name = params.get("profile")
    if method not in CARRY_PROFILE or not isinstance(name, str):
        return {}
    entry = core.catalog.entry(name)
    carry: dict[str, Any] = {}
    if entry is not None:
        try:
            text = await asyncio.to_thread(Path(entry.path).read_text, encoding="utf-8")
            carry["profile"] = {"name": name, "text": text, "trusted": bool(entry.layer.trusted), "scope": entry.layer.scope}
        except (OSError, UnicodeDecodeError):
            pass  # gone since it was loaded: the node's own profile of that name, if any
    provider = params.get("provider") or (entry.item.provider if entry is not None else None)
    if isinstance(provider, str):
        found = await asyncio.to_thread(_provider_file, core.default_cwd, provider)
        if found is not None:
            carry["provider"] = found
    return carry


def _provider_file(workspace: Any, name: str) -> Optional[dict[str, Any]]:
    """The file of the user-defined provider `name` in force here (None: a built-in, or unknown)."""
    from cao_sidecar.providers import user_providers

    source = getattr(user_providers(workspace)[0].get(name), "source", None)
    if not source:
        return None
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return {"name": name, "file": Path(source).name, "text": text}


def _file_text(definition: Any, kind: str, refuse: Callable[[str], InvalidRequest]) -> str:
    """The `text` of a definition the orchestrator sent (an object holding a file's text)."""
    if not isinstance(definition, dict):
        raise refuse("expected an object")
    text = definition.get("text")
    if not isinstance(text, str) or len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise refuse(f"'text' must be a {kind} file of at most {MAX_FILE_BYTES // 1024} KiB")
    return text


def supplied_provider(definition: Any) -> Any:
    """A user-defined provider the orchestrator sent, parsed as a file of this machine's would be."""
    from cao_sidecar.providers import builtin_providers
    from cao_sidecar.providers.user import SUFFIXES, ProviderConfigError, parse_config

    def refuse(why: str) -> InvalidRequest:
        return InvalidRequest(f"the orchestrator's provider file: {why}", field="provider")

    text = _file_text(definition, "provider", refuse)
    file, name = definition.get("file"), definition.get("name")
    if not isinstance(file, str) or Path(file).name != file or Path(file).suffix not in SUFFIXES:
        raise refuse(f"'file' must be a file name ending in {', '.join(SUFFIXES)}")
    try:
        provider = parse_config(text, Path(file), builtin_providers())
    except ProviderConfigError as exc:
        raise refuse(f"{file}: {exc}") from None
    if provider.name != name:
        raise refuse(f"{file} defines {provider.name!r}, not {name!r}")
    return provider


def supplied_profile(definition: Any, requested: Any, folder: Path) -> Profile:
    """A definition sent by the orchestrator, checked as a profile file of this machine's would
    be; `folder`: the node's workspace (what a held-back profile may still name)."""

    def refuse(why: str) -> InvalidRequest:
        return InvalidRequest(f"the orchestrator's definition of profile {requested!r}: {why}", field="profile")

    text = _file_text(definition, "profile", refuse)
    name, trusted = definition.get("name"), definition.get("trusted")
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


async def supply(core: Any, definition: Any, requested: Any, provider: Any = None) -> None:
    """Keep the orchestrator's definitions on this node (before its request runs): its user-defined
    `provider`, then its profile `requested`."""
    if provider is not None:
        from cao_sidecar.providers import supply_provider

        supply_provider(supplied_provider(provider))
    if definition is None:
        return
    folder = Path(core.default_cwd)
    profile = await asyncio.to_thread(supplied_profile, definition, requested, folder)
    core.catalog.supply(profile)
