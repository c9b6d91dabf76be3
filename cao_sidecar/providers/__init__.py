"""Providers: one module per agent CLI, all behind providers.base.Provider.

Built-in: mock (the test agent), claude_code, codex, gemini_cli, kiro_cli, q_cli, opencode,
aider, copilot, cursor, qwen_code, grok_cli. User-defined providers (providers/user.py) come from YAML/JSON files in
`<workspace>/.cao/providers/` (only once the user trusts the folder: cao_sidecar.trust) and the
user's config dir (`~/.config/cao-sidecar/providers/`); a file named like a built-in replaces it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

from cao_sidecar.core.errors import UnknownProvider
from cao_sidecar.providers.base import LaunchContext, LaunchSpec, Provider

log = logging.getLogger(__name__)

_BUILTINS: Optional[dict[str, Provider]] = None
# path → (mtime_ns, size, provider or error message)
_FILE_CACHE: dict[Path, tuple[int, int, Any]] = {}


def builtin_providers() -> dict[str, Provider]:
    global _BUILTINS
    if _BUILTINS is None:
        from cao_sidecar.providers.aider import AiderProvider
        from cao_sidecar.providers.claude_code import ClaudeCodeProvider
        from cao_sidecar.providers.codex import CodexProvider
        from cao_sidecar.providers.copilot import CopilotProvider
        from cao_sidecar.providers.cursor import CursorProvider
        from cao_sidecar.providers.gemini_cli import GeminiCliProvider
        from cao_sidecar.providers.grok_cli import GrokCliProvider
        from cao_sidecar.providers.kiro_cli import KiroCliProvider
        from cao_sidecar.providers.mock import MockProvider
        from cao_sidecar.providers.opencode import OpenCodeProvider
        from cao_sidecar.providers.q_cli import QCliProvider
        from cao_sidecar.providers.qwen_code import QwenCodeProvider

        providers: list[Provider] = [
            MockProvider(),
            ClaudeCodeProvider(),
            CodexProvider(),
            GeminiCliProvider(),
            KiroCliProvider(),
            QCliProvider(),
            OpenCodeProvider(),
            AiderProvider(),
            CopilotProvider(),
            CursorProvider(),
            QwenCodeProvider(),
            GrokCliProvider(),
        ]
        _BUILTINS = {p.name: p for p in providers}
    return _BUILTINS


def workspace_provider_dir(workspace: str | os.PathLike[str]) -> Path:
    return Path(workspace) / ".cao" / "providers"


def provider_dirs(workspace: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where user-defined providers are looked up, highest priority first. A workspace's own
    providers run any program it names: they count only in a folder the user trusts."""
    from cao_sidecar import paths, trust

    dirs = []
    if workspace is not None and trust.folder_trusted(workspace):
        dirs.append(workspace_provider_dir(workspace))
    dirs.append(paths.config_dir() / "providers")
    return dirs


def user_providers(workspace: str | os.PathLike[str] | None = None) -> tuple[dict[str, Provider], dict[Path, str]]:
    """User-defined providers by name, and the files that could not be used (path → error)."""
    from cao_sidecar.providers.user import ProviderConfigError, load_config, provider_files

    found: dict[str, Provider] = {}
    errors: dict[Path, str] = {}
    for path in provider_files(provider_dirs(workspace)):
        try:
            st = path.stat()
        except OSError:
            continue
        cached = _FILE_CACHE.get(path)
        if cached is not None and cached[0] == st.st_mtime_ns and cached[1] == st.st_size:
            result = cached[2]
        else:
            try:
                result = load_config(path, builtin_providers())
            except ProviderConfigError as exc:
                result = str(exc)
                log.warning("provider file %s: %s", path, exc)
            _FILE_CACHE[path] = (st.st_mtime_ns, st.st_size, result)
        if isinstance(result, str):
            errors[path] = result
        else:
            found.setdefault(result.name, result)
    return found, errors


def all_providers(workspace: str | os.PathLike[str] | None = None) -> dict[str, Provider]:
    providers = dict(builtin_providers())
    providers.update(user_providers(workspace)[0])
    providers.update(_SUPPLIED)
    return providers


# On a host's node: the orchestrator's user-defined providers, sent with the profiles that use
# them (hosts.profiles); they win over a file of the same name here. In memory only.
_SUPPLIED: dict[str, Provider] = {}


def supply_provider(provider: Provider) -> None:
    _SUPPLIED[provider.name] = provider


def get_provider(name: str, workspace: str | os.PathLike[str] | None = None) -> Provider:
    providers = all_providers(workspace)
    try:
        return providers[name]
    except KeyError:
        known = ", ".join(sorted(providers))
        raise UnknownProvider(f"unknown provider '{name}' (known: {known})", provider=name) from None


def provider_names(workspace: str | os.PathLike[str] | None = None) -> list[str]:
    return sorted(all_providers(workspace))


__all__ = [
    "LaunchContext",
    "LaunchSpec",
    "Provider",
    "all_providers",
    "builtin_providers",
    "get_provider",
    "provider_names",
    "supply_provider",
    "user_providers",
]
