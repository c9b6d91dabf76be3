"""The node's program on a host: probed, and installed or upgraded by the orchestrator itself.

The orchestrator builds a wheel of the very package it runs (from its checkout; cached by a hash
of the sources), copies it over ssh, and installs it on the host into
`~/.cache/cao-sidecar/<tag>`. `<tag>` is the version plus the source hash: an installed tag is
skipped, a changed program gets a new one. The user only gives SSH access.

The dependencies are installed once per set of requirements (and host Python), in a venv of
their own, `~/.cache/cao-sidecar/deps-<hash>` (pip, from the host's configured index or wheel
dirs: the slow part of a first contact). A tag is a small venv without pip whose site-packages
holds the unpacked wheel (pure Python) and a `.pth` that adds the dependencies' venv: a new
version of the program costs seconds, not a pip install.
"""

from __future__ import annotations

import asyncio
import functools
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


@functools.cache  # the program this process runs: what it installs on hosts
def source_tag() -> str:
    """`<version>-<hash of the package's sources and pyproject.toml>`: the node's install directory
    on a host."""
    digest = hashlib.sha256()
    root = _package_root()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".md", ".json"):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    project = root.parent / "pyproject.toml"  # its package list decides what the wheel holds
    if project.is_file():
        digest.update(project.read_bytes())
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


def _probe_script(host: HostConfig, tag: str, commands: tuple[str, ...] = ()) -> str:
    py = shlex.quote(host.python)
    clis = " ".join(shlex.quote(c) for c in dict.fromkeys((*KNOWN_CLIS, *commands)))
    return f"""
if command -v {py} >/dev/null 2>&1; then
  echo "python=$({py} -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)"
  echo "python_ok=$({py} -c 'import sys; print(int(sys.version_info >= (3, 11)))' 2>/dev/null)"
fi
command -v tmux >/dev/null 2>&1 && echo "tmux=$(tmux -V 2>/dev/null)"
for c in {clis}; do command -v "$c" >/dev/null 2>&1 && echo "cli=$c"; done
test -x {remote_dir(tag)}/bin/python && echo installed=1
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null)"
echo "memory=$(awk '/^MemAvailable:/ {{print int($2 / 1024)}}' /proc/meminfo 2>/dev/null)"
echo end=1
"""


async def probe(host: HostConfig, tag: Optional[str] = None, commands: tuple[str, ...] = ()) -> Probe:
    """One ssh round trip: python, tmux, agent CLIs (and `commands`: more to look for, for
    placement) and whether this version is installed."""
    if tag is None:
        tag = await asyncio.to_thread(source_tag)
    script = _probe_script(host, tag, commands)
    code, out, err = await _run([*ssh_base(host), "/bin/sh -s"], script.encode())
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


def requirements(wheel: Path) -> list[str]:
    """The wheel's own requirements (its Requires-Dist without extras), markers kept for pip."""
    import zipfile
    from email.parser import Parser

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode("utf-8"))
    return sorted(r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r)


def deps_dir(wanted: list[str], python: Optional[str]) -> str:
    """Where the host keeps the dependencies for `wanted` under its Python `python` (x.y.z)."""
    minor = ".".join((python or "?").split(".")[:2])
    digest = hashlib.sha256("\n".join([minor, *wanted]).encode()).hexdigest()[:12]
    return f"{REMOTE_ROOT}/deps-{digest}"


def install_script(host: HostConfig, tag: str, wheel_at: str, deps: str, wanted: list[str]) -> str:
    """The host's side of an install (sh): the dependencies' venv unless there, then the tag's.
    Each is built aside and moved into place when complete (a half install is never taken as
    installed); of two installs at once, the first to finish wins and the other's is removed."""
    py = shlex.quote(host.python)
    target = remote_dir(tag)
    purelib = "-c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))'"
    return f"""set -e
deps={deps}; target={target}
if [ ! -x "$deps/bin/python" ]; then
  rm -rf "$deps.part.$$"
  {py} -m venv "$deps.part.$$"
  "$deps.part.$$/bin/python" -m pip install -q --disable-pip-version-check {" ".join(shlex.quote(r) for r in wanted)} >&2
  mv -T "$deps.part.$$" "$deps" 2>/dev/null || rm -rf "$deps.part.$$"
fi
if [ ! -x "$target/bin/python" ]; then
  rm -rf "$target.part.$$"
  {py} -m venv --without-pip "$target.part.$$"
  site=$("$target.part.$$/bin/python" {purelib})
  echo "import site; site.addsitedir('$("$deps/bin/python" {purelib})')" > "$site/cao-sidecar-deps.pth"
  "$target.part.$$/bin/python" -m zipfile -e {wheel_at} "$site"
  mv -T "$target.part.$$" "$target" 2>/dev/null || rm -rf "$target.part.$$"
fi
rm -f {wheel_at}
"$target/bin/python" -c 'import cao_sidecar, yaml, pygls' && echo installed
"""


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
    wanted = await asyncio.to_thread(requirements, wheel)
    wheel_at = f"{REMOTE_ROOT}/dl/{tag}.whl"  # one per tag: two installs at once do not share it
    script = install_script(host, tag, wheel_at, deps_dir(wanted, found.python), wanted)
    # One ssh round trip: the wheel on stdin, then the install.
    command = f"mkdir -p {REMOTE_ROOT}/dl && cat > {wheel_at} && " + shlex.join(["sh", "-c", script])
    code, out, err = await _run([*ssh_base(host), command], await asyncio.to_thread(wheel.read_bytes), timeout=INSTALL_TIMEOUT)
    if code != 0 or "installed" not in out.split():
        raise InstallError(f"installing the node on '{host.name}' failed: {err.strip()[-2000:] or f'exit status {code}'}")
    return tag, found


def node_argv(host: HostConfig, tag: str) -> list[str]:
    """The link's ssh command: the node on the host, its stdio the link."""
    command = f"{remote_dir(tag)}/bin/python -m cao_sidecar node"
    if host.workspace:  # `~/x` stays unquoted at its start so that the host's shell expands it
        rest = host.workspace[2:] if host.workspace.startswith("~/") else None
        command += " --workspace " + ("~/" + shlex.quote(rest) if rest else shlex.quote(host.workspace))
    return [*ssh_base(host), command]


__all__ = ["InstallError", "Probe", "build_wheel", "ensure_installed", "node_argv", "probe", "source_tag"]
