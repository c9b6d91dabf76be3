"""The profiles the sidecar knows: workspace first, then the user's config dir, then built-ins."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from cao_sidecar.core.errors import UnknownProfile
from cao_sidecar.profiles.profile import Profile, ProfileError, parse_profile

log = logging.getLogger(__name__)


def builtin_profiles_dir() -> Path:
    return Path(str(resources.files("cao_sidecar.agent_profiles")))


class ProfileCatalog:
    def __init__(self, *, workspace_dirs: list[Path], user_dir: Path | None) -> None:
        # Highest priority first.
        self._sources: list[tuple[str, Path]] = [("workspace", d) for d in workspace_dirs]
        if user_dir is not None:
            self._sources.append(("user", user_dir))
        self._sources.append(("builtin", builtin_profiles_dir()))
        self._profiles: dict[str, Profile] = {}
        self.errors: dict[Path, ProfileError] = {}
        self.reload()

    def reload(self) -> None:
        profiles: dict[str, Profile] = {}
        errors: dict[Path, ProfileError] = {}
        for source, directory in self._sources:
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.md")):
                try:
                    profile = parse_profile(path.read_text(encoding="utf-8"), path=path, source=source)
                except (OSError, UnicodeDecodeError) as exc:
                    errors[path] = ProfileError(f"cannot read: {exc}")
                    continue
                except ProfileError as exc:
                    errors[path] = exc
                    continue
                profiles.setdefault(profile.name, profile)
        for path, exc in errors.items():
            log.warning("profile %s: %s", path, exc)
        self._profiles, self.errors = profiles, errors

    def get(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            known = ", ".join(sorted(self._profiles)) or "none"
            raise UnknownProfile(f"unknown profile '{name}' (known: {known})", profile=name) from None

    def all(self) -> list[Profile]:
        return sorted(self._profiles.values(), key=lambda p: p.name)
