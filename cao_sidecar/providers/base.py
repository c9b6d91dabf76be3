"""What the core needs from an agent CLI: how to launch it and how to read its screen.

A provider is stateless. `classify` and `extract_answer` are pure functions of the screen text
(tested against captured screens); everything that touches processes lives in the core and the
terminal layer. The real CLIs' providers (docs/providers.md) also name the rule behind each
status, the keys that answer startup dialogs, and translate the CLI's own events (hooks) into
statuses: see Provider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import attrs

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.prompt import ScreenPrompt, read_prompt


@attrs.define
class LaunchContext:
    """Facts about the agent being launched that the provider may put on its command line."""

    terminal_id: str
    session: str
    working_directory: str
    agent_dir: Path  # private per-agent directory under the state dir (transcripts, configs)
    model: Optional[str] = None
    system_prompt: str = ""
    env: dict[str, str] = attrs.field(factory=dict)  # what the core wants in the agent's environment
    # Provider options from the profile's frontmatter (permission_mode, allowed_tools, args, ...).
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class LaunchSpec:
    argv: list[str]
    env: dict[str, str] = attrs.field(factory=dict)
    # True when the launch wired the CLI's own events (hooks, notify) to the sidecar: from the
    # start, screens may not end a turn that events will end (see AgentSupervisor.agent_event).
    events: bool = False
    # True when the launch gave the CLI our MCP server and the CLI connects to it as it starts:
    # the agent is ready only once the sidecar has seen that connection (AgentSupervisor.launch).
    connects_to_sidecar: bool = False


def profile_options(profile: Any) -> dict[str, Any]:
    """LaunchContext.options from a profile: its provider settings (permission mode, tools, extra
    MCP servers) under the names providers read, plus its other frontmatter fields as given
    (provider-specific options such as `args`, `command`, `approval_policy`)."""
    options: dict[str, Any] = dict(getattr(profile, "extra", None) or {})
    for key in ("permission_mode", "allowed_tools", "disallowed_tools", "mcp_servers"):
        value = getattr(profile, key, None)
        if value:
            options[key] = value
    if getattr(profile, "ask_for_team_tools", False):
        options["ask_for_team_tools"] = True
    return options


def flag_like_value(ctx: LaunchContext) -> Optional[str]:
    """The first profile value bound for a CLI's argv that begins with '-' (a CLI could take it
    as a flag such as `--yolo`), described, or None. Profile validation refuses these; this is
    the launch's own check for profiles that did not come through it."""
    if ctx.model and ctx.model.startswith("-"):
        return f"model {ctx.model!r}"
    for key in ("allowed_tools", "disallowed_tools"):
        value = ctx.options.get(key)
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
        for item in items:
            if str(item).strip().startswith("-"):
                return f"{key} entry {str(item).strip()!r}"
    return None


@attrs.frozen
class Classification:
    """A status and the name of the rule that decided it (what `cao-sidecar explain` prints)."""

    status: AgentStatus
    rule: str


@attrs.frozen
class StartupAction:
    """What the core does about a dialog shown while the CLI starts: press `keys` (tmux key
    names) to answer it, or give up with `fail` (a dialog only the user can answer, e.g. a login)."""

    rule: str
    keys: tuple[str, ...] = ()
    fail: Optional[str] = None


@attrs.frozen
class HookEvent:
    """A status reported by the CLI itself (hook, notify program): exact, so it beats the screen."""

    status: AgentStatus
    answer: Optional[str] = None
    # The payload names the current turn's input: it belongs to this turn even if no busy
    # status was seen (a turn faster than the screen).
    confirmed: bool = False


class Provider:
    """Base of every provider: what the core asks of a CLI, with the defaults of a CLI that has no
    extras (no events, no start-up dialogs, no readable input line). The core calls these
    methods directly; a provider overrides what its CLI offers."""

    name: str = "provider"
    # Text typed (then Enter) to ask the CLI to quit.
    exit_command: str = "/exit"
    # Key (tmux key name) that interrupts the current turn.
    interrupt_key: str = "Escape"
    # Statuses this provider's event source reports (hooks, notify). Once an event arrived for an
    # agent, screen classifications with these statuses are ignored: events win.
    event_statuses: frozenset[AgentStatus] = frozenset()
    # Some CLIs draw their prompt for a moment before a startup dialog replaces it: ready means
    # showing the prompt for this long.
    ready_settle_seconds: float = 0.0
    # The CLI takes a bracketed paste as one input (else a message is typed as one line).
    bracketed_paste: bool = True

    def launch(self, ctx: LaunchContext) -> LaunchSpec:  # pragma: no cover - every CLI has its own
        """The command (argv, no shell) and extra environment that start this CLI."""
        raise NotImplementedError

    def classify(self, screen: str) -> AgentStatus:  # pragma: no cover - every CLI has its own
        """Status shown by the screen (visible part, plain text). EXITED only when the screen
        proves the CLI is gone (a shell prompt back on the last line); the core normally learns
        that from the process itself."""
        raise NotImplementedError

    def classify_rule(self, screen: str) -> Classification:
        """`classify` plus the rule that decided (what `cao-sidecar explain` prints)."""
        return Classification(self.classify(screen), f"{self.name}.classify (the provider names no rules)")

    def extract_answer(self, screen: str) -> Optional[str]:
        """The final answer to the last input, read from the screen (scrollback included), or None."""
        return None

    def read_answer(self, agent_dir: Path) -> Optional[str]:
        """The final answer from an event source the CLI writes (transcript), if it has one."""
        return None

    def startup_action(self, screen: str, options: dict[str, Any]) -> Optional[StartupAction]:
        """How to answer the startup dialog (trust, consent, update, ...) on this screen, if any."""
        return None

    def hook_event(self, source: str, payload: Any, turn_text: Optional[str]) -> Optional[HookEvent]:
        """Translate one hook/notify payload (authenticated as this agent's) into a status."""
        return None

    def read_prompt(self, screen: str) -> ScreenPrompt:
        """The question the screen asks and its choices (default: the generic reader)."""
        return read_prompt(screen)

    def typed_input(self, screen: str) -> Optional[str]:
        """The text on the CLI's input line when that line is the bottom of the screen, else None.
        A line-oriented CLI echoes an input before it is submitted and shows the same line, with
        nothing below, after it took the Enter and before it draws anything: the core then neither
        ends a turn on that screen nor takes it as proof that the Enter was lost."""
        return None

    def inputs_since(self, agent_dir: Path, since: float) -> Optional[list[str]]:
        """The inputs the CLI took at or after `since` (wall clock), from a record it keeps (its
        transcript); None when it keeps none. Recovery uses it to tell whether a message a crashed
        sidecar was typing in got through."""
        return None
