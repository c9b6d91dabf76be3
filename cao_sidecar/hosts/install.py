"""The node's program on a host: probed, and installed or upgraded by the orchestrator itself.

The orchestrator builds a wheel of the very package it runs (from its checkout; cached by a hash
of the sources), copies it over ssh, and installs it on the host into
`~/.cache/cao-sidecar/<tag>` (a venv; pip takes the dependencies from the host's configured
index or wheel dirs). `<tag>` is the version plus the source hash: an installed tag is skipped,
a changed program gets a new one. The user only gives SSH access.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import sys
from pathlib import Path
from typing import Optional

import attrs
import platformdirs

from cao_sidecar import __version__, paths
from cao_sidecar.hosts.config import HostConfig, ssh_base

KNOWN_CLIS = ("claude", "codex", "gemini", "opencode", "aider", "q", "kiro-cli")
PROBE_TIMEOUT = 30.0
INSTALL_TIMEOUT = 600.0
REMOTE_ROOT = "~/.cache/cao-sidecar"


class InstallError(RuntimeError):
    """The node could not be installed on the host; the message says what is missing."""


@attrs.frozen
class Probe:
    """What a host has, as `hosts check` reports it."""

    reachable: bool
    error: str = ""
    python: Optional[str] = None  # "3.11.2", None if missing
    python_ok: bool = False
    tmux: Optional[str] = None
    clis: tuple[str, ...] = ()
    installed: bool = False  # this orchestrator's version is there
    cpus: int = 0  # the host's capacity, for `host: auto`
    memory_mb: int = 0  # available memory

    def missing(self) -> list[str]:
        if not self.reachable:
            return [f"ssh: {self.error}"]
        out = []
        if self.python is None:
            out.append("python3 (3.11 or newer)")
        elif not self.python_ok:
            out.append(f"python3 3.11 or newer (the host has {self.python})")
        if self.tmux is None:
            out.append("tmux")
        return out


def _package_root() -> Path:
    return Path(__file__).resolve().parent.parent


def source_tag() -> str:
    """`<version>-<hash of the package's sources>`: the node's install directory on a host."""
    digest = hashlib.sha256()
    root = _package_root()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".md", ".json"):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return f"{__version__}-{digest.hexdigest()[:12]}"


def remote_dir(tag: str) -> str:
    return f"{REMOTE_ROOT}/{tag}"


async def _run(argv: list[str], stdin: Optional[bytes] = None, timeout: float = PROBE_TIMEOUT) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        return 255, "", f"timed out after {timeout:.0f} s"
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def _probe_script(host: HostConfig, tag: str) -> str:
    py = shlex.quote(host.python)
    clis = " ".join(KNOWN_CLIS)
    return f"""
if command -v {py} >/dev/null 2>&1; then
  echo "python=$({py} -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)"
  echo "python_ok=$({py} -c 'import sys; print(int(sys.version_info >= (3, 11)))' 2>/dev/null)"
fi
command -v tmux >/dev/null 2>&1 && echo "tmux=$(tmux -V 2>/dev/null)"
for c in {clis}; do command -v "$c" >/dev/null 2>&1 && echo "cli=$c"; done
test -x {remote_dir(tag)}/bin/cao-sidecar && echo installed=1
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null)"
echo "memory=$(awk '/^MemAvailable:/ {{print int($2 / 1024)}}' /proc/meminfo 2>/dev/null)"
echo end=1
"""


async def probe(host: HostConfig, tag: Optional[str] = None) -> Probe:
    """One ssh round trip: python, tmux, agent CLIs and whether this version is installed."""
    code, out, err = await _run([*ssh_base(host), "/bin/sh -s"], _probe_script(host, tag or source_tag()).encode())
    values: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key, []).append(value.strip())
    if "end" not in values:
        reason = err.strip().splitlines()[-1] if err.strip() else f"ssh exited with status {code}"
        return Probe(reachable=False, error=reason)
    python = (values.get("python") or [""])[0] or None
    return Probe(
        reachable=True, python=python, python_ok=(values.get("python_ok") or ["0"])[0] == "1",
        tmux=values["tmux"][0] if values.get("tmux") else None, clis=tuple(values.get("cli", [])), installed="installed" in values,
        cpus=_number(values.get("cpus")), memory_mb=_number(values.get("memory")),
    )  # fmt: skip


