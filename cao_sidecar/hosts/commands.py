"""`cao-sidecar hosts list|check NAME`: the user's hosts, and what one of them is missing."""

from __future__ import annotations

import argparse
import asyncio
import sys

from cao_sidecar.hosts.config import HostsError, hosts_file, load_hosts
from cao_sidecar.hosts.install import KNOWN_CLIS, probe, source_tag


def _check(name: str) -> int:
    hosts = load_hosts()
    host = hosts.get(name)
    if host is None:
        known = ", ".join(sorted(hosts)) or f"none (add them to {hosts_file()})"
        print(f"cao-sidecar hosts: unknown host '{name}'; hosts: {known}", file=sys.stderr)
        return 2
    tag = source_tag()
    wanted = _user_commands()
    found = asyncio.run(probe(host, tag, tuple(wanted.values())))
    print(f"{host.name} ({host.ssh})")
    if not found.reachable:
        print(f"  ssh: NOT reachable: {found.error}")
    else:
        print("  ssh: reachable")
        python = found.python or "missing"
        print(f"  python3: {python}" + ("" if found.python_ok or found.python is None else " (3.11 or newer needed)"))
        print(f"  tmux: {found.tmux or 'missing'}")
        print(f"  agent CLIs: {', '.join(c for c in found.clis if c in KNOWN_CLIS) or 'none found'} (mock needs none)")
        for name, command in wanted.items():  # they travel to the host; their CLIs must be there
            print(f"  your provider {name}: `{command}` {'found' if command in found.clis else 'NOT found'}")
        print(f"  capacity: {found.cpus or '?'} CPUs, {found.memory_mb or '?'} MB available")
        print(f"  cao-sidecar {tag}: {'installed' if found.installed else 'not installed (installed on first use)'}")
    missing = found.missing()
    print(f"missing: {', '.join(missing)}" if missing else "ready")
    return 1 if missing else 0


def _user_commands() -> dict[str, str]:
    """The commands of your user-defined providers (this folder's, if trusted, and your config
    dir's), by provider name."""
    import os

    from cao_sidecar.hosts.placement import command_of
    from cao_sidecar.providers import user_providers

    found = {name: command_of(provider, None) for name, provider in user_providers(os.getcwd())[0].items()}
    return {name: command for name, command in sorted(found.items()) if command is not None}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cao-sidecar hosts", description="the team's hosts (hosts.yaml)")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the hosts of hosts.yaml")
    check = sub.add_parser("check", help="what a host is missing: ssh, python3 >= 3.11, tmux; which agent CLIs it has")
    check.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.action == "list":
            for host in load_hosts().values():
                print(f"{host.name}\t{host.ssh}\t{' '.join(host.options)}")
            return 0
        return _check(args.name)
    except HostsError as exc:
        print(f"cao-sidecar hosts: {exc}", file=sys.stderr)
        return 2
