"""`host: auto`: which machines can take one more agent of a profile, from what each reports.

A machine fits when it has the command of the profile's provider (the CLI's binary; the built-in
`mock` runs on our own Python and needs none) and at least `CAO_AGENT_MEMORY_MB` of memory
available (the kernel's MemAvailable: a real agent CLI takes a few hundred MiB). This machine is
looked at directly; a host is asked over its link (its node answers `cao/nodeCapacity` from its
own environment, the one its agents get), so the memory is what it has now, not at its first
contact. Of the machines that fit, the one with the
fewest live agents per CPU wins (team.RemoteHosts.place); none fitting is an error that says
what each lacks.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Optional

import attrs

from cao_sidecar.core.errors import CaoError, InvalidRequest
from cao_sidecar.hosts.install import Probe
from cao_sidecar.providers.cli_facts import command_path, facts_of


@attrs.frozen
class Needs:
    """What one more agent of a profile needs on the machine that runs it."""

    profile: str
    command: Optional[str]  # the CLI's binary (None: nothing to install, e.g. mock)
    memory_mb: int

    def describe(self) -> str:
        wanted = ([f"the command `{self.command}`"] if self.command else []) + [f"{self.memory_mb} MiB free"]
        return " and ".join(wanted)


class NoMachineFits(InvalidRequest):
    """`host: auto` found no machine that can take the agent."""


def needs_of(core: Any, profile: Optional[str], provider: Optional[str], memory_mb: int) -> Needs:
    """What an agent of `profile` (with `provider` instead of its own, if given) needs. A profile or
    provider this machine does not know needs only memory here: the machine it lands on says the rest."""
    from cao_sidecar.providers import get_provider

    name = profile or "?"
    try:
        found = core.catalog.get(profile) if profile else None
        options = dict(getattr(found, "extra", None) or {})
        provider_impl = get_provider(provider or getattr(found, "provider", None) or "", workspace=core.default_cwd)
    except CaoError:
        return Needs(name, None, memory_mb)
    return Needs(name, command_of(provider_impl, options.get("command")), memory_mb)


def command_of(provider: Any, profile_command: Any) -> Optional[str]:
    """The command an agent on `provider` runs (`profile_command`: the profile's `command` option)."""
    if isinstance(profile_command, str) and profile_command.strip():  # the profile's `command` option wins
        return profile_command.split()[0]
    if isinstance(profile_command, list) and profile_command and isinstance(profile_command[0], str):
        return profile_command[0]
    facts = facts_of(provider)
    if facts is not None:
        return facts.binary
    command = getattr(provider, "command", None)  # a user-defined provider's argv
    if isinstance(command, (tuple, list)) and command and isinstance(command[0], str):
        return command[0]
    return None  # our own Python (mock)


def _available_mb() -> int:
    """This machine's MemAvailable in MiB (0: unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def lacks(needs: Needs, has_command: bool, available_mb: int) -> list[str]:
    """What a machine lacks for one more agent (an unknown memory figure, 0, is not held against it)."""
    out = []
    if needs.command is not None and not has_command:
        out.append(f"the command `{needs.command}`")
    if 0 < available_mb < needs.memory_mb:
        out.append(f"memory ({available_mb} MiB free, {needs.memory_mb} MiB wanted)")
    return out


async def here_lacks(needs: Needs) -> list[str]:
    """What this machine lacks (its PATH as the agents get it, its available memory)."""
    has = needs.command is None or command_path(needs.command, os.environ) is not None
    return lacks(needs, has, await asyncio.to_thread(_available_mb))


MAX_COMMANDS = 32


def capacity_here(params: Any) -> dict[str, Any]:
    """On a node: its CPUs, available memory and which of `params.commands` its agents can run."""
    asked = params.get("commands") if isinstance(params, dict) else None
    if (
        not isinstance(asked, list)
        or len(asked) > MAX_COMMANDS
        or not all(isinstance(c, str) and 0 < len(c) < 256 for c in asked)
    ):
        asked = []
    return {
        "cpus": os.cpu_count() or 0,
        "memoryMb": _available_mb(),
        "commands": [c for c in asked if command_path(c, os.environ) is not None],
    }


def capacity_probe(answer: Any) -> Probe:
    """A node's `cao/nodeCapacity` answer as a Probe (what host_lacks reads)."""
    answer = answer if isinstance(answer, dict) else {}

    def number(key: str) -> int:
        value = answer.get(key)
        return value if isinstance(value, int) and value > 0 else 0

    commands = answer.get("commands")
    clis = tuple(c for c in commands if isinstance(c, str)) if isinstance(commands, list) else ()
    return Probe(reachable=True, clis=clis, cpus=number("cpus"), memory_mb=number("memoryMb"))


def host_lacks(needs: Needs, probe: Probe) -> list[str]:
    if not probe.reachable:
        return [f"a connection ({probe.error})"]
    return lacks(needs, needs.command is None or needs.command in probe.clis, probe.memory_mb)


def no_fit_error(needs: Needs, lacking: dict[str, list[str]]) -> NoMachineFits:
    why = "; ".join(f"{name} lacks {', '.join(what)}" for name, what in lacking.items())
    return NoMachineFits(
        f"host: auto: no machine can run profile '{needs.profile}' (it needs {needs.describe()}): {why}",
        field="host", lacking=lacking,
    )  # fmt: skip
