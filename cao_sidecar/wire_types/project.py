"""Wire types of what a project sets up: profiles, flows, trusted folders, and their notifications."""

from __future__ import annotations

from typing import Literal, Optional

import attrs


@attrs.define
class ListProfilesParams:
    pass


@attrs.define
class ProfileInfo:
    name: str
    description: str
    provider: str
    source: str  # "builtin", or the path of the profile's file
    scope: Literal["workspace", "user", "builtin"] = "builtin"
    path: Optional[str] = None
    model: Optional[str] = None
    tags: list[str] = attrs.Factory(list)
    shadows: list[str] = attrs.Factory(list)  # files of the same name it hides, highest first
    stale: bool = False  # its file has errors now; this is the last version that loaded
    untrusted: bool = False  # from a workspace folder the user has not trusted: held-back parts not in force


@attrs.define
class ListProfilesResult:
    profiles: list[ProfileInfo]


@attrs.define
class InstallProfileParams:
    profile: str  # a path to a profile file, or the name of a known profile
    overwrite: bool = False


@attrs.define
class InstallProfileResult:
    name: str
    path: str
    replaced: bool
    warnings: list[str] = attrs.Factory(list)


FlowRunStatus = Literal["running", "completed", "failed", "skipped", "gate_failed"]


@attrs.define
class FlowRunInfo:
    run_id: str
    flow: str
    trigger: Literal["schedule", "manual"]
    status: FlowRunStatus
    started_at: str
    scheduled_at: Optional[str] = None
    ended_at: Optional[str] = None
    terminal_id: Optional[str] = None
    output: Optional[str] = None
    reason: Optional[str] = None


@attrs.define
class FlowInfo:
    name: str
    schedule: str
    profile: str
    enabled: bool
    scope: Literal["workspace", "user"]
    path: str
    description: str = ""
    provider: Optional[str] = None
    working_directory: Optional[str] = None
    has_gate: bool = False
    next_run_at: Optional[str] = None
    running: bool = False
    last_run: Optional[FlowRunInfo] = None
    shadows: list[str] = attrs.Factory(list)
    stale: bool = False
    untrusted: bool = False  # from a workspace folder the user has not trusted: never runs


@attrs.define
class ListFlowsParams:
    pass


@attrs.define
class ListFlowsResult:
    flows: list[FlowInfo]


@attrs.define
class RunFlowParams:
    name: str


@attrs.define
class RunFlowResult:
    run: FlowRunInfo


@attrs.define
class SetFlowEnabledParams:
    name: str
    enabled: bool


@attrs.define
class SetFlowEnabledResult:
    flow: FlowInfo


@attrs.define
class TrustInfo:
    """One folder's trust (cao_sidecar.trust) and what its `.cao/` does not get while untrusted."""

    path: str
    trusted: bool
    source: Literal["store", "editor", "none"]
    has_config: bool  # the folder has a .cao/
    held_back: list[str] = attrs.Factory(list)  # one readable line per thing held back


@attrs.define
class GetTrustParams:
    pass


@attrs.define
class GetTrustResult:
    folders: list[TrustInfo]


@attrs.define
class SetTrustParams:
    trusted: bool
    path: Optional[str] = None  # default: every workspace folder
    persist: bool = True  # write the user's trust store; false: this connection only


@attrs.define
class SetTrustResult:
    folders: list[TrustInfo]


@attrs.define
class ProfilesChangedNotification:
    profiles: list[ProfileInfo]


@attrs.define
class FlowsChangedNotification:
    flows: list[FlowInfo]


@attrs.define
class TrustChangedNotification:
    folders: list[TrustInfo]
