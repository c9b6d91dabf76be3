"""`cao-sidecar trust [PATH] | --list | --revoke PATH | --check PATH`: the user's trust store
(cao_sidecar.trust) from a terminal. Light imports: editor clients run `--check` before they
start a sidecar. A running sidecar watches the store, so a change takes effect at once."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from cao_sidecar import trust


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cao-sidecar trust",
        description="Trust a folder: its .cao/ (profiles, flows, providers) may then run programs and set what agents may do.",
    )
    parser.add_argument("path", nargs="?", help="the folder to trust (default: the current directory)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="print the trusted folders")
    group.add_argument("--revoke", metavar="PATH", help="stop trusting PATH")
    group.add_argument(
        "--check", metavar="PATH", nargs="?", const=".", help="exit 0 if PATH is trusted, 1 if not (prints nothing)"
    )
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.path is not None and (args.list or args.revoke or args.check):
        parser.error("give PATH alone (to trust it) or with none of --list, --revoke, --check")
    if args.check is not None:
        return 0 if trust.is_trusted(args.check) else 1
    if args.list:
        return _list()
    if args.revoke is not None:
        return _revoke(args.revoke)
    return _grant(args.path or os.getcwd())


def _warn_problem(state: trust.StoreState) -> None:
    if state.problem:
        print(f"cao-sidecar trust: {state.problem}", file=sys.stderr)


def _list() -> int:
    state = trust.read_store()
    _warn_problem(state)
    if not state.trusted:
        print(f"no folder is trusted ({trust.trust_file()})")
    for path, granted in sorted(state.trusted.items()):
        print(f"{path}  (since {granted or 'unknown'})")
    return 0


def _grant(path: str) -> int:
    if not os.path.isdir(path):
        print(f"cao-sidecar trust: {path} is not a directory", file=sys.stderr)
        return 2
    before = trust.read_store()
    try:
        key = trust.grant(path)
    except OSError as exc:
        print(f"cao-sidecar trust: cannot write {trust.trust_file()}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if before.problem:
        print(f"cao-sidecar trust: {before.problem}; it was set aside and a new store written", file=sys.stderr)
    print(f"trusted: {key}")
    print(
        f"its .cao/ (profiles, flows and their gates, providers) now takes effect, in running sidecars too; store: {trust.trust_file()}"
    )
    return 0


def _revoke(path: str) -> int:
    try:
        removed = trust.revoke(path)
    except OSError as exc:
        print(f"cao-sidecar trust: cannot write {trust.trust_file()}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    key = trust.real(path)
    still: Optional[str] = trust.trusted_by(key, trust.read_store().trusted)
    if removed:
        print(f"no longer trusted: {key}")
    else:
        print(f"{key} was not in the trust store", file=sys.stderr)
    if still is not None:
        print(f"note: {key} is still trusted through {still} (revoke that to stop it)", file=sys.stderr)
    return 0 if removed else 1
