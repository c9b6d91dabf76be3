"""The `initialize` answer, built without pygls so it can go out before pygls has loaded.

Importing pygls and lsprotocol costs about 0.3 s; an editor waits for this answer before it
shows anything, so the sidecar answers first and loads the rest afterwards.
"""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import unquote, urlparse

from cao_sidecar import PROTOCOL_VERSION, __version__


def initialize_result() -> dict[str, Any]:
    from cao_sidecar.editor import advertised  # plain data, kept equal to wire's by a test

    return {
        "capabilities": {
            "positionEncoding": "utf-16",
            # Folders added or removed later change where workspace profiles and flows are found.
            "workspace": {"workspaceFolders": {"supported": True, "changeNotifications": True}},
            # The main cao/ methods as commands (wire.COMMANDS).
            "executeCommandProvider": {"commands": list(advertised.COMMANDS)},
            "experimental": {
                "cao": {
                    "protocolVersion": PROTOCOL_VERSION,
                    "methods": list(advertised.METHODS),
                    "notifications": list(advertised.NOTIFICATIONS),
                    "providers": _provider_names(),
                }
            },
        },
        "serverInfo": {"name": "cao-sidecar", "version": __version__},
    }


def _provider_names() -> list[str]:
    """The built-in providers, plus the user's own when the config dir has a providers folder
    (reading those needs the providers package; the common case does without)."""
    from cao_sidecar import paths

    if (paths.config_dir() / "providers").is_dir():
        from cao_sidecar.providers import provider_names

        return provider_names()
    from cao_sidecar.editor import advertised

    return list(advertised.PROVIDERS)


def workspace_root(params: Any) -> Optional[str]:
    """The workspace root of raw `initialize` params: rootUri, else the first workspace
    folder, else the deprecated rootPath. None when absent or not a local path."""
    if not isinstance(params, dict):
        return None
    uri = params.get("rootUri")
    folders = params.get("workspaceFolders")
    if not isinstance(uri, str) and isinstance(folders, list) and folders and isinstance(folders[0], dict):
        uri = folders[0].get("uri")
    if isinstance(uri, str):
        parsed = urlparse(uri)
        return unquote(parsed.path) if parsed.scheme == "file" and parsed.path else None
    root_path = params.get("rootPath")
    return root_path if isinstance(root_path, str) and root_path else None


def workspace_trusted(params: Any) -> Optional[bool]:
    """`initializationOptions.workspaceTrusted`: the editor's own trust decision for its
    workspace folders (VS Code's Workspace Trust), or None (the user's trust store decides)."""
    options = params.get("initializationOptions") if isinstance(params, dict) else None
    value = options.get("workspaceTrusted") if isinstance(options, dict) else None
    return value if isinstance(value, bool) else None
