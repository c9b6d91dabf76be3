"""Where the sidecar keeps things. Everything goes through platformdirs, so XDG_* redirect it."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "cao-sidecar"


def state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP))


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP))


def user_profiles_dir() -> Path:
    return config_dir() / "agents"


def tmux_socket_name(cli_value: str | None = None, project: str | os.PathLike[str] | None = None) -> str:
    """--tmux-socket, else $CAO_TMUX_SOCKET (settings), else one derived from the project (default:
    the current directory): each project gets its own tmux server, so its own team."""
    # The setting `Settings.tmux_socket` read directly: forwarders call this and must not import
    # attrs for one variable (tests/test_forwarder_imports.py).
    # Blank means unset, as in settings.
    return cli_value or os.environ.get("CAO_TMUX_SOCKET", "").strip() or project_tmux_socket(project)


def project_tmux_socket(project: str | os.PathLike[str] | None = None) -> str:
    """`cao-<folder name>-<hash of its real path>`: readable in `tmux ls`, unique per project."""
    import hashlib
    import re

    path = os.path.realpath(project if project is not None else os.getcwd())
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", os.path.basename(path)).strip("-")[:24] or "root"
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"cao-{slug}-{digest}"


class UnsafeDirectory(RuntimeError):
    """A directory the sidecar would keep private things in belongs to someone else."""


def ensure_private_dir(path: Path) -> Path:
    """`path` as a directory of ours, 0700: everything the sidecar keeps in it (sockets, tokens,
    logs, databases) is then out of other users' reach, whatever the files' own modes."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} belongs to another user (uid {info.st_uid}); refusing to keep private files there")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


# A Unix socket's address holds 108 bytes on Linux and 104 on macOS, the final NUL included.
SOCKET_PATH_MAX = 103


def unix_socket_path(wanted: Path) -> Path:
    """`wanted` when it fits in a Unix socket address, else a short stand-in for it: a private
    directory of ours under $XDG_RUNTIME_DIR or /tmp, the name a hash of `wanted`, so every process
    that looks for `wanted` finds the same socket. A deep home or state directory then still works."""
    if len(os.fsencode(wanted)) <= SOCKET_PATH_MAX:
        return wanted
    import hashlib

    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and len(os.fsencode(runtime)) <= 40:
        short = Path(runtime) / APP
    else:
        short = Path("/tmp") / f"{APP}-{os.getuid()}"
    try:
        if short.is_symlink():  # /tmp is shared: never follow a link someone planted there
            raise UnsafeDirectory(f"{short} is a symbolic link; refusing to keep sockets there")
        ensure_private_dir(short)
    except OSError as exc:
        raise UnsafeDirectory(f"cannot use {short} for the socket that stands in for {wanted}: {exc}") from exc
    digest = hashlib.sha256(os.fsencode(wanted)).hexdigest()[:32]
    return short / f"{digest}.sock"


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """A file descriptor for a private file (0600), never through a symlink planted in its place."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private_text(path: Path, text: str) -> None:
    with os.fdopen(open_private(path), "w", encoding="utf-8") as handle:
        handle.write(text)


class InstanceBusy(RuntimeError):
    """Another live sidecar already serves this tmux socket with this state directory."""


def acquire_instance_lock(state: Path, tmux_socket: str) -> int:
    """One sidecar per (state dir, tmux socket): two would adopt the same agents and type into
    the same panes. The lock is a kernel flock, so it dies with its process (no stale locks).
    Returns the lock's file descriptor, to be kept open for the life of the process."""
    import fcntl

    path = ensure_private_dir(state) / f"sidecar-{tmux_socket}.lock"
    fd = open_private(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise InstanceBusy(
            f"another cao-sidecar (pid {holder}) already serves tmux socket '{tmux_socket}' with state "
            f"directory {state}; start this one with another --tmux-socket (or CAO_TMUX_SOCKET)"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
