"""The profiles the sidecar knows: each workspace folder's `.cao/agents/` first (in folder order),
then the user's config dir, then the built-ins shipped in the package. A folder the user has not
trusted comes last instead, and its profiles lose what profiles.untrusted holds back.

`reload()` rescans synchronously (start-up, the command line); the live watcher (profiles.live)
calls `scan()` in a thread and `apply()` on the event loop instead.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Optional

from cao_sidecar import trust
from cao_sidecar.core.errors import UnknownProfile
from cao_sidecar.profiles.files import Diagnostic, Frontmatter
from cao_sidecar.profiles.layers import Changes, Entry, FileResult, Layer, LayeredCatalog
from cao_sidecar.profiles.profile import Profile, ProfileError, check_profile, known_providers
from cao_sidecar.profiles.untrusted import hold_back_profile

log = logging.getLogger(__name__)


def builtin_profiles_dir() -> Path:
    return Path(str(resources.files("cao_sidecar.agent_profiles")))


def profile_layers(workspace_dirs: list[Path], user_dir: Optional[Path], base_dir: Optional[Path] = None) -> list[Layer]:
    """`workspace_dirs` are `<folder>/.cao/agents` directories; relative working directories in
    a workspace profile are relative to its folder, elsewhere to `base_dir` (the first folder)."""
    if base_dir is None and workspace_dirs:
        base_dir = workspace_dirs[0].parent.parent
    workspace = [Layer("workspace", d, d.parent.parent, trust.folder_trusted(d.parent.parent)) for d in workspace_dirs]
    layers = [layer for layer in workspace if layer.trusted]
    if user_dir is not None:
        layers.append(Layer("user", user_dir, base_dir))
    layers.append(Layer("builtin", builtin_profiles_dir(), base_dir))
    return layers + [layer for layer in workspace if not layer.trusted]


class ProfileCatalog:
    def __init__(self, *, workspace_dirs: list[Path], user_dir: Path | None, load: bool = True) -> None:
        self._providers: Optional[list[str]] = None
        self._workspace: Optional[Path] = workspace_dirs[0].parent.parent if workspace_dirs else None
        self._supplied: dict[str, Profile] = {}  # a node's: the orchestrator's definitions (hosts.profiles)
        self.layered: LayeredCatalog[Profile] = LayeredCatalog(
            profile_layers(workspace_dirs, user_dir), self._parse, lambda p: p.name, "profile"
        )
        if load:
            self.reload()

    def _parse(self, fm: Frontmatter, layer: Layer, path: Path) -> tuple[Optional[Profile], list[Diagnostic]]:
        if self._providers is None:
            self._providers = known_providers(self._workspace)
        profile, diagnostics = check_profile(
            fm, path=path, source=layer.scope, base_dir=layer.base_dir, providers=self._providers
        )
        if profile is not None and not layer.trusted and layer.base_dir is not None:
            profile, held = hold_back_profile(profile, layer.base_dir)
            if held is not None:
                diagnostics = [*diagnostics, held]
        return profile, diagnostics

    # ---- loading --------------------------------------------------------------------------

    def set_workspace_dirs(self, workspace_dirs: list[Path], user_dir: Optional[Path]) -> None:
        """Also after a trust change: the layers' order and trust are decided here."""
        self._workspace = workspace_dirs[0].parent.parent if workspace_dirs else None
        self.layered.set_layers(profile_layers(workspace_dirs, user_dir))

    def scan(self) -> list[FileResult[Profile]]:
        self._providers = known_providers(self._workspace)
        return self.layered.scan(context=",".join(self._providers))

    def apply(self, results: list[FileResult[Profile]]) -> Changes:
        changes = self.layered.apply(results)
        for path, diagnostics in changes.diagnostics.items():
            for d in diagnostics:
                log.log(logging.WARNING if d.severity == "error" else logging.INFO, "profile %s", d.render(path))
        return changes

    def reload(self) -> Changes:
        return self.apply(self.scan())

    # ---- queries --------------------------------------------------------------------------

    @property
    def errors(self) -> dict[Path, ProfileError]:
        """Files with errors, each with its first error (compatibility view of diagnostics())."""
        out: dict[Path, ProfileError] = {}
        for path, diagnostics in self.layered.diagnostics().items():
            first = next((d for d in diagnostics if d.severity == "error"), None)
            if first is not None:
                out[path] = ProfileError(first.message, first.line)
        return out

    def diagnostics(self) -> dict[Path, list[Diagnostic]]:
        return self.layered.diagnostics()

    def get(self, name: str) -> Profile:
        if name in self._supplied:
            return self._supplied[name]
        entry = self.layered.get(name)
        if entry is None:
            known = ", ".join(e.name for e in self.layered.entries()) or "none"
            raise UnknownProfile(f"unknown profile '{name}' (known: {known})", profile=name)
        return entry.item

    def entry(self, name: str) -> Optional[Entry[Profile]]:
        return self.layered.get(name)

    def entries(self) -> list[Entry[Profile]]:
        return self.layered.entries()

    def all(self) -> list[Profile]:
        return [e.item for e in self.layered.entries()]

    def names(self) -> list[str]:
        return [e.name for e in self.layered.entries()]

    def directories(self) -> list[Path]:
        return self.layered.directories()

    def user_dir(self) -> Optional[Path]:
        return next((layer.directory for layer in self.layered.layers if layer.scope == "user"), None)

    # ---- on a host's node (issue 19) ----------------------------------------------------------

    def supply(self, profile: Profile) -> None:
        """The orchestrator's definition of a profile, checked by hosts.profiles: it wins over a
        file of the same name here, for every later start by that name."""
        self._supplied[profile.name] = profile
