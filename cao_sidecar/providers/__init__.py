"""Providers: one module per agent CLI, all behind providers.base.Provider."""

from __future__ import annotations

from cao_sidecar.core.errors import UnknownProvider
from cao_sidecar.providers.base import LaunchContext, LaunchSpec, Provider


def _registry() -> dict[str, Provider]:
    from cao_sidecar.providers.mock import MockProvider

    return {p.name: p for p in (MockProvider(),)}


_PROVIDERS: dict[str, Provider] | None = None


def get_provider(name: str) -> Provider:
    global _PROVIDERS
    if _PROVIDERS is None:
        _PROVIDERS = _registry()
    try:
        return _PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(_PROVIDERS))
        raise UnknownProvider(f"unknown provider '{name}' (known: {known})", provider=name) from None


def provider_names() -> list[str]:
    get_provider("mock")
    assert _PROVIDERS is not None
    return sorted(_PROVIDERS)


__all__ = ["LaunchContext", "LaunchSpec", "Provider", "get_provider", "provider_names"]
