"""One agent profile: Markdown with YAML frontmatter; the body is the system prompt."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import attrs
import yaml

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FRONTMATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?(.*)\Z", re.S | re.M)


class ProfileError(ValueError):
    """A profile file that cannot be used; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@attrs.define
class Profile:
    name: str
    provider: str
    description: str = ""
    model: Optional[str] = None
    system_prompt: str = ""
    env: dict[str, str] = attrs.field(factory=dict)  # added to the agent's environment
    source: str = "builtin"  # builtin | user | workspace
    path: Optional[Path] = None
    extra: dict[str, Any] = attrs.field(factory=dict)


def parse_profile(text: str, *, path: Path | None = None, source: str = "builtin") -> Profile:
    match = _FRONTMATTER.match(text)
    if not match:
        raise ProfileError("missing YAML frontmatter (a '---' line, fields, and a closing '---')", line=1)
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ProfileError(f"bad YAML: {exc}", line=(mark.line + 2) if mark else None) from None
    if not isinstance(meta, dict):
        raise ProfileError("frontmatter must be a mapping of fields", line=2)
    name = meta.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ProfileError("'name' must be 1-64 letters, digits, '_' or '-'", line=2)
    provider = meta.get("provider")
    if not isinstance(provider, str) or not provider:
        raise ProfileError("'provider' must be a non-empty string", line=2)
    description = meta.get("description", "")
    model = meta.get("model")
    if not isinstance(description, str):
        raise ProfileError("'description' must be a string", line=2)
    if model is not None and not isinstance(model, str):
        raise ProfileError("'model' must be a string", line=2)
    env = meta.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, (str, int, float)) for k, v in env.items()
    ):
        raise ProfileError("'env' must map variable names to string values", line=2)
    known = {"name", "provider", "description", "model", "env"}
    return Profile(
        name=name,
        provider=provider,
        description=description.strip(),
        model=model,
        system_prompt=match.group(2).strip(),
        env={k: str(v) for k, v in env.items()},
        source=source,
        path=path,
        extra={k: v for k, v in meta.items() if k not in known},
    )
