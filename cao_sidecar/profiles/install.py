"""Install a profile into the user's config dir: from a file (validated first) or by name (copy a
workspace or built-in profile there, e.g. to customise it). The file is copied byte for byte and
written atomically (temp file + rename); nothing is ever re-serialised."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import attrs

from cao_sidecar.core.errors import CaoError, InvalidRequest, UnknownProfile
from cao_sidecar.profiles.catalog import ProfileCatalog
from cao_sidecar.profiles.files import CONTROL, NAME_PATTERN, NAME_RULE, FileRefused, check_file, read_text
from cao_sidecar.profiles.profile import check_profile


@attrs.define
class Installed:
    name: str
    path: Path
    replaced: bool
    warnings: list[str]


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.endswith(".md") or spec.startswith(("~", "."))


def install_profile(
    spec: str, *, catalog: ProfileCatalog, user_dir: Path, overwrite: bool = False, cwd: Optional[Path] = None
) -> Installed:
    if not spec or CONTROL.search(spec):
        raise InvalidRequest("field 'profile' must be a profile name or a path, without control characters", field="profile")
    by_name = not _looks_like_path(spec)
    if not by_name:
        source = Path(os.path.expanduser(spec))
        if not source.is_absolute():
            source = (cwd or Path.cwd()) / source
    else:
        if not NAME_PATTERN.match(spec):
            raise InvalidRequest(f"field 'profile': {spec!r} is neither a profile name ({NAME_RULE}) nor a path", field="profile")
        entry = catalog.entry(spec)
        if entry is None:
            known = ", ".join(catalog.names()) or "none"
            raise UnknownProfile(f"unknown profile '{spec}' (known: {known})", profile=spec)
        if entry.layer.scope == "user":
            raise InvalidRequest(f"profile '{spec}' is already in the user config dir: {entry.path}", field="profile")
        source = entry.path
    try:
        real = source.resolve(strict=True)
        # A known profile is read where its catalog found it: a link leading out of that
        # directory (a workspace's .cao/agents/x.md -> ~/.ssh/...) is refused, as when loading.
        text = read_text(source, source.parent) if by_name else read_text(real, real.parent)
    except FileNotFoundError:
        raise InvalidRequest(f"no such file: {source}", field="profile") from None
    except (OSError, RuntimeError) as exc:
        raise InvalidRequest(f"cannot read {source}: {exc}", field="profile") from None
    except FileRefused as exc:
        raise InvalidRequest(f"cannot install {source}: {exc}", field="profile") from None
    user_dir = Path(user_dir)
    profile, diagnostics = check_file(
        real, real.parent, lambda fm: check_profile(fm, path=user_dir / "x.md", source="user", base_dir=cwd or Path.cwd()), text
    )
    errors = [d for d in diagnostics if d.severity == "error"]
    if profile is None or errors:
        details = "; ".join(f"line {d.line}: {d.message}" for d in errors) or "invalid profile"
        raise InvalidRequest(f"{source} is not a valid profile: {details}", field="profile")
    existing = catalog.entry(profile.name)
    destination = user_dir / f"{profile.name}.md"
    if existing is not None and existing.layer.scope == "user":
        destination = existing.path  # replace the file that defines it, not add a duplicate
    try:
        if real == destination.resolve():
            raise InvalidRequest(f"{source} is already the installed profile '{profile.name}'", field="profile")
    except OSError:
        pass
    replaced = destination.exists()
    if replaced and not overwrite:
        raise InvalidRequest(
            f"profile '{profile.name}' is already installed at {destination}; pass overwrite (--force) to replace it",
            field="profile",
        )
    try:
        user_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(prefix=f".{profile.name}.", suffix=".tmp", dir=user_dir)
    except OSError as exc:
        raise CaoError(f"cannot write to {user_dir}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, destination)
    except BaseException as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CaoError(f"cannot write {destination}: {exc.strerror or exc}") from None
        raise
    warnings = [f"line {d.line}: {d.message}" for d in diagnostics if d.severity == "warning"]
    return Installed(profile.name, destination, replaced, warnings)
