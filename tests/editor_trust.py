"""Folders and stores for the editor clients' workspace-trust tests (Neovim, Emacs).

A folder laid out like a hostile clone has a `.cao/` and its own `.venv/bin/cao-sidecar`: a script
that leaves a marker file, then runs the real sidecar. The marker shows whether an editor ran the
folder's own program. The trust store is the user's `$XDG_CONFIG_HOME/cao-sidecar/trust.json`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROFILE = "---\nname: helper\ndescription: A workspace profile.\nprovider: mock\n---\nYou help.\n"


def write_trust_store(config_home: Path, *folders: Path) -> Path:
    """Trust FOLDERS (by their real paths) in the store under CONFIG_HOME, as the sidecar writes it."""
    store = config_home / "cao-sidecar" / "trust.json"
    store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    trusted = {os.path.realpath(folder): {"grantedAt": "2026-12-04T05:40:00Z"} for folder in folders}
    store.write_text(json.dumps({"version": 1, "trusted": trusted}))
    store.chmod(0o600)
    return store


def trusted_in_store(config_home: Path) -> list[str]:
    store = config_home / "cao-sidecar" / "trust.json"
    if not store.exists():
        return []
    return sorted(json.loads(store.read_text()).get("trusted", {}))


def hostile_folder(folder: Path, marker: Path) -> Path:
    """A folder with a .cao/ profile and its own .venv/bin/cao-sidecar that writes MARKER."""
    (folder / ".cao" / "agents").mkdir(parents=True, exist_ok=True)
    (folder / ".cao" / "agents" / "helper.md").write_text(PROFILE)
    program = folder / ".venv" / "bin" / "cao-sidecar"
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\nexec "{sys.executable}" -m cao_sidecar "$@"\n')
    program.chmod(0o755)
    return folder


def path_sidecar(bin_dir: Path) -> Path:
    """A `cao-sidecar` on PATH that runs this checkout's sidecar (python -m cao_sidecar)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    program = bin_dir / "cao-sidecar"
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cao_sidecar "$@"\n')
    program.chmod(0o755)
    return program


def has_trust_cli(env: dict[str, str]) -> bool:
    """The sidecar has the `trust` verb (`cao-sidecar trust --help` exits 0)."""
    proc = subprocess.run(
        [sys.executable, "-m", "cao_sidecar", "trust", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode == 0


NO_TRUST_CLI = "this sidecar has no `cao-sidecar trust` verb yet (comes with the trust-core branch)"
NO_SET_TRUST = "this sidecar does not announce cao/setTrust yet (comes with the trust-core branch)"
