"""What every screen-reading provider shares: clean screen text, named rules, the shell check.

A provider's classification is a pure function of the screen text, anchored to the bottom:
the newest lines are at the bottom, everything higher up is history (old spinners, old prompts,
old answers). Each decision carries the name of the rule that made it, so `cao-sidecar explain`
can say why a screen got its status.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.base import Classification, LaunchContext, LaunchSpec, Provider, StartupAction

S = AgentStatus

# CSI (colours, cursor moves), OSC (titles, hyperlinks: BEL or ST terminated), other two-byte
# escapes, and the C0 controls a capture should not contain (tab and newline stay).
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[PX^_][^\x1b]*\x1b\\"
    r"|\x1b[@-Z\\-_]"
    r"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
RULE_LINE = re.compile(r"^\s*[─━═]{20,}\s*$")
# A shell prompt on the last line: the CLI is gone and its window shows a shell again (a CLI
# started through a shell wrapper), or tmux's remain-on-exit notice.
SHELL_PROMPT = re.compile(r"^(?:[\w.-]+@[\w.-]+(?::\S*)?\s?[$#%]|(?:ba|z|da|k)?sh-[\d.]+[$#]|[$#%])\s*$")
PANE_DEAD = re.compile(r"^Pane is dead \(")


def strip_ansi(text: str) -> str:
    """Plain text of a screen captured with escapes (`capture-pane -e`, `script` logs)."""
    if _CONTROL.search(text) is None:
        return text  # the common case (capture-pane -p): nothing to strip
    text = text.replace("\r\n", "\n")
    # A bare CR returns to the start of the line: keep what was drawn last.
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    return _ANSI.sub("", text)


class Screen:
    """Screen lines without trailing spaces and without the blank rows under the last one."""

    __slots__ = ("lines",)

    def __init__(self, text: str) -> None:
        lines = [line.rstrip() for line in strip_ansi(text).split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    def last_index(self, predicate: Callable[[str], bool], start: int = 0, end: Optional[int] = None) -> int:
        """Index of the lowest line in [start, end) that satisfies predicate, or -1."""
        end = len(self.lines) if end is None else end
        for i in range(end - 1, start - 1, -1):
            if predicate(self.lines[i]):
                return i
        return -1

    def tail(self, count: int, end: Optional[int] = None) -> list[str]:
        """The last `count` non-blank lines above `end` (oldest first)."""
        end = len(self.lines) if end is None else end
        out: list[str] = []
        for i in range(end - 1, -1, -1):
            if self.lines[i].strip():
                out.append(self.lines[i])
                if len(out) >= count:
                    break
        out.reverse()
        return out

    def last_nonblank(self, end: Optional[int] = None) -> int:
        """Index of the last line with text before `end` (-1 when there is none)."""
        return self.last_index(lambda line: bool(line.strip()), 0, end)


def any_match(pattern: re.Pattern[str], lines: Iterable[str]) -> Optional[str]:
    for line in lines:
        if pattern.search(line):
            return line
    return None


def exited_to_shell(screen: Screen) -> Optional[Classification]:
    """The CLI is gone: tmux's dead-pane notice or a shell prompt on the very last line."""
    if not screen.lines:
        return None
    last = screen.lines[-1].strip()
    if PANE_DEAD.match(last):
        return Classification(S.EXITED, "exited: tmux shows the pane as dead")
    if SHELL_PROMPT.match(last):
        return Classification(S.EXITED, "exited: a shell prompt is back on the last line")
    return None


def resolve_command(name: str, ctx: LaunchContext) -> str:
    """Absolute path of an executable, searched on the agent's PATH (tmux execs it directly)."""
    if "/" in name:
        return name
    found = shutil.which(name, path=ctx.env.get("PATH"))
    return found or name


def command_from_options(default: Sequence[str], ctx: LaunchContext) -> list[str]:
    """The CLI's argv head: the profile's `command` option (string or list) or the default."""
    command = ctx.options.get("command")
    if isinstance(command, str) and command.strip():
        import shlex

        argv = shlex.split(command)
    elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
        argv = list(command)
    else:
        argv = list(default)
    argv[0] = resolve_command(argv[0], ctx)
    return argv


