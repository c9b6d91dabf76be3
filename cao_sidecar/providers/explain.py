"""`cao-sidecar explain --provider NAME [--json] FILE`: how a provider reads a captured screen.

Prints the status the provider gives the screen, the rule that decided it and the answer it
extracts. FILE is plain text as `tmux capture-pane -p` writes it; ANSI escapes (`-e`) are
stripped first; `-` reads standard input. With `--json`, one object:
`{"status": ..., "rule": ..., "answer": ...}` (protocol status names; answer null when none).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

from cao_sidecar.providers.base import Provider
from cao_sidecar.providers.screen import strip_ansi


def explain(provider: Provider, screen: str) -> dict[str, Optional[str]]:
    text = strip_ansi(screen)
    result = provider.classify_rule(text)
    return {"status": result.status.value, "rule": result.rule, "answer": provider.extract_answer(text)}


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="cao-sidecar explain", description=__doc__)
    parser.add_argument("--provider", required=True, help="provider name (built-in or user-defined)")
    parser.add_argument("--json", action="store_true", help='print {"status", "rule", "answer"} as JSON')
    parser.add_argument(
        "--workspace", default=os.getcwd(), help="workspace whose .cao/providers/ is searched (default: current directory)"
    )
    parser.add_argument("file", help="captured screen (plain text, ANSI escapes allowed); '-' for standard input")
    return parser


def run(args: argparse.Namespace) -> int:
    from cao_sidecar.core.errors import UnknownProvider
    from cao_sidecar.providers import get_provider, user_providers

    try:
        provider = get_provider(args.provider, workspace=args.workspace)
    except UnknownProvider as exc:
        print(f"cao-sidecar explain: {exc.message}", file=sys.stderr)
        for path, error in user_providers(args.workspace)[1].items():
            print(f"  provider file {path}: {error}", file=sys.stderr)
        from cao_sidecar import trust

        if not trust.folder_trusted(args.workspace):
            print(f"  {args.workspace} is not trusted: its .cao/providers/ are not loaded (cao-sidecar trust)", file=sys.stderr)
        return 2
    try:
        if args.file == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as handle:
                raw = handle.read()
    except OSError as exc:
        print(f"cao-sidecar explain: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    result = explain(provider, raw.decode("utf-8", "replace"))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(f"provider: {getattr(provider, 'name', args.provider)}")
    print(f"status:   {result['status']}")
    print(f"rule:     {result['rule']}")
    if result["answer"] is None:
        print("answer:   (none)")
    else:
        print("answer:")
        for line in result["answer"].split("\n"):
            print(f"  {line}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    try:
        return run(build_parser().parse_args(argv))
    except BrokenPipeError:  # `explain ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
