"""Workspace trust: which folders' `.cao/` may run programs or widen what agents may do.

The store is the user's, never the workspace's: `<config dir>/cao-sidecar/trust.json` (0600, in a
0700 directory), `{"version": 1, "trusted": {"/real/path": {"grantedAt": "..."}}}`. A folder is
trusted when its real path, or a parent folder's, is a key. A missing, unreadable or corrupt file
trusts nothing; a corrupt one is set aside (trust.json.corrupt-<time>) before a grant writes anew.
A trust.json that is a symbolic link, not ours, or writable by others is not believed, and a
write replaces the link itself, never what it points to.

`decide(folder)` is the one place profiles, flows and providers ask. In the sidecar an editor may
decide for its workspace folders instead (`initializationOptions.workspaceTrusted`, or
`cao/setTrust` with `persist: false`): `set_editor_decision`.

Standard library only (and platformdirs through paths), so the command line stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

FILE_NAME = "trust.json"
VERSION = 1
MAX_BYTES = 1024 * 1024
HOW_TO_TRUST = (
    "to trust the folder, run `cao-sidecar trust {path}` or use your editor's trust command "
    "(VS Code: Workspace Trust; Neovim: :Cao trust; Emacs: M-x cao-trust)"
)

PathLike = Union[str, "os.PathLike[str]"]


def how_to_trust(folder: PathLike) -> str:
    return HOW_TO_TRUST.format(path=folder)


def trust_file() -> Path:
    from cao_sidecar import paths

    return paths.config_dir() / FILE_NAME


def real(folder: PathLike) -> str:
    return os.path.realpath(os.path.expanduser(os.fspath(folder)))


# ---- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreState:
    trusted: dict[str, str]  # real path -> grantedAt
    problem: Optional[str] = None  # why the file was not believed (None: fine or absent)


def read_store(file: Optional[Path] = None) -> StoreState:
    """What the store says; never raises (a bad file trusts nothing and says why)."""
    file = file or trust_file()
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return StoreState({})
    except OSError as exc:
        if os.path.islink(file):
            return StoreState({}, f"{file} is a symbolic link; it is not used")
        return StoreState({}, f"cannot read {file}: {exc.strerror}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return StoreState({}, f"{file} is not a regular file; it is not used")
        if info.st_uid != os.getuid():
            return StoreState({}, f"{file} belongs to another user; it is not used")
        if info.st_mode & 0o022:
            return StoreState({}, f"{file} is writable by others; it is not used (chmod 600 it)")
        data = os.read(fd, MAX_BYTES + 1)
    except OSError as exc:
        return StoreState({}, f"cannot read {file}: {exc.strerror}")
    finally:
        os.close(fd)
    trusted = _parse(data)
    if trusted is None:
        return StoreState({}, f"{file} is not a valid trust file; nothing is trusted until it is fixed or replaced")
    return StoreState(trusted)


def _parse(data: bytes) -> Optional[dict[str, str]]:
    if len(data) > MAX_BYTES:
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("trusted"), dict):
        return None
    out: dict[str, str] = {}
    for key, value in doc["trusted"].items():
        if not isinstance(key, str) or not os.path.isabs(key) or "\x00" in key:
            return None
        granted = value.get("grantedAt") if isinstance(value, dict) else None
        out[os.path.normpath(key)] = granted if isinstance(granted, str) else ""
    return out


def trusted_by(folder: PathLike, trusted: dict[str, str]) -> Optional[str]:
    """The key that trusts `folder` (its real path or a parent's), or None."""
    path = Path(real(folder))
    for candidate in (path, *path.parents):
        if str(candidate) in trusted:
            return str(candidate)
    return None


def is_trusted(folder: PathLike, file: Optional[Path] = None) -> bool:
    return trusted_by(folder, read_store(file).trusted) is not None


# ---- writing ---------------------------------------------------------------------------------


def grant(folder: PathLike, file: Optional[Path] = None) -> str:
    """Trust `folder` (its real path). Returns the key written."""
    key = real(folder)
    with _locked(file or trust_file()) as (path, state):
        if key not in state.trusted:
            state.trusted[key] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            _write(path, state.trusted)
    return key


def revoke(folder: PathLike, file: Optional[Path] = None) -> bool:
    """Forget `folder` (its real path). False if it was not a key (a parent may still trust it)."""
    key = real(folder)
    with _locked(file or trust_file()) as (path, state):
        if key not in state.trusted:
            return False
        del state.trusted[key]
        _write(path, state.trusted)
    return True


@contextlib.contextmanager
def _locked(file: Path) -> Iterator[tuple[Path, StoreState]]:
    """Read-modify-write under a lock (the CLI and a sidecar may write at once). A file that is
    not believed is set aside first, so a write never silently replaces it."""
    import fcntl

    directory = file.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_fd = os.open(directory / f".{file.name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        state = read_store(file)
        if state.problem is not None and os.path.lexists(file):
            aside = file.with_name(f"{file.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}")
            os.replace(file, aside)  # moves a link itself, never its target
            state = StoreState({}, f"{state.problem}; set aside as {aside}")
        yield file, StoreState(dict(state.trusted), state.problem)
    finally:
        os.close(lock_fd)


def _write(file: Path, trusted: dict[str, str]) -> None:
    doc = {"version": VERSION, "trusted": {k: {"grantedAt": v} for k, v in sorted(trusted.items())}}
    fd, temp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=1)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, file)  # replaces a link at `file`, never writes through it
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


# ---- the decision ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    trusted: bool
    source: str  # "store" | "editor" | "none"


class Policy:
    """The store, plus what an editor decided for this process's folders (never written)."""

    def __init__(self) -> None:
        self.editor_default: Optional[bool] = None  # initializationOptions.workspaceTrusted
        self._editor: dict[str, Optional[bool]] = {}  # real path -> persist:false (None: the store decides)
        self._cache: tuple[object, StoreState] = (None, StoreState({}))

    def set_editor_decision(self, folder: Optional[PathLike], trusted: Optional[bool]) -> None:
        """`folder` None: the default for every folder. `trusted` None: the store decides for it
        (after the user wrote the store from the editor)."""
        if folder is None:
            self.editor_default = trusted
            self._editor.clear()
        else:
            self._editor[real(folder)] = trusted

    def store(self) -> StoreState:
        """The store, read again only when the file changed (stat is cheap, asked per spawn)."""
        file = trust_file()
        try:
            st = os.lstat(file)
            stamp: object = (str(file), st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode, st.st_uid)
        except OSError:
            stamp = (str(file), None)
        if self._cache[0] != stamp:
            self._cache = (stamp, read_store(file))
        return self._cache[1]

    def decide(self, folder: PathLike) -> Decision:
        key = real(folder)
        editor = self._editor[key] if key in self._editor else self.editor_default
        if editor is not None:
            return Decision(editor, "editor")
        if trusted_by(key, self.store().trusted) is not None:
            return Decision(True, "store")
        return Decision(False, "none")


POLICY = Policy()


def decide(folder: PathLike) -> Decision:
    return POLICY.decide(folder)


def folder_trusted(folder: Optional[PathLike]) -> bool:
    return folder is not None and POLICY.decide(folder).trusted
