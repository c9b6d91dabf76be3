"""`cao-sidecar doctor`: what is installed, and what to do about what is not.

tmux and its version; each provider's CLI (where it is, its version, whether it is logged in, as
far as a file or a variable can tell without the network), with the command that installs it or
logs it in; the editors whose clients ship with the sidecar. Cheap: a `--version` per CLI found,
all at once, each bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from typing import Any, Mapping, Optional

from cao_sidecar.providers.cli_facts import command_path, facts_of
from cao_sidecar.terminal.errors import INSTALL_TMUX

VERSION_TIMEOUT = 10.0
VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?[a-z]?(?:[-+][0-9A-Za-z.]+)?")
EDITORS = (
    ("Neovim", "nvim", "clients/nvim (`:checkhealth cao`)"),
    ("Emacs", "emacs", "clients/emacs/cao.el"),
    ("VS Code", "code", "clients/vscode (a .vsix)"),
)


async def command_version(path: str, args: tuple[str, ...], env: Mapping[str, str]) -> Optional[str]:
    """The version a command prints (its first version-looking word), or None."""
    try:
        proc = await asyncio.create_subprocess_exec(
            path,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), VERSION_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    match = VERSION.search(out.decode("utf-8", "replace"))
    return match.group(0) if match else None


async def _provider_entry(provider: Any, env: Mapping[str, str]) -> dict[str, Any]:
    facts = facts_of(provider)
    name = provider.name
    if name == "mock":
        return {"provider": name, "title": "built-in mock agent", "found": True, "builtIn": True, "ok": True}
    if facts is None:  # a user-defined provider: its command is all we know
        command = list(getattr(provider, "command", ()) or [name])
        path = command_path(command[0], env)
        return {
            "provider": name,
            "title": name,
            "binary": command[0],
            "found": path is not None,
            "path": path,
            "ok": path is not None,
        }
    path = command_path(facts.binary, env)
    entry: dict[str, Any] = {
        "provider": name,
        "title": facts.title,
        "binary": facts.binary,
        "found": path is not None,
        "path": path,
    }
    if path is None:
        entry["install"] = facts.install
    else:
        entry["version"] = await command_version(path, facts.version_args, env)
    logged_in = facts.login_state(env)
    entry["loggedIn"] = logged_in
    if logged_in:
        entry["credential"] = facts.credential_source(env)
    if not logged_in:
        entry["login"] = facts.login
    entry["ok"] = path is not None and logged_in is not False
    return entry


async def gather(env: Mapping[str, str] | None = None, workspace: str | None = None) -> dict[str, Any]:
    """The whole report (the JSON that `doctor --json` prints)."""
    from cao_sidecar.providers import all_providers

    env = dict(os.environ if env is None else env)
    tmux_path = command_path("tmux", env)
    providers = all_providers(workspace)
    jobs = [_provider_entry(p, env) for p in providers.values()]
    tmux_version = command_version(tmux_path, ("-V",), env) if tmux_path else asyncio.sleep(0, None)
    version, *entries = await asyncio.gather(tmux_version, *jobs)
    tmux: dict[str, Any] = {"found": tmux_path is not None, "path": tmux_path, "version": version}
    if tmux_path is None:
        tmux["install"] = "apt-get install tmux"
    editors = [
        {
            "editor": title,
            "binary": binary,
            "found": command_path(binary, env) is not None,
            "path": command_path(binary, env),
            "client": client,
        }
        for title, binary, client in EDITORS
    ]
    return {"tmux": tmux, "providers": entries, "editors": editors, "ok": tmux_path is not None}


def format_report(report: dict[str, Any]) -> str:
    lines = []
    tmux = report["tmux"]
    if tmux["found"]:
        lines.append(f"ok       tmux {tmux.get('version') or '(version unknown)'}  {tmux['path']}")
    else:
        lines.append(f"MISSING  {INSTALL_TMUX}")
    lines.append("")
    lines.append("Agent CLIs (provider: CLI):")
    for entry in report["providers"]:
        label = f"{entry['provider']}: {entry['title']}"
        if entry.get("builtIn"):
            lines.append(f"ok       {label}")
            continue
        if not entry["found"]:
            hint = f"install: {entry['install']}" if entry.get("install") else "not on PATH"
            lines.append(f"missing  {label} (`{entry['binary']}`) - {hint}")
            continue
        version = entry.get("version") or "version unknown"
        login = entry.get("loggedIn")
        if login is True:
            state = f"logged in ({entry.get('credential')})"
        elif login is False:
            state = f"NOT LOGGED IN - {entry['login']}"
        else:
            state = "login: cannot tell from here" + (f" (if needed: {entry['login']})" if entry.get("login") else "")
        mark = "ok      " if entry["ok"] else "login   "
        lines.append(f"{mark} {label} {version}  {entry['path']}  {state}")
    lines.append("")
    lines.append("Editors (their clients are in clients/):")
    for entry in report["editors"]:
        where = entry["path"] if entry["found"] else "not found"
        lines.append(f"{'found   ' if entry['found'] else '-       '} {entry['editor']}: {where}  (client: {entry['client']})")
    return "\n".join(lines)


def doctor_command(args: argparse.Namespace) -> int:
    report = asyncio.run(gather(workspace=os.getcwd()))
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    sys.stdout.flush()
    return 0 if report["ok"] else 1
