"""What an editor connection is told as it happens, built as plain JSON (no pygls).

The core's events (agents' states, workflow runs, workers' reports, start-up notices) and the
live config's (profiles, flows, their files' problems, trust) become `cao/*` and LSP
notifications. Needing no pygls, they reach the editor from the moment the runtime runs, while
pygls still loads (daemon.early); the pygls server adds only what needs it (questions to the
user, handoff progress: editor.server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from cao_sidecar import views, wire

if TYPE_CHECKING:
    from cao_sidecar.core.agent import Agent
    from cao_sidecar.core.status import AgentStatus
    from cao_sidecar.profiles.files import Diagnostic
    from cao_sidecar.storage.reports import Report

Send = Callable[[str, Any], None]  # (method, JSON params): written on the next loop turn
MESSAGE_WARNING = 2  # LSP MessageType.Warning
SEVERITY = {"error": 1, "warning": 2}  # LSP DiagnosticSeverity


def push_core(core: Any, send: Send, ready: Callable[[], bool] = lambda: True) -> None:
    """The core's events to the editor. `ready()`: the editor reads what it is sent (a report
    leaves the core's store only then)."""

    def notify(method: str, params: Any) -> None:
        send(method, wire.unstructure(params))

    def on_status(agent: "Agent", previous: Optional["AgentStatus"], status: "AgentStatus") -> None:
        notify("cao/agentStatus", views.agent_status(agent, previous, status))

    def on_prompt(agent: "Agent", pending: Any) -> None:
        on_status(agent, agent.status, agent.status)  # the question changed: same status, new prompt

    def on_report(report: "Report") -> None:
        worktree = views.stored_worktree(core, report.terminal_id) or views.reported_worktree(report)
        notify("cao/workerCompleted", views.worker_completed(report, worktree))

    core.add_status_listener(on_status)
    core.add_prompt_listener(on_prompt)
    core.add_workflow_listener(lambda run: notify("cao/workflowRun", run))
    # Reports are stored until sent: those made while no editor was connected come now.
    core.set_report_sink(on_report, ready)
    for notice in core.notices:
        send("window/showMessage", {"type": MESSAGE_WARNING, "message": f"cao-sidecar: {notice}"})


def push_live(live: Any, send: Send) -> None:
    """Profile and flow changes, the problems found in their files, and trust, to the editor."""

    def on_profiles() -> None:
        send("cao/profilesChanged", wire.unstructure(wire.ProfilesChangedNotification(profiles=live.profile_infos())))

    def on_flows() -> None:
        send("cao/flowsChanged", wire.unstructure(wire.FlowsChangedNotification(flows=live.flow_infos())))

    def on_diagnostics(path: Any, diagnostics: list["Diagnostic"]) -> None:
        send("textDocument/publishDiagnostics", {"uri": path.as_uri(), "diagnostics": [lsp_diagnostic(d) for d in diagnostics]})

    def on_trust(folders: list[wire.TrustInfo]) -> None:
        send("cao/trustChanged", wire.unstructure(wire.TrustChangedNotification(folders=folders)))

    def on_notice(info: wire.TrustInfo) -> None:
        from cao_sidecar.trust import how_to_trust

        text = f"cao-sidecar: {info.path} is not trusted, so its .cao/ is held back: " + "; ".join(info.held_back)
        send("window/showMessage", {"type": MESSAGE_WARNING, "message": f"{text}. {how_to_trust(info.path)}"})

    live.on_profiles_changed(on_profiles)
    live.on_flows_changed(on_flows)
    live.on_diagnostics(on_diagnostics)
    live.on_trust_changed(on_trust)
    live.on_trust_notice(on_notice)
    for path, diagnostics in live.all_diagnostics().items():
        on_diagnostics(path, diagnostics)
    live.send_notices()


def lsp_diagnostic(d: "Diagnostic") -> dict[str, Any]:
    """An LSP Diagnostic (JSON) for a problem in a profile or flow file."""
    line = max(0, d.line - 1)
    end = {"line": line, "character": d.end_column} if d.end_column else {"line": line + 1, "character": 0}
    return {
        "range": {"start": {"line": line, "character": d.column}, "end": end},
        "message": d.message,
        "severity": SEVERITY["error"] if d.severity == "error" else SEVERITY["warning"],
        "source": "cao-sidecar",
    }
