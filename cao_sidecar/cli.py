"""Command line: `cao-sidecar --stdio` (the server), plus verbs for scripts and humans."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Optional

from cao_sidecar import __version__

if TYPE_CHECKING:
    from pathlib import Path

    from cao_sidecar.daemon.prelaunch import Started


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tmux-socket", help="tmux server socket name (default: $CAO_TMUX_SOCKET, else one per project: cao-<folder>-<hash>)"
    )
    parser.add_argument("--session", default="cao", help="default orchestration session (tmux session) name")
    parser.add_argument("--log-level", default="warning", help="stderr log level (debug, info, warning, error)")


def build_parser() -> argparse.ArgumentParser:
    from cao_sidecar.wire_types.agents import HANDOFF_TIMEOUT_SECONDS

    parser = argparse.ArgumentParser(prog="cao-sidecar", description=__doc__)
    parser.add_argument("--stdio", action="store_true", help="serve JSON-RPC (LSP framing) on stdin/stdout (the default)")
    parser.add_argument(
        "--acp", action="store_true", help="serve the Agent Client Protocol (Zed, JetBrains, ...) on stdin/stdout"
    )
    parser.add_argument("--version", action="version", version=f"cao-sidecar {__version__}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command")

    logs = sub.add_parser("logs", help="print the conversation logs (events, or one agent's terminal output)")
    logs.add_argument("terminal", nargs="?", help="an agent's terminal id: print its terminal output")
    logs.add_argument("--events", action="store_true", help="with TERMINAL: print its events instead")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing what is added")
    logs.add_argument("--json", action="store_true", help="events as JSON lines")

    run = sub.add_parser("run", help="hand one task to a new worker and print its answer")
    run.add_argument("--profile", required=True)
    run.add_argument("--provider")
    run.add_argument("--timeout", type=float, default=HANDOFF_TIMEOUT_SECONDS)
    run.add_argument("task")
    _add_common(run)

    demo = sub.add_parser("demo", help="a supervisor hands parts of a task to two workers (mock agents)")
    _add_common(demo)

    mock = sub.add_parser("mock-agent", help="the built-in deterministic test agent (provider 'mock')")
    mock.add_argument("args", nargs=argparse.REMAINDER)

    host = sub.add_parser("mcp", help="serve MCP on stdin/stdout for an MCP host (Claude Desktop, Cursor, ...) to lead a team")
    host.add_argument("--project", help="the project directory (default: the current directory)")
    _add_common(host)

    bridge = sub.add_parser("mcp-bridge", help="stdio MCP endpoint for CLIs that only speak stdio")
    bridge.add_argument("args", nargs=argparse.REMAINDER)

    doctor = sub.add_parser("doctor", help="what is installed: tmux, each provider's CLI (version, login), editors")
    doctor.add_argument("--json", action="store_true", help="the report as JSON")

    explain = sub.add_parser("explain", help="status, deciding rule and answer a provider reads from a captured screen")
    explain.add_argument("args", nargs=argparse.REMAINDER)  # parsed by cao_sidecar.providers.explain

    trust = sub.add_parser("trust", help="trust a folder's .cao/ (or --list, --revoke PATH, --check PATH)")
    trust.add_argument("args", nargs=argparse.REMAINDER)  # parsed by cao_sidecar.trust_commands

    from cao_sidecar.profiles.commands import add_parsers

    add_parsers(sub, _add_common)  # `profiles ...` and `flows ...`
    from cao_client.verbs import add_parsers as add_verb_parsers

    add_verb_parsers(sub, _add_common)  # `agents`, `spawn`, ... on the project's team
    return parser


USAGE_HINT = """cao-sidecar serves editors on stdin/stdout (JSON-RPC); an editor starts it for you.
From a terminal, try:
  cao-sidecar demo                          a supervisor and two mock workers, live
  cao-sidecar doctor                        what is installed (tmux, agent CLIs, logins)
  cao-sidecar run --profile NAME "TASK"     hand one task to a new worker, print its answer
  cao-sidecar --help                        everything else (--stdio serves anyway)"""


def _tmux_installed() -> bool:
    import shutil

    from cao_sidecar.terminal.errors import INSTALL_TMUX

    if shutil.which("tmux") is not None:
        return True
    print(f"cao-sidecar: {INSTALL_TMUX}", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from cao_sidecar.startup_trace import mark

    mark("main")
    # These two hand their own arguments over untouched (argparse would take their --options) and
    # must start fast: agents run them, and a CLI waits on the bridge before its first tool call.
    if argv[:1] == ["mock-agent"]:
        from cao_sidecar.mock_agent.agent import main as mock_main

        return mock_main(argv[1:])
    if argv[:1] == ["mcp-bridge"]:
        from cao_sidecar.agent_face.bridge import main as bridge_main

        return bridge_main(argv[1:])
    if argv[:1] == ["trust"]:  # light: editor clients run `trust --check` before starting a sidecar
        from cao_sidecar.trust_commands import main as trust_main

        return trust_main(argv[1:])
    if argv[:1] == ["node"]:  # hidden: run over ssh by the orchestrator (cao_sidecar.hosts)
        from cao_sidecar.hosts.node import main_node

        return main_node(argv[1:])
    if argv[:1] == ["hosts"]:  # light: ssh probes, no server
        from cao_sidecar.hosts.commands import main as hosts_main

        return hosts_main(argv[1:])
    if argv[:1] == ["serve"]:  # hidden: the orchestrator process, started by front ends
        return _serve(argv[1:])
    if argv[:1] == ["explain"]:  # light: no server, no pygls/mcp imports
        from cao_sidecar.providers.explain import main as explain_main

        return explain_main(argv[1:])
    front_end = _front_end_options(argv)
    if front_end is not None:  # `--stdio` / `--acp` / `mcp`: a forwarder, started by editors and MCP hosts
        return _forward(front_end)

    args = build_parser().parse_args(argv)

    from cao_sidecar import paths
    from cao_sidecar.app import configure_logging

    configure_logging(args.log_level)
    socket = paths.tmux_socket_name(args.tmux_socket)
    if args.command == "logs":
        return _logs(args)
    if args.command == "doctor":
        from cao_sidecar.doctor import doctor_command

        return doctor_command(args)
    from cao_client.verbs import VERBS, run_verb

    if (args.command in ("run", "demo") or args.command in VERBS) and not _tmux_installed():
        return 1
    if args.command in VERBS:  # the team of --project (default: the current directory)
        return run_verb(args, paths.tmux_socket_name(args.tmux_socket, args.project))
    if args.command == "run":
        from cao_client.commands import run_command

        return run_command(args, socket)
    if args.command == "demo":
        from cao_client.demo import run_demo

        return run_demo(args, socket)
    if args.command == "profiles":
        from cao_sidecar.profiles.commands import profiles_command

        return profiles_command(args)
    if args.command == "flows":
        from cao_sidecar.profiles.commands import flows_command

        return flows_command(args, socket)

    from cao_sidecar.daemon.forward import main_forward

    if args.command == "mcp":  # a forwarder to the project's orchestrator, which serves the MCP host door
        if args.project is not None and not os.path.isdir(args.project):
            print(f"cao-sidecar mcp: --project {args.project!r} is not a directory", file=sys.stderr)
            return 2
        return main_forward(
            "mcp", tmux_socket=args.tmux_socket, project=args.project, session=args.session, log_level=args.log_level
        )

    if args.acp:  # a forwarder to the project's orchestrator, which serves ACP
        return main_forward("acp", tmux_socket=args.tmux_socket, project=None, session=args.session, log_level=args.log_level)

    if not args.stdio and sys.stdin.isatty():
        # A person typed `cao-sidecar`: say what it is instead of waiting for JSON-RPC in silence.
        print(USAGE_HINT, file=sys.stderr)
        return 2

    return main_forward("lsp", tmux_socket=args.tmux_socket, project=None, session=args.session, log_level=args.log_level)


_FRONT_END_FLAGS = ("--stdio", "--acp")
_FRONT_END_OPTIONS = ("--tmux-socket", "--session", "--log-level")


def _front_end_options(argv: list[str]) -> Optional[dict[str, str]]:
    """The options of a plain front-end command line (`--stdio`/`--acp` and the common options,
    no verb; or `mcp` with them and `--project`), read without argparse's full parser: building
    it imports the wire types and every verb's module, which a forwarder (it only relays bytes)
    must not wait for. None: anything else, for the full parser (and its errors and --help)."""
    mcp = argv[:1] == ["mcp"]
    if mcp:
        argv = argv[1:]
    allowed = (*_FRONT_END_OPTIONS, "--project") if mcp else _FRONT_END_OPTIONS
    options = {"door": "mcp" if mcp else "lsp", "session": "cao", "log-level": "warning"}
    flags: set[str] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, has_value, value = arg.partition("=")
        if arg in _FRONT_END_FLAGS and not mcp:
            flags.add(arg)
        elif name in allowed:
            if not has_value:
                if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                    return None
                i += 1
                value = argv[i]
            options[name[2:]] = value
        else:
            return None
        i += 1
    if mcp:
        return options if os.path.isdir(options.get("project", ".")) else None  # not a folder: the full parser says so
    if "--acp" in flags:
        options["door"] = "acp"
    elif "--stdio" not in flags and sys.stdin.isatty():
        return None  # a person typed `cao-sidecar`: the usage hint
    return options


def _forward(options: dict[str, str]) -> int:
    # The orchestrator first, if none runs: it starts while this process loads the rest.
    head, started = _prelaunch(options)
    import logging

    from cao_sidecar.daemon.forward import main_forward

    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, options["log-level"].upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return main_forward(
        options["door"], tmux_socket=options.get("tmux-socket"), project=options.get("project"),
        session=options["session"], log_level=options["log-level"], head=head, started=started,
    )  # fmt: skip


def _prelaunch(options: dict[str, str]) -> tuple[bytes, "Optional[Started]"]:
    """stdin's first bytes read (`--stdio`: its `initialize` names the project) and the
    orchestrator launched for the project, if none ran (cao_sidecar.daemon.prelaunch)."""
    from pathlib import Path

    from cao_sidecar import paths
    from cao_sidecar.daemon import prelaunch

    head = b""
    root: Optional[str] = None
    if options["door"] == "lsp":
        head, message = prelaunch.read_first_message(sys.stdin.fileno())
        if message is None or not prelaunch.is_initialize(message):
            return head, None  # anything else first: the forwarder answers it as ever
        root = prelaunch.workspace_root(message)
    try:
        project = Path(root or options.get("project") or os.getcwd()).resolve()
        socket = paths.tmux_socket_name(options.get("tmux-socket"), project)
    except (OSError, RuntimeError, ValueError):
        return head, None
    return head, prelaunch.start_if_none(project, socket, session=options["session"], log_level=options["log-level"])


def _serve(argv: list[str]) -> int:
    """`cao-sidecar serve`: the orchestrator of one project (cao_sidecar.daemon.serve)."""
    parser = argparse.ArgumentParser(prog="cao-sidecar serve", description=_serve.__doc__)
    parser.add_argument("--project", help="the project's folder (default: the current directory)")
    _add_common(parser)
    args = parser.parse_args(argv)
    from cao_sidecar import paths
    from cao_sidecar.app import configure_logging
    from cao_sidecar.daemon.serve import main_serve

    configure_logging(args.log_level)
    return main_serve(args.project, paths.tmux_socket_name(args.tmux_socket, args.project), args.session)


if __name__ == "__main__":
    sys.exit(main())


def _logs(args: argparse.Namespace) -> int:
    import json
    import re
    import time

    from cao_sidecar import paths
    from cao_sidecar.storage.logs import EVENTS_FILE, read_events

    directory = paths.state_dir() / "logs"
    if args.terminal is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", args.terminal):
        print(f"cao-sidecar logs: not a terminal id: {args.terminal!r}", file=sys.stderr)
        return 2

    def show(event: dict) -> None:
        if args.json:
            print(json.dumps(event, ensure_ascii=False), flush=True)
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.get("at", 0)))
        rest = {k: v for k, v in event.items() if k not in ("at", "event", "terminalId")}
        details = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)[:200]}" for k, v in rest.items())
        print(f"{stamp} {event.get('terminalId', '-'):<8} {event.get('event')} {details}", flush=True)

    if args.terminal is not None and not args.events:
        path = directory / f"{args.terminal}.log"
        if not path.exists():
            print(f"cao-sidecar logs: no terminal output logged for {args.terminal}", file=sys.stderr)
            return 1
        return _print_file(path, args.follow)
    last = None
    for event in read_events(directory, args.terminal):
        show(event)
        last = event.get("at")
    if not args.follow:
        return 0
    from watchfiles import watch

    try:
        for _changes in watch(directory / EVENTS_FILE, rust_timeout=0, yield_on_timeout=False):
            for event in read_events(directory, args.terminal, since=last):
                show(event)
                last = event.get("at")
    except KeyboardInterrupt:
        return 0
    return 0


def _print_file(path: Path, follow: bool) -> int:
    with open(path, encoding="utf-8", errors="replace") as handle:
        sys.stdout.write(handle.read())
        sys.stdout.flush()
        if not follow:
            return 0
        from watchfiles import watch

        try:
            for _changes in watch(path):
                sys.stdout.write(handle.read())
                sys.stdout.flush()
        except KeyboardInterrupt:
            return 0
    return 0
