"""What a person needs to know to get a provider's CLI working: how to install it, how to log in.

Each provider module names its CLI's facts (`cli = CliFacts(...)` on the provider class); the core
uses them to fail a launch early with what to do next (the command is not installed, the screen
says it is not logged in), and `cao-sidecar doctor` shows them for every provider. Checking a
login is cheap and offline: a credentials file the CLI writes, or an API key in the environment.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any, Mapping, Optional

import attrs


@attrs.frozen
class CliFacts:
    title: str  # the product's name, as its users know it
    binary: str  # the command on PATH
    install: str  # one command (or where to look) that installs it
    login: str  # how to log in once
    version_args: tuple[str, ...] = ("--version",)
    # Logged in if any of these files exists (`~` and `$VARS` expanded) or any variable is set.
    # Both empty: the CLI keeps its login where we cannot cheaply look (doctor says "unknown").
    credential_files: tuple[str, ...] = ()
    credential_env: tuple[str, ...] = ()
    # The CLI's ready screen says it is not logged in (a regex on its bottom lines).
    logged_out_screen: Optional[str] = None

    def login_state(self, env: Mapping[str, str]) -> Optional[bool]:
        """True (a credential is there), False (none is), None (this CLI cannot tell cheaply)."""
        if not self.credential_files and not self.credential_env:
            return None
        if any(env.get(name) for name in self.credential_env):
            return True
        home = env.get("HOME") or os.path.expanduser("~")
        for pattern in self.credential_files:
            path = _expand(pattern, env, home)
            if path is not None and os.path.isfile(path):
                return True
        return False

    def credential_source(self, env: Mapping[str, str]) -> Optional[str]:
        """What makes it logged in (a variable's name or a file's path), for the report."""
        for name in self.credential_env:
            if env.get(name):
                return f"${name}"
        home = env.get("HOME") or os.path.expanduser("~")
        for pattern in self.credential_files:
            path = _expand(pattern, env, home)
            if path is not None and os.path.isfile(path):
                return path
        return None


def _expand(pattern: str, env: Mapping[str, str], home: str) -> Optional[str]:
    """`~` and `$NAME` expanded from `env`; None when a variable it needs is not set."""
    if pattern.startswith("~/"):
        pattern = home + pattern[1:]
    missing = False

    def var(match: re.Match[str]) -> str:
        nonlocal missing
        value = env.get(match.group(1))
        if not value:
            missing = True
            return ""
        return value

    path = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", var, pattern)
    return None if missing else path


def facts_of(provider: Any) -> Optional[CliFacts]:
    facts = getattr(provider, "cli", None)
    return facts if isinstance(facts, CliFacts) else None


def command_path(command: str, env: Mapping[str, str]) -> Optional[str]:
    """Where `command` (a name searched on env's PATH, or a path) is, if it can be run."""
    if "/" in command:
        return command if os.path.isfile(command) and os.access(command, os.X_OK) else None
    return shutil.which(command, path=env.get("PATH", os.defpath))


def missing_command(provider: Any, argv: list[str], env: Mapping[str, str]) -> Optional[str]:
    """Why the launch cannot start (its command is not installed), with what to do, or None."""
    if not argv or command_path(argv[0], env) is not None:
        return None
    facts = facts_of(provider)
    if facts is not None and os.path.basename(argv[0]) == facts.binary:
        return (
            f"{facts.title}'s command `{facts.binary}` is not installed (not found on PATH). "
            f"Install it: {facts.install}; then log in once ({facts.login}). "
            "`cao-sidecar doctor` checks every CLI."
        )
    return (
        f"the command `{argv[0]}` of provider '{getattr(provider, 'name', '?')}' is not installed "
        "(not found on PATH); `cao-sidecar doctor` checks every CLI"
    )


def logged_out(provider: Any, screen: str) -> Optional[str]:
    """The ready screen says the CLI is not logged in: what to do about it, or None."""
    facts = facts_of(provider)
    if facts is None or facts.logged_out_screen is None:
        return None
    lines = [line for line in screen.split("\n") if line.strip()][-12:]
    pattern = re.compile(facts.logged_out_screen)
    if not any(pattern.search(line) for line in lines):
        return None
    return f"{facts.title} is not logged in (its screen says so): {facts.login}"
