"""How Gemini CLI gets the settings the sidecar writes for one agent (our MCP server with the agent's
token, our hooks, the profile's prompt directory).

The first choice is a system settings file (`GEMINI_CLI_SYSTEM_SETTINGS_PATH`): it outranks the
user's and the workspace's settings. But Gemini CLI (0.61, measured) reads a system settings file
only when it and every directory above it are owned by root and not writable by group or others;
otherwise it skips the file with a "Security Warning" (its isFileAndDirectorySecureSync), and the
agent never gets our server ("did not connect"). That is every run as an ordinary user, and a run
as root whose state directory lies under a world-writable one (such as /tmp).

Then the settings go into a private Gemini home (`GEMINI_CLI_HOME`, which Gemini reads instead of
the home directory): `<agent dir>/gemini-home/.gemini/settings.json` holds the user's own
`~/.gemini/settings.json` with ours merged in, and every other entry of the user's `~/.gemini`
(login, accounts, trusted folders, extensions, GEMINI.md, ...) is a symbolic link to the user's,
as are `~/.env` and `~/.agents`. User settings rank below the workspace's `.gemini/settings.json`:
a workspace can override them there (its own Gemini configuration).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, Mapping

from cao_sidecar.providers import mcp_config

log = logging.getLogger(__name__)

HOME_DIR = "gemini-home"
# Entries of the real home directory Gemini reads besides ~/.gemini.
HOME_ENTRIES = (".env", ".agents")


def _secure(path: Path) -> bool:
    """Gemini's test of one path: owned by root and not writable by group or others (a symbolic
    link must itself be root's)."""
    try:
        link = os.lstat(path)
        target = os.stat(path)
    except FileNotFoundError:
        return True  # Gemini counts a missing path as secure
    except OSError:
        return False
    if stat.S_ISLNK(link.st_mode) and link.st_uid != 0:
        return False
    return target.st_uid == 0 and not target.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def system_settings_accepted(directory: Path) -> bool:
    """Whether Gemini CLI reads a system settings file this process writes in `directory`."""
    if os.geteuid() != 0:
        return False  # the file would be ours, not root's
    for base in {Path(os.path.abspath(directory)), Path(os.path.realpath(directory))}:
        if not all(_secure(d) for d in (base, *base.parents)):
            return False
    return True


def merged(user: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    """The user's settings with ours on top: our MCP servers replace theirs of the same name, our
    hooks run besides theirs, our `hooksConfig`/`context` keys win."""
    out = dict(user)
    for key, value in ours.items():
        mine = out.get(key)
        if key == "hooks" and isinstance(mine, dict):
            hooks = dict(mine)
            for event, entries in value.items():
                theirs = hooks.get(event)
                hooks[event] = (theirs if isinstance(theirs, list) else []) + entries
            out[key] = hooks
        elif isinstance(value, dict) and isinstance(mine, dict):
            out[key] = {**mine, **value}
        else:
            out[key] = value
    return out


def _user_settings(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # JSON with comments, unreadable: our settings alone
        log.warning("Gemini CLI: %s not merged into the agent's settings (%s)", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _link(link: Path, target: Path) -> None:
    if target.exists() and not os.path.lexists(link):
        link.symlink_to(target)


def private_home(agent_dir: Path, user_home: Path, settings: Mapping[str, Any]) -> Path:
    """The agent's Gemini home: its settings.json (0600), the user's other files linked."""
    home = agent_dir / HOME_DIR
    gemini = home / ".gemini"
    gemini.mkdir(mode=0o700, parents=True, exist_ok=True)
    real = user_home / ".gemini"
    if real.is_dir():
        for entry in real.iterdir():
            if entry.name != "settings.json":
                _link(gemini / entry.name, entry)
    for name in HOME_ENTRIES:
        _link(home / name, user_home / name)
    mcp_config.write_private_json(gemini / "settings.json", merged(_user_settings(real / "settings.json"), settings))
    return home


def settings_env(agent_dir: Path, user_home: str, settings: Mapping[str, Any], file_name: str) -> dict[str, str]:
    """The environment that makes Gemini CLI read `settings`: a system settings file where Gemini
    accepts one, else a private Gemini home."""
    if system_settings_accepted(agent_dir):
        path = mcp_config.write_private_json(agent_dir / file_name, settings)
        return {"GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(path)}
    return {"GEMINI_CLI_HOME": str(private_home(agent_dir, Path(user_home), settings))}
