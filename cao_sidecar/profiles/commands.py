"""Command-line verbs: `cao-sidecar profiles list|show|install|check` and
`cao-sidecar flows list|run|enable|disable`.

Everything but `flows run` works on the files and the state store directly, without a sidecar.
`flows run` starts a sidecar for the current directory (scheduled runs off), runs the flow and
prints the worker's answer. The workspace is the current directory unless `--workspace` says.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from cao_sidecar import paths, wire
from cao_sidecar.core.errors import CaoError
from cao_sidecar.profiles.catalog import ProfileCatalog, builtin_profiles_dir
from cao_sidecar.profiles.files import NAME_PATTERN, NAME_RULE, Diagnostic


UNTRUSTED_NOTE = "untrusted folder: see `cao-sidecar trust`"


def add_parsers(sub: Any, common: Any) -> None:
    profiles = sub.add_parser("profiles", help="list, show, check or install agent profiles")
    psub = profiles.add_subparsers(dest="profiles_command", required=True)
    p = psub.add_parser("list", help="the profiles in force, where each comes from and what it shadows")
    p.add_argument("--json", action="store_true", help="print JSON (cao/listProfiles' ProfileInfo objects)")
    p = psub.add_parser("show", help="one profile: its file, fields and system prompt")
    p.add_argument("name")
    p = psub.add_parser("install", help="validate a profile file (or take a known profile) and copy it to the user config dir")
    p.add_argument("source", metavar="PATH_OR_NAME")
    p.add_argument("--force", action="store_true", help="replace a profile of the same name already installed")
    p = psub.add_parser("check", help="validate profile files (default: all of the workspace and user dir); exit 1 on errors")
    p.add_argument("files", nargs="*", type=Path)
    for parser in psub.choices.values():
        parser.add_argument("--workspace", type=Path, default=None, help="workspace folder (default: the current directory)")
        common(parser)

    flows = sub.add_parser("flows", help="list, run, enable or disable flows (scheduled tasks)")
    fsub = flows.add_subparsers(dest="flows_command", required=True)
    p = fsub.add_parser("list", help="flows with their schedule, next run and last result")
    p.add_argument("--json", action="store_true", help="print JSON (cao/listFlows' FlowInfo objects)")
    p = fsub.add_parser("run", help="run a flow now and print the worker's answer")
    p.add_argument("name")
    p.add_argument(
        "--timeout", type=float, default=None, help="stop waiting after this many seconds (default: the flow's timeout)"
    )
    for verb in ("enable", "disable"):
        p = fsub.add_parser(verb, help=f"{verb} a flow's scheduled runs (kept until its file's 'enabled' changes)")
        p.add_argument("name")
    for parser in fsub.choices.values():
        parser.add_argument("--workspace", type=Path, default=None, help="workspace folder (default: the current directory)")
        common(parser)


def _workspace(args: argparse.Namespace) -> Path:
    return (args.workspace or Path.cwd()).resolve()


def _catalog(args: argparse.Namespace) -> ProfileCatalog:
    return ProfileCatalog(workspace_dirs=[_workspace(args) / ".cao" / "agents"], user_dir=paths.user_profiles_dir())


def _check_name(name: str, what: str) -> Optional[str]:
    if NAME_PATTERN.match(name):
        return None
    return f"{what} name {name!r} is not valid ({NAME_RULE})"


def _print_problems(diagnostics: dict[Path, list[Diagnostic]], *, include_builtin: bool = False) -> int:
    errors = 0
    for path in sorted(diagnostics):
        if not include_builtin and path.parent == builtin_profiles_dir():
            continue
        for d in diagnostics[path]:
            errors += d.severity == "error"
            print(d.render(path), file=sys.stderr)
    return errors


# ---- profiles --------------------------------------------------------------------------------


def profiles_command(args: argparse.Namespace) -> int:
    verb = args.profiles_command
    if verb == "check":
        return _profiles_check(args)
    catalog = _catalog(args)
    if verb == "list":
        from cao_sidecar.views import profile_info

        infos = [profile_info(e) for e in catalog.entries()]
        if args.json:
            print(json.dumps([wire.unstructure(i) for i in infos], indent=1))
        else:
            width = max((len(i.name) for i in infos), default=4)
            for info in infos:
                shadow = f"  (shadows {', '.join(info.shadows)})" if info.shadows else ""
                stale = "  [file has errors: last good version]" if info.stale else ""
                untrusted = f"  [{UNTRUSTED_NOTE}]" if info.untrusted else ""
                print(f"{info.name:<{width}}  {info.scope:<9}  {info.provider:<12}  {info.description}{shadow}{stale}{untrusted}")
        _print_problems(catalog.diagnostics())
        return 0
    if verb == "show":
        problem = _check_name(args.name, "profile")
        if problem:
            print(f"cao-sidecar profiles show: {problem}", file=sys.stderr)
            return 2
        entry = catalog.entry(args.name)
        if entry is None:
            print(
                f"cao-sidecar profiles show: unknown profile '{args.name}' (known: {', '.join(catalog.names())})", file=sys.stderr
            )
            return 1
        p = entry.item
        print(f"name:        {p.name}")
        print(
            f"file:        {entry.path} ({entry.layer.scope}){'  [has errors: last good version shown]' if entry.stale else ''}"
        )
        for path in entry.shadows:
            print(f"shadows:     {path}")
        if not entry.layer.trusted:
            print(f"trust:       {UNTRUSTED_NOTE} (what is held back is listed below)")
        print(f"provider:    {p.provider}")
        for label, value in (
            ("description", p.description),
            ("model", p.model),
            ("permission", p.permission_mode),
            ("workdir", p.working_directory),
            ("allowed", ", ".join(p.allowed_tools) if p.allowed_tools is not None else None),
            ("disallowed", ", ".join(p.disallowed_tools) if p.disallowed_tools is not None else None),
            ("mcp servers", ", ".join(s.name for s in p.mcp_servers) or None),
            ("env", ", ".join(sorted(p.env)) or None),
            ("tags", ", ".join(p.tags) or None),
        ):
            if value:
                print(f"{label + ':':<12} {value}")
        print("\n" + p.system_prompt)
        _print_problems({k: v for k, v in catalog.diagnostics().items() if k == entry.path}, include_builtin=True)
        return 0
    if verb == "install":
        from cao_sidecar.profiles.install import install_profile

        try:
            done = install_profile(
                args.source, catalog=catalog, user_dir=paths.user_profiles_dir(), overwrite=args.force, cwd=Path.cwd()
            )
        except CaoError as exc:
            print(f"cao-sidecar profiles install: {exc.message}", file=sys.stderr)
            return 1
        print(f"{'replaced' if done.replaced else 'installed'} profile '{done.name}': {done.path}")
        for warning in done.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    raise AssertionError(verb)


def _profiles_check(args: argparse.Namespace) -> int:
    from cao_sidecar.profiles.files import check_file
    from cao_sidecar.profiles.profile import check_profile

    if not args.files:
        catalog = _catalog(args)
        diagnostics = catalog.diagnostics()
        errors = _print_problems(diagnostics)
        print(f"{len(catalog.entries())} profiles in force; {errors} errors", file=sys.stderr)
        return 1 if errors else 0
    errors = 0
    base = _workspace(args)
    for given in args.files:
        file = given.resolve()

        def check(fm: Any, file: Path = file) -> Any:
            return check_profile(fm, path=file, source="user", base_dir=base)

        _item, problems = check_file(file, file.parent, check)
        for d in problems:
            errors += d.severity == "error"
            print(d.render(file), file=sys.stderr)
    return 1 if errors else 0


# ---- flows -----------------------------------------------------------------------------------


def _flow_parts(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from cao_sidecar.flows.catalog import FlowCatalog
    from cao_sidecar.flows.scheduler import FlowScheduler
    from cao_sidecar.profiles.live import user_flows_dir
    from cao_sidecar.storage.flows import FlowRunStore

    flows = FlowCatalog(workspace_folders=[_workspace(args)], user_dir=user_flows_dir())
    flows.reload()
    flows.cross_check(_catalog(args).names())
    store = FlowRunStore(paths.ensure_private_dir(paths.state_dir()) / "state.db")
    scheduler = FlowScheduler(core=None, flows=flows, store=store)
    scheduler.reschedule()
    return flows, store, scheduler


def flows_command(args: argparse.Namespace, socket: str) -> int:
    verb = args.flows_command
    if verb != "list":
        problem = _check_name(args.name, "flow")
        if problem:
            print(f"cao-sidecar flows {verb}: {problem}", file=sys.stderr)
            return 2
    if verb == "run":
        return asyncio.run(_run_flow(args, socket))
    from cao_sidecar.views import flow_info

    flows, store, scheduler = _flow_parts(args)
    try:
        if verb == "list":
            infos = [flow_info(s) for s in scheduler.states()]
            if args.json:
                print(json.dumps([wire.unstructure(i) for i in infos], indent=1))
            else:
                for info in infos:
                    last = info.last_run
                    last_text = f"{last.status} {last.started_at}" if last else "never ran"
                    state = "enabled " if info.enabled else "disabled"
                    untrusted = f"  [{UNTRUSTED_NOTE}: never runs]" if info.untrusted else ""
                    print(
                        f"{info.name}  {state}  [{info.schedule}]  next: {info.next_run_at or '-'}  "
                        f"last: {last_text}  profile: {info.profile}  ({info.path}){untrusted}"
                    )
            _print_problems(flows.diagnostics())
            return 0
        # enable / disable
        try:
            state = scheduler.set_enabled(args.name, verb == "enable")
        except CaoError as exc:
            print(f"cao-sidecar flows {verb}: {exc.message}", file=sys.stderr)
            return 1
        info = flow_info(state)
        print(f"flow '{info.name}' {'enabled' if info.enabled else 'disabled'}; next run: {info.next_run_at or '-'}")
        return 0
    finally:
        store.close()


async def _run_flow(args: argparse.Namespace, socket: str) -> int:
    from cao_client.client import CaoClient, CaoError as ClientError

    done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    wanted: dict[str, Optional[str]] = {"terminalId": None}
    early: list[dict[str, Any]] = []

    def on_note(method: str, params: Any) -> None:
        if method != "cao/workerCompleted" or not isinstance(params, dict):
            return
        if wanted["terminalId"] is None:
            early.append(params)
        elif params.get("terminalId") == wanted["terminalId"] and not done.done():
            done.set_result(params)

    env = dict(os.environ, CAO_FLOWS_SCHEDULER="off")
    client = await CaoClient.start(workspace=_workspace(args), tmux_socket=socket, env=env, on_notification=on_note)
    try:
        try:
            run = (await client.request("cao/runFlow", {"name": args.name}))["run"]
        except ClientError as exc:
            print(f"cao-sidecar flows run: {exc.message}", file=sys.stderr)
            return 1
        if run["status"] != "running":
            print(f"flow '{args.name}' {run['status']}: {run.get('reason') or ''}".rstrip(": "), file=sys.stderr)
            return 2 if run["status"] == "skipped" else 1
        wanted["terminalId"] = run["terminalId"]
        for params in early:
            if params.get("terminalId") == run["terminalId"] and not done.done():
                done.set_result(params)
        try:
            outcome = await asyncio.wait_for(done, args.timeout)
        except asyncio.TimeoutError:
            print(f"cao-sidecar flows run: no answer within {args.timeout:g} s (worker {run['terminalId']})", file=sys.stderr)
            return 1
        if outcome.get("error"):
            print(f"flow '{args.name}' failed: {outcome['error']}", file=sys.stderr)
            return 1
        print(outcome.get("output", ""))
        return 0
    finally:
        await client.close()
