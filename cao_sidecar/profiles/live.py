"""Profiles and flows kept live: watched directories, validation, diagnostics, the flow scheduler.

`LiveConfig` owns the flow catalog, the flow scheduler and the directory watcher, and keeps the
orchestrator's profile catalog current. Listeners hear about:

- `profiles_changed()`: the profiles in force changed (added, edited, renamed, removed, shadowed);
- `flows_changed()`: flows changed, or a run started or ended;
- `diagnostics(path, list)`: a file's problems changed (an empty list: it is clean now, or gone);
- `trust_changed(infos)`: a folder's trust changed (the store, watched; or `set_trust`);
- `trust_notice(info)`: once per folder, an untrusted folder holds back something of its `.cao/`.

A reload reads files in a worker thread and swaps the result in on the event loop; reloads are
single-flight (changes that arrive meanwhile cause one more reload, not one each).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Optional
from urllib.parse import unquote, urlparse

from cao_sidecar import paths, trust, views, wire
from cao_sidecar.core.errors import CaoError, InvalidRequest
from cao_sidecar.flows.catalog import FlowCatalog
from cao_sidecar.flows.scheduler import FlowScheduler
from cao_sidecar.profiles.catalog import ProfileCatalog, builtin_profiles_dir
from cao_sidecar.profiles.files import Diagnostic
from cao_sidecar.profiles.watch import DirWatcher
from cao_sidecar.storage.flows import FlowRunStore
from cao_sidecar.workflows.diagnostics import WorkflowFiles

log = logging.getLogger(__name__)

DiagnosticsListener = Callable[[Path, list[Diagnostic]], None]


def user_flows_dir() -> Path:
    return paths.config_dir() / "flows"


def workspace_folders(initialize_params: Any, fallback: Path) -> list[Path]:
    """Every workspace folder of an `initialize` (workspaceFolders, else rootUri/rootPath)."""
    folders: list[Path] = []
    if isinstance(initialize_params, dict):
        listed = initialize_params.get("workspaceFolders")
        if isinstance(listed, list):
            for folder in listed:
                uri = folder.get("uri") if isinstance(folder, dict) else None
                path = file_path(uri)
                if path is not None:
                    folders.append(path)
    if fallback not in folders:
        folders.insert(0, fallback)
    return list(dict.fromkeys(folders))


def file_path(uri: Any) -> Optional[Path]:
    """The local path of a `file:` URI (None for anything else)."""
    if not isinstance(uri, str):
        return None
    parsed = urlparse(uri)
    if parsed.scheme != "file" or not parsed.path:
        return None
    return Path(unquote(parsed.path))


class LiveConfig:
    def __init__(
        self,
        *,
        core: Any,
        folders: list[Path],
        user_profiles: Optional[Path] = None,
        user_flows: Optional[Path] = None,
        store: Optional[FlowRunStore] = None,
    ) -> None:
        self.core = core
        self.folders = list(folders)
        self.user_profiles = user_profiles if user_profiles is not None else paths.user_profiles_dir()
        self.user_flows = user_flows if user_flows is not None else user_flows_dir()
        self.profiles: ProfileCatalog = core.catalog
        self.profiles.set_workspace_dirs([f / ".cao" / "agents" for f in self.folders], self.user_profiles)
        self.flows = FlowCatalog(workspace_folders=self.folders, user_dir=self.user_flows)
        self.store = store or FlowRunStore(core.state_dir / "state.db")
        self.scheduler = FlowScheduler(core=core, flows=self.flows, store=self.store, on_change=self._flows_touched)
        self.workflow_files = WorkflowFiles(self.folders)  # their diagnostics as they are saved
        self.watcher = DirWatcher(self._targets(), self._on_files_changed)
        self._profile_listeners: list[Callable[[], None]] = []
        self._flow_listeners: list[Callable[[], None]] = []
        self._diagnostic_listeners: list[DiagnosticsListener] = []
        self._trust_listeners: list[Callable[[list[wire.TrustInfo]], None]] = []
        self._notice_listeners: list[Callable[[wire.TrustInfo], None]] = []
        self._decisions = self._trust_decisions()
        self._noticed: set[Path] = set()
        self._trust_tasks: set[asyncio.Task[None]] = set()
        self._pending: set[str] = set()
        self._reloading: Optional[asyncio.Task[None]] = None
        self._flows_note_scheduled = False
        self._closed = False
        self._reload_lock = asyncio.Lock()  # one scan-and-apply at a time: never apply an older scan last

    # ---- life cycle -----------------------------------------------------------------------

    async def start(self, watch_after: Optional[Callable[[], Awaitable[None]]] = None) -> None:
        """Load, then watch (once `watch_after()` returns, if given: profiles.watch)."""
        await self.reload({"profiles", "flows", "workflows"})
        self.core.add_completed_listener(self.scheduler.on_worker_completed)
        self.scheduler.start()
        self.watcher.start(watch_after)

    async def close(self) -> None:
        self._closed = True
        await self.watcher.close()
        for task in (self._reloading, *self._trust_tasks):
            if task is not None:
                task.cancel()
        await self.scheduler.close()
        self.store.close()

    def set_workspace_folders(self, folders: list[Path]) -> None:
        self.folders = list(dict.fromkeys(folders))
        self.workflow_files.folders = list(self.folders)
        self._set_layers()
        self._decisions = self._trust_decisions()
        self._request({"profiles", "flows", "workflows"})

    def _set_layers(self) -> None:
        """Where files are looked up, and in which order: it depends on each folder's trust."""
        self.profiles.set_workspace_dirs([f / ".cao" / "agents" for f in self.folders], self.user_profiles)
        self.flows.set_workspace_folders(self.folders, self.user_flows)
        self.watcher.set_targets(self._targets())

    def _targets(self) -> list[Path]:
        # The config dir holds trust.json: granting or revoking takes effect at once.
        return [
            *self.profiles.directories(), *self.flows.directories(), *self._provider_dirs(), trust.trust_file().parent,
            *self.workflow_files.directories(),
        ]  # fmt: skip

    def _provider_dirs(self) -> list[Path]:
        """Where user-defined providers live: a change there re-validates profiles and flows."""
        try:
            from cao_sidecar.providers import provider_dirs

            return list(provider_dirs(self.folders[0] if self.folders else None))
        except Exception:  # noqa: BLE001 - older providers package without user-defined ones
            return []

    # ---- listeners ------------------------------------------------------------------------

    def on_profiles_changed(self, listener: Callable[[], None]) -> None:
        self._profile_listeners.append(listener)

    def on_flows_changed(self, listener: Callable[[], None]) -> None:
        self._flow_listeners.append(listener)

    def on_diagnostics(self, listener: DiagnosticsListener) -> None:
        self._diagnostic_listeners.append(listener)

    def all_diagnostics(self) -> dict[Path, list[Diagnostic]]:
        out = {p: d for p, d in self.profiles.diagnostics().items() if self._publishable(p)}
        out.update(self.flows.diagnostics())
        out.update(_workflow_diagnostics(self.workflow_files.current()))
        return out

    def _publishable(self, path: Path) -> bool:
        # Problems of built-in profiles are the package's, not the user's: logged, not shown.
        return path.parent != builtin_profiles_dir()

    def _publish(self, changes: dict[Path, list[Diagnostic]]) -> None:
        for path, diagnostics in changes.items():
            if not self._publishable(path):
                continue
            for listener in self._diagnostic_listeners:
                try:
                    listener(path, diagnostics)
                except Exception:
                    log.exception("diagnostics listener failed")

    def _notify(self, listeners: list[Callable[[], None]]) -> None:
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("change listener failed")

    def _flows_touched(self) -> None:
        # Coalesce: a run's start writes several times in one go; one notification per turn.
        if self._flows_note_scheduled or self._closed:
            return
        self._flows_note_scheduled = True

        def send() -> None:
            self._flows_note_scheduled = False
            self._notify(self._flow_listeners)

        asyncio.get_running_loop().call_soon(send)

    # ---- reloading ------------------------------------------------------------------------

    def _on_files_changed(self, hits: set[Path]) -> None:
        kinds = set()
        profile_dirs = set(self.profiles.directories())
        flow_dirs = set(self.flows.directories())
        workflow_dirs = set(self.workflow_files.directories())
        trust_dir = trust.trust_file().parent
        for hit in hits:
            if hit in workflow_dirs:
                kinds.add("workflows")
            elif hit == trust_dir:
                if self._trust_decisions() != self._decisions:  # refreshes are serialised and idempotent
                    task = asyncio.get_running_loop().create_task(self.refresh_trust())
                    self._trust_tasks.add(task)
                    task.add_done_callback(self._trust_tasks.discard)
            elif hit in profile_dirs:
                kinds.add("profiles")
            elif hit in flow_dirs:
                kinds.add("flows")
            else:  # a provider file: what is valid may have changed everywhere
                kinds |= {"profiles", "flows"}
        self._request(kinds)

    def _request(self, kinds: Iterable[str]) -> None:
        self._pending |= set(kinds)
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self._reload_pending())

    async def _reload_pending(self) -> None:
        while self._pending and not self._closed:
            kinds, self._pending = self._pending, set()
            try:
                await self.reload(kinds)
            except Exception:  # a reload never takes the sidecar down
                log.exception("reloading %s failed", sorted(kinds))

    async def reload(self, kinds: Iterable[str] = ("profiles", "flows")) -> None:
        async with self._reload_lock:
            await self._reload(set(kinds))

    async def _reload(self, kinds: set[str]) -> None:
        profiles_changed = False
        if "profiles" in kinds:
            profile_results = await asyncio.to_thread(self.profiles.scan)
            profile_changes = self.profiles.apply(profile_results)
            self._publish(profile_changes.diagnostics)
            profiles_changed = profile_changes.entries_changed
        flows_changed = False
        if "flows" in kinds:
            results = await asyncio.to_thread(self.flows.scan)
            changes = self.flows.apply(results)
            self._publish(changes.diagnostics)
            flows_changed = changes.entries_changed
            if flows_changed:
                self.scheduler.reschedule()
        if "workflows" in kinds:
            self._publish(_workflow_diagnostics(await asyncio.to_thread(self.workflow_files.scan)))
        if profiles_changed or flows_changed:
            self._publish(self.flows.cross_check(self.profiles.names()))
        if profiles_changed:
            self._notify(self._profile_listeners)
        if flows_changed:
            self._flows_touched()
        self.send_notices()

    # ---- trust (cao_sidecar.trust) ----------------------------------------------------------

    def on_trust_changed(self, listener: Callable[[list[wire.TrustInfo]], None]) -> None:
        self._trust_listeners.append(listener)

    def on_trust_notice(self, listener: Callable[[wire.TrustInfo], None]) -> None:
        self._notice_listeners.append(listener)

    def _trust_decisions(self) -> dict[Path, trust.Decision]:
        return {f: trust.decide(f) for f in self.folders}

    async def refresh_trust(self) -> None:
        """Trust may have changed: re-layer, reload, reschedule and tell the listeners (if it did)."""
        async with self._reload_lock:
            decisions = self._trust_decisions()
            if decisions == self._decisions:
                return
            self._decisions = decisions
            self._set_layers()
            await self._reload({"profiles", "flows"})
            self.scheduler.reschedule()
        infos = self.trust_infos()
        for listener in self._trust_listeners:
            try:
                listener(infos)
            except Exception:
                log.exception("trust listener failed")
        self._notify(self._profile_listeners)  # `untrusted` and what is in force changed
        self._flows_touched()
        self.send_notices()

    async def set_trust(self, trusted: bool, path: Optional[str] = None, persist: bool = True) -> list[wire.TrustInfo]:
        """cao/setTrust: `persist` writes the user's store; otherwise this process only."""
        if path is not None and (not os.path.isabs(path) or not await asyncio.to_thread(os.path.isdir, path)):
            raise InvalidRequest(f"field 'path' must be an existing absolute directory, got {path!r}", field="path")
        targets = [Path(path)] if path is not None else list(self.folders)
        for folder in targets:
            if persist:
                try:
                    await asyncio.to_thread(trust.grant if trusted else trust.revoke, folder)
                except OSError as exc:
                    raise CaoError(f"cannot write the trust store {trust.trust_file()}: {exc.strerror or exc}") from None
                trust.POLICY.set_editor_decision(folder, None)  # the store decides for it now
            else:
                trust.POLICY.set_editor_decision(folder, trusted)
        await self.refresh_trust()
        infos = self.trust_infos()
        known = {i.path for i in infos}
        infos += [self.trust_info(f) for f in targets if str(f) not in known]
        return infos

    def trust_infos(self) -> list[wire.TrustInfo]:
        return [self.trust_info(f) for f in self.folders]

    def trust_info(self, folder: Path) -> wire.TrustInfo:
        decision = trust.decide(folder)
        return wire.TrustInfo(
            path=str(folder),
            trusted=decision.trusted,
            source=decision.source,  # type: ignore[arg-type]
            has_config=(folder / ".cao").is_dir(),
            held_back=[] if decision.trusted else self.held_back(folder),
        )

    def held_back(self, folder: Path) -> list[str]:
        """What `folder`'s `.cao/` does not get while it is untrusted, one line each."""
        config = folder / ".cao"
        lines: list[str] = []
        for diagnostics in (self.profiles.diagnostics(), self.flows.diagnostics()):
            for path in sorted(diagnostics):
                if config in path.parents:
                    lines += [d.held_back for d in diagnostics[path] if d.held_back]
        from cao_sidecar.providers import workspace_provider_dir
        from cao_sidecar.providers.user import provider_files

        for path in provider_files([workspace_provider_dir(folder)]):
            lines.append(f".cao/providers/{path.name}: not loaded")
        return lines

    def send_notices(self) -> None:
        """Tell the notice listeners (once per folder) what untrusted folders hold back."""
        if not self._notice_listeners:
            return
        for folder in self.folders:
            if folder in self._noticed or self._decisions.get(folder, trust.decide(folder)).trusted:
                continue
            info = self.trust_info(folder)
            if not info.held_back:
                continue
            self._noticed.add(folder)
            for listener in self._notice_listeners:
                try:
                    listener(info)
                except Exception:
                    log.exception("trust notice listener failed")

    # ---- wire views -----------------------------------------------------------------------

    def profile_infos(self) -> list[wire.ProfileInfo]:
        return [views.profile_info(e) for e in self.profiles.entries()]

    def flow_infos(self) -> list[wire.FlowInfo]:
        return [views.flow_info(s) for s in self.scheduler.states()]


async def start_live(
    core: Any, initialize_params: Any, workspace: Path, watch_after: Optional[Callable[[], Awaitable[None]]] = None
) -> Optional[LiveConfig]:
    """Start watching profiles and flows; None (logged) if that fails: agents still work."""
    live = None
    try:
        live = LiveConfig(core=core, folders=workspace_folders(initialize_params, workspace))
        await live.start(watch_after)
        return live
    except Exception:
        log.exception("profiles and flows could not be watched; they stay as loaded at start-up")
        if live is not None:
            try:
                await live.close()
            except Exception:  # noqa: BLE001
                pass
        return None


def _workflow_diagnostics(problems: dict[Path, list[tuple[int, str]]]) -> dict[Path, list[Diagnostic]]:
    """Workflow files' problems (workflows.diagnostics) as errors on their lines."""
    return {path: [Diagnostic("error", message, line) for line, message in found] for path, found in problems.items()}
