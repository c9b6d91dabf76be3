"""The user's hosts: `<config dir>/hosts.yaml`, validated with errors that name the entry.

hosts:
  - name: box1                 # how profiles, spawn and terminal ids (box1:ab12cd34) name it
    ssh: dev@box1.example.com  # the ssh destination
    options: ["-p", "2222", "-i", "~/.ssh/box1"]   # extra ssh arguments (optional)
    python: python3            # the host's Python 3.11+ (optional)
    workspace: ~/cao-node      # the node's folder on the host (optional; default
                               # ~/.cache/cao-sidecar/node): agents' default working dir
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import attrs
import yaml

from cao_sidecar import paths

NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
RESERVED = {"local", "auto", "main"}  # local: the caller's machine; main: the orchestrator's; auto: placed


def runs_elsewhere(profile: object) -> Optional[str]:
    """The host a profile's `host:` sends its agents to, if it names one (auto, main and local
    do not): for what starts agents on this machine only (flows, workflow steps)."""
    host = getattr(profile, "host", None)
    return host if isinstance(host, str) and host and host not in RESERVED else None


class HostsError(ValueError):
    """hosts.yaml is not valid; the message says where."""


@attrs.frozen
class HostConfig:
    name: str
    ssh: str
    options: tuple[str, ...] = ()
    python: str = "python3"
    workspace: Optional[str] = None


def hosts_file() -> Path:
    return paths.config_dir() / "hosts.yaml"


def parse_hosts(text: str, source: str = "hosts.yaml") -> dict[str, HostConfig]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HostsError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("hosts", []), list):
        raise HostsError(f"{source}: expected a mapping with a list 'hosts'")
    hosts: dict[str, HostConfig] = {}
    for index, entry in enumerate(data.get("hosts") or []):
        where = f"{source}: hosts[{index}]"
        if not isinstance(entry, dict):
            raise HostsError(f"{where}: expected a mapping with 'name' and 'ssh'")
        unknown = set(entry) - {"name", "ssh", "options", "python", "workspace"}
        if unknown:
            raise HostsError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        name, ssh = entry.get("name"), entry.get("ssh")
        if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED:
            raise HostsError(
                f"{where}: 'name' must be 1-32 lowercase letters, digits or '-', starting with a letter, "
                f"and not {' or '.join(sorted(RESERVED))}; got {name!r}"
            )
        if name in hosts:
            raise HostsError(f"{where}: host '{name}' is defined twice")
        if not isinstance(ssh, str) or not ssh.strip() or ssh.startswith("-") or any(c.isspace() for c in ssh):
            raise HostsError(f"{where} ({name}): 'ssh' must be an ssh destination like user@host; got {ssh!r}")
        options = entry.get("options", [])
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise HostsError(f"{where} ({name}): 'options' must be a list of strings (ssh arguments)")
        python = entry.get("python", "python3")
        if not isinstance(python, str) or not python or any(c.isspace() for c in python):
            raise HostsError(f"{where} ({name}): 'python' must be a command name or path without spaces")
        workspace = entry.get("workspace")
        if workspace is not None and (not isinstance(workspace, str) or not workspace or "\n" in workspace):
            raise HostsError(f"{where} ({name}): 'workspace' must be a folder path on the host")
        hosts[name] = HostConfig(name=name, ssh=ssh, options=tuple(options), python=python, workspace=workspace)
    return hosts


def load_hosts(path: Optional[Path] = None) -> dict[str, HostConfig]:
    """The hosts of `path` (default: the user's hosts.yaml); none when the file does not exist."""
    path = path or hosts_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise HostsError(f"{path}: cannot read: {exc}") from None
    return parse_hosts(text, str(path))


QUALIFIED_KEYS = ("terminalId",)


def qualify(value: Any, host: str) -> Any:
    """`value` with every `terminalId` made `host:id`."""
    if isinstance(value, list):
        return [qualify(v, host) for v in value]
    if isinstance(value, dict):
        return {
            k: (f"{host}:{v}" if k in QUALIFIED_KEYS and isinstance(v, str) and ":" not in v else qualify(v, host))
            for k, v in value.items()
        }
    return value


def split_terminal_id(terminal_id: str) -> tuple[Optional[str], str]:
    """`box1:ab12cd34` -> ("box1", "ab12cd34"); a local id -> (None, id)."""
    host, sep, local = terminal_id.partition(":")
    return (host, local) if sep else (None, terminal_id)


def ssh_base(host: HostConfig) -> list[str]:
    """The ssh command up to the destination: no prompts, dead links noticed within ~15 s."""
    return [
        "ssh", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
        "-o", "ConnectTimeout=10", *host.options, host.ssh,
    ]  # fmt: skip


def attach_over_ssh(host: HostConfig, argv: list[str]) -> list[str]:
    """A terminal on a remote agent's window: its attach command, run over `ssh -t`."""
    import shlex

    base = ssh_base(host)
    return [base[0], "-t", *base[1:], shlex.join(argv)]
