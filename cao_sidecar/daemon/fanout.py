"""Many connections over one core: each registers its listeners in a scope, dropped with it.

The core and the live config keep append-only listener lists (and one report sink). The runtime
registers one forwarding listener per kind, once; each connection gets a `CoreScope` (and a
`LiveScope`) that looks like the core (the live config) to a face, but whose listeners go into
the `Fanout` and leave it when the connection ends: no leak, no send to a closed client.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from cao_sidecar.core.orchestrator import Orchestrator
    from cao_sidecar.storage.reports import Report

log = logging.getLogger(__name__)


class Fanout:
    """Listeners by kind, across connections; a report goes to every sink once."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[..., None]]] = {}
        self._sinks: list[tuple[Callable[["Report"], None], Callable[[], bool]]] = []
        self.on_new_sink: Callable[[], None] = lambda: None

    def add(self, kind: str, listener: Callable[..., None]) -> None:
        self._listeners.setdefault(kind, []).append(listener)

    def remove(self, kind: str, listener: Callable[..., None]) -> None:
        listeners = self._listeners.get(kind, [])
        if listener in listeners:
            listeners.remove(listener)

    def emitter(self, kind: str) -> Callable[..., None]:
        def emit(*args: Any) -> None:
            for listener in list(self._listeners.get(kind, ())):
                try:
                    listener(*args)
                except Exception:  # one connection's failure is not the others'
                    log.exception("%s listener failed", kind)

        return emit

    def add_sink(self, sink: Callable[["Report"], None], ready: Callable[[], bool]) -> None:
        self._sinks.append((sink, ready))
        self.on_new_sink()  # reports stored while no one listened go out now

    def remove_sink(self, sink: Callable[["Report"], None]) -> None:
        self._sinks = [(s, r) for s, r in self._sinks if s is not sink]

    def report(self, report: "Report") -> None:
        for sink, _ready in list(self._sinks):
            try:
                sink(report)
            except Exception:
                log.exception("report sink failed")

    def report_ready(self) -> bool:
        """A report leaves the store only when some connection reads what it is sent."""
        return any(ready() for _sink, ready in self._sinks)

    def connect_core(self, core: "Orchestrator") -> None:
        status, prompt = self.emitter("status"), self.emitter("prompt")
        # Warm workers of the pool are no one's agents until taken: connections never hear of them.
        core.add_status_listener(lambda agent, *rest: None if agent.pooled else status(agent, *rest))
        core.add_prompt_listener(lambda agent, *rest: None if agent.pooled else prompt(agent, *rest))
        core.add_completed_listener(self.emitter("completed"))
        self.on_new_sink = lambda: core.set_report_sink(self.report, self.report_ready)

    def connect_live(self, live: Any) -> None:
        live.on_profiles_changed(self.emitter("profiles"))
        live.on_flows_changed(self.emitter("flows"))
        live.on_diagnostics(self.emitter("diagnostics"))
        live.on_trust_changed(self.emitter("trust"))
        live.on_trust_notice(self.emitter("notice"))


class _Scope:
    def __init__(self, target: Any, fanout: Fanout) -> None:
        self._target = target
        self._fanout = fanout
        self._added: list[tuple[str, Callable[..., None]]] = []
        self._sinks: list[Callable[["Report"], None]] = []

    def __getattr__(self, name: str) -> Any:  # everything else is the real object's
        return getattr(self._target, name)

    def _add(self, kind: str, listener: Callable[..., None]) -> None:
        self._fanout.add(kind, listener)
        self._added.append((kind, listener))

    def close(self) -> None:
        for kind, listener in self._added:
            self._fanout.remove(kind, listener)
        for sink in self._sinks:
            self._fanout.remove_sink(sink)
        self._added.clear()
        self._sinks.clear()


class CoreScope(_Scope):
    """The core as one connection sees it."""

    def add_status_listener(self, listener: Callable[..., None]) -> None:
        self._add("status", listener)

    def add_prompt_listener(self, listener: Callable[..., None]) -> None:
        self._add("prompt", listener)

    def add_completed_listener(self, listener: Callable[..., None]) -> None:
        self._add("completed", listener)

    def add_workflow_listener(self, listener: Callable[..., None]) -> None:
        self._add("workflow", listener)

    def set_report_sink(self, sink: Callable[["Report"], None], ready: Callable[[], bool] = lambda: True) -> None:
        self._sinks.append(sink)
        self._fanout.add_sink(sink, ready)


class LiveScope(_Scope):
    """The live profiles and flows as one connection sees them."""

    def on_profiles_changed(self, listener: Callable[..., None]) -> None:
        self._add("profiles", listener)

    def on_flows_changed(self, listener: Callable[..., None]) -> None:
        self._add("flows", listener)

    def on_diagnostics(self, listener: Callable[..., None]) -> None:
        self._add("diagnostics", listener)

    def on_trust_changed(self, listener: Callable[..., None]) -> None:
        self._add("trust", listener)

    def on_trust_notice(self, listener: Callable[..., None]) -> None:
        self._add("notice", listener)
