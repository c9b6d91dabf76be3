"""The flows the sidecar knows: each workspace folder's `.cao/flows/`, then the user's config dir
(`<config>/cao-sidecar/flows/`). A flow in a higher layer shadows one of the same name below.
A folder the user has not trusted comes last: its flows are listed, never run (flows.scheduler)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from cao_sidecar import trust
from cao_sidecar.profiles.files import Diagnostic, Frontmatter, suggest
from cao_sidecar.profiles.layers import Changes, Entry, FileResult, Layer, LayeredCatalog
from cao_sidecar.profiles.profile import known_providers
from cao_sidecar.profiles.untrusted import flow_held_back
from cao_sidecar.flows.flow import Flow, check_flow


def flow_layers(workspace_folders: list[Path], user_dir: Optional[Path]) -> list[Layer]:
    workspace = [Layer("workspace", f / ".cao" / "flows", f, trust.folder_trusted(f)) for f in workspace_folders]
    layers = [layer for layer in workspace if layer.trusted]
    if user_dir is not None:
        layers.append(Layer("user", user_dir, workspace_folders[0] if workspace_folders else None))
    return layers + [layer for layer in workspace if not layer.trusted]


class FlowCatalog:
    def __init__(self, *, workspace_folders: list[Path], user_dir: Optional[Path]) -> None:
        self._providers: Optional[list[str]] = None
        self._workspace: Optional[Path] = workspace_folders[0] if workspace_folders else None
        self.layered: LayeredCatalog[Flow] = LayeredCatalog(
            flow_layers(workspace_folders, user_dir), self._parse, lambda f: f.name, "flow"
        )

    def _parse(self, fm: Frontmatter, layer: Layer, path: Path) -> tuple[Optional[Flow], list[Diagnostic]]:
        if self._providers is None:
            self._providers = known_providers(self._workspace)
        flow, diagnostics = check_flow(fm, path=path, scope=layer.scope, base_dir=layer.base_dir, providers=self._providers)
        if flow is not None and not layer.trusted and layer.base_dir is not None:
            diagnostics = [*diagnostics, flow_held_back(flow.name, layer.base_dir, flow.gate is not None)]
        return flow, diagnostics

    def set_workspace_folders(self, workspace_folders: list[Path], user_dir: Optional[Path]) -> None:
        self._workspace = workspace_folders[0] if workspace_folders else None
        self.layered.set_layers(flow_layers(workspace_folders, user_dir))

    def scan(self) -> list[FileResult[Flow]]:
        self._providers = known_providers(self._workspace)
        return self.layered.scan(context=",".join(self._providers))

    def apply(self, results: list[FileResult[Flow]]) -> Changes:
        return self.layered.apply(results)

    def reload(self) -> Changes:
        return self.apply(self.scan())

    def cross_check(self, profile_names: Iterable[str]) -> dict[Path, list[Diagnostic]]:
        """Warn about flows naming a profile that does not exist (now); returns changes to publish."""
        names = set(profile_names)
        extra: dict[Path, list[Diagnostic]] = {}
        for entry in self.layered.entries():
            flow = entry.item
            if flow.workflow is None and flow.profile not in names:
                extra.setdefault(entry.path, []).append(
                    Diagnostic(
                        "warning",
                        f"no profile named '{flow.profile}'{suggest(flow.profile, names)}; runs fail until there is one",
                        flow.profile_line,
                    )
                )
        return self.layered.set_extra_diagnostics(extra)

    def diagnostics(self) -> dict[Path, list[Diagnostic]]:
        return self.layered.diagnostics()

    def get(self, name: str) -> Optional[Entry[Flow]]:
        return self.layered.get(name)

    def entries(self) -> list[Entry[Flow]]:
        return self.layered.entries()

    def directories(self) -> list[Path]:
        return self.layered.directories()