def _number(found: Optional[list[str]]) -> int:
    try:
        return max(0, int((found or ["0"])[0]))
    except ValueError:
        return 0


def _wheel_cache() -> Path:
    return Path(platformdirs.user_cache_dir(paths.APP)) / "wheels"


async def build_wheel(tag: str) -> Path:
    """A wheel of the running package, built once per source tag."""
    out_dir = _wheel_cache() / tag
    built = sorted(out_dir.glob("cao_sidecar-*.whl")) if out_dir.is_dir() else []
    if built:
        return built[0]
    checkout = _package_root().parent
    if not (checkout / "pyproject.toml").is_file():
        raise InstallError(f"cannot build the node's wheel: {checkout} is not a cao-sidecar checkout (no pyproject.toml)")
    out_dir.mkdir(parents=True, exist_ok=True)
    code, _out, err = await _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir), str(checkout)], timeout=INSTALL_TIMEOUT
    )
    built = sorted(out_dir.glob("cao_sidecar-*.whl"))
    if code != 0 or not built:
        raise InstallError(f"building the node's wheel failed: {err.strip()[-2000:]}")
    return built[0]


async def ensure_installed(host: HostConfig, tag: Optional[str] = None) -> tuple[str, Probe]:
    """Install this version on the host unless it is there; returns the tag and what the host
    has. Raises InstallError naming what is missing (no ssh, no Python 3.11, no tmux)."""
    if tag is None:
        tag = await asyncio.to_thread(source_tag)
    found = await probe(host, tag)
    missing = found.missing()
    if missing:
        raise InstallError(f"host '{host.name}' ({host.ssh}) lacks: {', '.join(missing)}")
    if found.installed:
        return tag, found
    wheel = await build_wheel(tag)
    target = remote_dir(tag)
    remote_wheel = f"{REMOTE_ROOT}/dl/{wheel.name}"
    code, _out, err = await _run([*ssh_base(host), f"mkdir -p {REMOTE_ROOT}/dl && cat > {remote_wheel}"], wheel.read_bytes())
    if code != 0:
        raise InstallError(f"copying the node's wheel to '{host.name}' failed: {err.strip()[-1000:]}")
    py = shlex.quote(host.python)
    script = (
        f"rm -rf {target}.part && {py} -m venv {target}.part && {target}.part/bin/python -m pip install -q "
        f"--disable-pip-version-check {remote_wheel} && rm -rf {target} && mv {target}.part {target}"
    )
    # The venv is moved into place only when complete: a half install is never taken as installed.
    # Its scripts name the .part path in their shebangs, so the node is run through its python.
    code, _out, err = await _run([*ssh_base(host), script], timeout=INSTALL_TIMEOUT)
    if code != 0:
        raise InstallError(f"installing the node on '{host.name}' failed: {err.strip()[-2000:]}")
    return tag, found


def node_argv(host: HostConfig, tag: str) -> list[str]:
    """The link's ssh command: the node on the host, its stdio the link."""
    command = f"{remote_dir(tag)}/bin/python -m cao_sidecar node"
    if host.workspace:  # `~/x` stays unquoted at its start so that the host's shell expands it
        rest = host.workspace[2:] if host.workspace.startswith("~/") else None
        command += " --workspace " + ("~/" + shlex.quote(rest) if rest else shlex.quote(host.workspace))
    return [*ssh_base(host), command]


__all__ = ["InstallError", "Probe", "build_wheel", "ensure_installed", "node_argv", "probe", "source_tag"]