def extra_args(ctx: LaunchContext) -> list[str]:
    """The profile's `args` option: more arguments for the CLI, as a list (or one string)."""
    args = ctx.options.get("args")
    if isinstance(args, str):
        import shlex

        return shlex.split(args)
    if isinstance(args, list):
        return [str(a) for a in args]
    return []


def string_list(value: Any) -> list[str]:
    """An option that may be a list of strings or a comma/space separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[,\s]+", value) if v]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    return []


def hook_url(env: dict[str, str], provider: str) -> Optional[str]:
    """The sidecar's hook endpoint for this provider, next to the MCP endpoint (same port)."""
    url = env.get("CAO_MCP_URL")
    if not url:
        return None
    base = url[: -len("/mcp")] if url.endswith("/mcp") else url.rstrip("/")
    return f"{base}/hooks/{provider}"


def relay_argv(ctx: LaunchContext, provider: str, *flags: str) -> Optional[list[str]]:
    """The command that runs hook_relay.py for this agent (its hook URL and credential file, all
    values the sidecar made: nothing from the workspace or the agent), or None when the sidecar
    gave the agent no hook endpoint."""
    url = hook_url(ctx.env, provider)
    if url is None or not ctx.env.get("CAO_MCP_TOKEN"):
        return None
    relay = str(Path(__file__).with_name("hook_relay.py"))
    return [sys.executable, relay, "--url", url, "--token-file", str(ctx.agent_dir / "credential"), *flags]


class Dialog:
    """A startup dialog: seen when `pattern` matches one of the bottom `window` lines."""

    __slots__ = ("rule", "pattern", "keys", "fail", "window", "when")

    def __init__(
        self,
        rule: str,
        pattern: str,
        keys: Sequence[str] = (),
        fail: Optional[str] = None,
        window: int = 20,
        when: Optional[Callable[[dict[str, Any]], bool]] = None,
    ) -> None:
        self.rule = rule
        self.pattern = re.compile(pattern)
        self.keys = tuple(keys)
        self.fail = fail
        self.window = window
        self.when = when


class ScreenProvider(Provider):
    """Base of the real-CLI providers: subclasses write `_classify` and `_extract`."""

    name = "screen"
    exit_command = "/exit"
    interrupt_key = "Escape"
    # Checked in order on the bottom of the screen while the agent starts.
    dialogs: Sequence[Dialog] = ()

    # ---- the Provider methods ----------------------------------------------------------------

    def launch(self, ctx: LaunchContext) -> LaunchSpec:  # pragma: no cover - every CLI has its own
        raise NotImplementedError

    def classify(self, screen: str) -> AgentStatus:
        return self.classify_rule(screen).status

    def classify_rule(self, screen: str) -> Classification:
        s = Screen(screen)
        if not s.lines:
            return Classification(S.STARTING, "empty screen")
        exited = exited_to_shell(s)
        if exited is not None:
            return exited
        return self._classify(s)

    def extract_answer(self, screen: str) -> Optional[str]:
        s = Screen(screen)
        if not s.lines:
            return None
        answer = self._extract(s)
        if answer is None:
            return None
        lines = answer.split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        return "\n".join(lines) if lines else None

    def startup_action(self, screen: str, options: dict[str, Any]) -> Optional[StartupAction]:
        if self.classify_rule(screen).status is not S.WAITING_USER_ANSWER:
            return None  # a dialog's text higher up is history; only a waiting screen is answered
        s = Screen(screen)
        for dialog in self.dialogs:
            if dialog.when is not None and not dialog.when(options):
                continue
            if any_match(dialog.pattern, s.tail(dialog.window)) is not None:
                return StartupAction(rule=dialog.rule, keys=dialog.keys, fail=dialog.fail)
        return None

    # ---- for subclasses -----------------------------------------------------------------------

    def _classify(self, s: Screen) -> Classification:  # pragma: no cover
        raise NotImplementedError

    def _extract(self, s: Screen) -> Optional[str]:  # pragma: no cover
        raise NotImplementedError

    def _dialog(self, s: Screen, window: int = 30) -> Optional[Classification]:
        """A startup dialog at the bottom is a wait for the user (the core may answer it)."""
        for dialog in self.dialogs:
            if any_match(dialog.pattern, s.tail(dialog.window if dialog.window else window)) is not None:
                return Classification(S.WAITING_USER_ANSWER, f"dialog: {dialog.rule}")
        return None
