"""Provider `kiro_cli`: Kiro CLI (`kiro-cli chat`). Amazon Q Developer CLI (`q chat`, provider
`q_cli`) is the same program under its old name and shares this module's reading.

Not installable here (no public package): the patterns come from provider-notes.md and the
fixtures built from them (tests/fixtures/screens/kiro_cli-*.txt, marked constructed).

Screen (classic chat; bottom = newest):

    > the last input                       the user's line (prompt + text)
    > the answer, first line               the answer: a green "> " head, then plain lines
      more of the answer
    ▸ Credits: 0.12 • Time: 3s              after a finished answer
    [agent] 4% λ >                          the prompt: optional [agent], context %, "λ", ">"

The classic prompt names the agent and may show a placeholder or typed text after the arrow:
`[developer] 4% !> Not sure where to start? ...` (2.19) is idle, and so is `[agent]>`.

Full-screen TUI (2.x with `--agent-engine v2`, "Kiro CLI V3"; bottom = newest):

    ────────────────────────────────        a rule, then the user's input indented two spaces
      What files are in this directory?
    • the answer (or indented text)
    ▸ Credits: 0.24 • Time: 3s               after a finished answer
    ────────────────────────────────
     Trust All Tools active, ...            notices, a rule, the status line
    developer · auto · ◔ 4%   ~/project      (agent · model · context)
     ask a question or describe a task ↵     the placeholder: idle ("Kiro is working" while busy)

An answer with its credits line and nothing but this chrome under it is a completed turn; an
error line ("monthly usage limit") there is an error.

Busy: "Thinking...", "Kiro is working", "Initializing..." / "Initializing · type to queue",
"N of M mcp servers initialized".
Waiting: "Allow this action? Use 't' to trust (always allow) this tool for the session. [y/n/t]:",
or the newer choice list "Yes / No / Always allow" ("Trust, always allow"). Error: "Kiro is having
trouble responding right now" (older: "Amazon Q is having trouble ...").

MCP: Kiro reads MCP servers from agent files (JSON) in `~/.kiro/agents/`; each launch writes
`cao-<terminalId>.json` there (Q: `~/.aws/amazonq/cli-agents/`) naming our server through the
stdio bridge and carrying the profile's system prompt, and selects it with `--agent`. Files of
agents that no longer exist are removed at the next launch.

Events (built from Kiro's published hook format, not run against a real Kiro CLI here): the agent
file's `hooks` run hook_relay.py (`bash -c COMMAND`, the event as JSON on standard input:
`hook_event_name`, `cwd`, and `prompt` or `tool_name`/`tool_input`). userPromptSubmit,
preToolUse, postToolUse → processing; stop → completed (it carries no answer: the answer is read
from the screen). No hook reports a permission question: the screen does. Amazon Q's agent
format knew no `stop` trigger, and an agent file with a trigger its CLI does not know may not
load at all, so `q_cli` wires only the three processing hooks.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any, Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers import mcp_config
from cao_sidecar.providers.base import Classification, HookEvent, LaunchContext, LaunchSpec
from cao_sidecar.providers.patterns import PatternProvider, compile_rules
from cao_sidecar.providers.screen import Dialog, Screen, command_from_options, extra_args, relay_argv, string_list

S = AgentStatus

PROMPT = re.compile(r"^(?:\[[\w.-]+\] ?)?(?:\d+% )?(?:λ )?!?> ?$")
PROMPT_WITH_TEXT = re.compile(r"^(?:\[[\w.-]+\] ?)?(?:\d+% )?(?:λ )?!?> \S")
# The classic prompt with the agent's name and typed text or a placeholder after the arrow.
AGENT_PROMPT_WITH_TEXT = re.compile(r"^\[[\w.-]+\] ?(?:\d+% )?(?:λ )?!?> \S")
CREDITS = re.compile(r"^\s*▸ (?:Credits|Time):")
TUI_PLACEHOLDER = re.compile(r"(?i)ask a question,? or describe a task")
TUI_BOUNDARY = re.compile(r"^\s*[─━]{10,}\s*$|(?i:ask a question,? or describe a task)")
# What the TUI draws under a finished answer: rules, notices, the status line, the placeholder.
TUI_CHROME = re.compile(
    r"^\s*$|^\s*[─━]{10,}\s*$|Trust All Tools active|/quit to exit|◔|^\s*[◐◑◒◓] \d+ tasks? remaining|"
    r"ctrl\+g|(?i:ask a question,? or describe a task)"
)
TUI_ERROR = re.compile(
    r"reached your (?:monthly )?usage limit|having trouble responding right now|"
    r"^\s*(?:● )?(?:Error|error):"
)


class KiroCliProvider(PatternProvider):
    name = "kiro_cli"
    cli = CliFacts(
        title="Kiro CLI",
        binary="kiro-cli",
        install="curl -fsSL https://cli.kiro.dev/install | bash",
        login="run `kiro-cli login` in a terminal",
    )
    command = ("kiro-cli", "chat")
    exit_command = "/quit"
    # Input is read line by line: a message is typed as one line (core/typed_text.py).
    bracketed_paste = False
    interrupt_key = "C-c"
    product = "Kiro"
    agents_dir = Path("~/.kiro/agents")
    # The agent file's hook triggers we wire (Kiro CLI's names) and the statuses they report.
    hook_triggers: tuple[str, ...] = ("userPromptSubmit", "preToolUse", "postToolUse", "stop")
    event_statuses = frozenset({S.PROCESSING, S.COMPLETED})
    input_pattern = PROMPT_WITH_TEXT
    prompt_pattern = PROMPT
    rules = compile_rules(
        [
            (
                S.WAITING_USER_ANSWER,
                r"\[y/n/t\]:?\s*\S?$|Allow this action\?",
                3,
                "bottom",
                "waiting: 'Allow this action? [y/n/t]' at the bottom",
            ),
            (
                S.WAITING_USER_ANSWER,
                r"Yes\s*/\s*No\s*/\s*(?:Always allow|Trust)|Trust, always allow|"
                r"^\s*[❯>] ?(?:Yes|No|Always allow|Trust)\b",
                6,
                "bottom",
                "waiting: a permission choice list",
            ),
            (
                S.PROCESSING,
                r"Thinking\.\.\.|(?:Kiro|Amazon Q) is working|Initializing(?:\.\.\.| ·)|"
                r"\d+ of \d+ mcp servers? initialized|^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] ",
                3,
                "bottom",
                "processing: a busy line at the bottom",
            ),
            (
                S.ERROR,
                r"having trouble responding right now|^\s*(?:error|Error):",
                0,
                "after_input",
                "error: the CLI reported an error after the last input",
            ),
            (S.IDLE, PROMPT.pattern, 1, "last_line", "idle: the '>' prompt is the last line"),
            (
                S.IDLE,
                AGENT_PROMPT_WITH_TEXT.pattern,
                1,
                "last_line",
                "idle: the '[agent] >' prompt holds typed text or a placeholder",
            ),
            (S.IDLE, TUI_PLACEHOLDER.pattern, 4, "bottom", "idle: the input placeholder"),
        ]
    )
    dialogs = (
        Dialog(
            "login",
            r"Log in with|Sign in with (?:AWS|Builder ID|GitHub|Google)|Device code|kiro-cli login|q login",
            fail="the CLI is not logged in: run its `login` command in a terminal",
        ),
        Dialog("workspace trust", r"Do you trust (?:the files in )?this (?:folder|workspace)", keys=("Enter",)),
    )

    def _agents_dir(self, ctx: LaunchContext) -> Path:
        home = ctx.env.get("HOME") or os.path.expanduser("~")
        return Path(str(self.agents_dir).replace("~", home, 1))

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        opts = ctx.options
        argv = command_from_options(list(self.command), ctx)
        hooks = self._hooks(ctx)
        agent_name = self._write_agent(ctx, hooks)
        if agent_name:
            argv.append("--agent=" + agent_name)
        if ctx.model:
            argv.append("--model=" + ctx.model)
        if opts.get("permission_mode") == "bypassPermissions" or opts.get("trust_all_tools"):
            argv += ["--trust-all-tools"]
        else:
            allowed = string_list(opts.get("allowed_tools"))
            if allowed:
                argv += ["--trust-tools=" + ",".join(allowed)]
        argv += extra_args(ctx)
        return LaunchSpec(argv=argv, env={}, events=bool(agent_name and hooks))

    def _hooks(self, ctx: LaunchContext) -> dict[str, list[dict[str, Any]]]:
        """The agent file's `hooks`: each trigger runs hook_relay.py (quiet: Kiro adds a hook's
        output to the model's context) with the agent's credential file; none without a hook
        endpoint. The command is a shell line (Kiro runs `bash -c`) made of our own values only."""
        argv = relay_argv(ctx, self.name, "--stdin", "--quiet")
        if argv is None:
            return {}
        hook: dict[str, Any] = {"command": shlex.join(argv), "timeout_ms": 10000}
        tool_hook = {**hook, "matcher": "*"}
        return {trigger: [tool_hook if trigger in ("preToolUse", "postToolUse") else hook] for trigger in self.hook_triggers}

    def _write_agent(self, ctx: LaunchContext, hooks: dict[str, list[dict[str, Any]]]) -> Optional[str]:
        """Our agent file (MCP server through the stdio bridge, the system prompt, the hooks)."""
        extras = [srv for srv in mcp_config.extra_servers(ctx.options) if srv.transport == "stdio"]
        if "CAO_MCP_SOCKET" not in ctx.env and not ctx.system_prompt and not extras and not hooks:
            return None
        directory = self._agents_dir(ctx)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._remove_stale(directory, ctx.agent_dir.parent)
        except OSError:
            return None
        name = f"cao-{ctx.terminal_id}"
        agent: dict[str, object] = {
            "name": name,
            "description": f"cao-sidecar agent {ctx.terminal_id}",
            "prompt": ctx.system_prompt or None,
            "mcpServers": {},
            "tools": ["*"],
        }
        servers: dict[str, object] = {
            srv.name: {"command": srv.command, "args": list(srv.args), "env": dict(srv.env)} for srv in extras
        }
        if "CAO_MCP_SOCKET" in ctx.env:
            servers[mcp_config.SERVER_NAME] = mcp_config.stdio_bridge_entry(
                ctx.env["CAO_MCP_SOCKET"], ctx.agent_dir / "credential"
            )
        agent["mcpServers"] = servers
        if mcp_config.team_tools_preapproved(ctx.env, ctx.options):
            # Kiro's agent files name an MCP server's tool `@server/tool`.
            agent["allowedTools"] = [f"@{mcp_config.SERVER_NAME}/{tool}" for tool in mcp_config.TEAM_TOOLS]
        if ctx.model:
            agent["model"] = ctx.model
        if hooks:
            agent["hooks"] = hooks
        mcp_config.write_private_json(directory / f"{name}.json", agent)
        return name

    @staticmethod
    def _remove_stale(directory: Path, agents_state: Path) -> None:
        for path in directory.glob("cao-*.json"):
            terminal_id = path.stem[len("cao-") :]
            if re.fullmatch(r"[0-9a-f]{8}", terminal_id) and not (agents_state / terminal_id).exists():
                try:
                    path.unlink()
                except OSError:
                    pass

    # ---- events -------------------------------------------------------------------------------

    def hook_event(self, source: str, payload: Any, turn_text: Optional[str]) -> Optional[HookEvent]:
        if not isinstance(payload, dict):
            return None
        event = payload.get("hook_event_name")
        if event not in self.hook_triggers:
            return None  # agentSpawn, and triggers this CLI was not given
        if event == "stop":
            return HookEvent(S.COMPLETED)  # no answer in the event: the screen's is read
        return HookEvent(S.PROCESSING)

    # ---- screen -------------------------------------------------------------------------------

    def _classify(self, s: Screen) -> Classification:
        result = super()._classify(s)
        if result.status is not S.IDLE:
            return result
        placeholder = self._tui_placeholder(s)
        if placeholder >= 0:
            return self._classify_tui(s, placeholder)
        if AGENT_PROMPT_WITH_TEXT.match(s.lines[-1]):
            return result  # typed text (or the placeholder) on the prompt line: idle
        if self._extract(s) is not None:
            return Classification(S.COMPLETED, result.rule + ", and an answer follows the last input")
        return result

    # ---- the full-screen TUI ------------------------------------------------------------------

    @staticmethod
    def _tui_placeholder(s: Screen) -> int:
        """The TUI's input placeholder among the bottom lines, or -1 (classic chat)."""
        low = max(0, len(s.lines) - 4)
        return s.last_index(lambda line: bool(TUI_PLACEHOLDER.search(line)), low)

    def _classify_tui(self, s: Screen, placeholder: int) -> Classification:
        """Idle TUI: completed when a credits line or an error has nothing but chrome under it."""
        end = placeholder
        while end > 0 and TUI_CHROME.search(s.lines[end - 1]):
            end -= 1
        if end <= 0:
            return Classification(S.IDLE, "TUI: the input placeholder, nothing above it")
        last = s.lines[end - 1]
        if TUI_ERROR.search(last):
            return Classification(S.ERROR, "TUI: an error line right above the idle input")
        if CREDITS.match(last):
            return Classification(S.COMPLETED, "TUI: a finished answer (▸ Credits) right above the idle input")
        return Classification(S.IDLE, "TUI: the input placeholder; no finished answer under the last input")

    def _extract_tui(self, s: Screen, placeholder: int) -> Optional[str]:
        credits = s.last_index(lambda line: bool(CREDITS.match(line)), 0, placeholder)
        if credits < 0:
            return None
        start = s.last_index(lambda line: bool(TUI_BOUNDARY.search(line)), 0, credits) + 1
        lines = s.lines[start:credits]
        while lines and not lines[0].strip():
            lines.pop(0)
        lines = lines[1:]  # the user's input
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            return None
        out = [line[2:] if line.startswith("  ") else line for line in lines]
        if out[0].startswith("• "):
            out[0] = out[0][2:]
        return "\n".join(out)

    # ---- classic chat -------------------------------------------------------------------------

    def _extract(self, s: Screen) -> Optional[str]:
        """The answer is the lowest "> " block above the prompt; the "> " line above it is the
        input (both are drawn with the same arrow)."""
        placeholder = self._tui_placeholder(s)
        if placeholder >= 0:
            return self._extract_tui(s, placeholder)
        end = len(s.lines)
        if end and (PROMPT.match(s.lines[-1]) or AGENT_PROMPT_WITH_TEXT.match(s.lines[-1])):
            end -= 1
        credits = s.last_index(lambda line: bool(CREDITS.match(line)), 0, end)
        if credits >= 0 and s.last_index(lambda line: bool(AGENT_PROMPT_WITH_TEXT.match(line)), credits, end) >= 0:
            # An earlier turn's credits: this turn's answer is drawn, its credits line not yet
            # (read at its stop event).
            credits = -1
        if credits >= 0:
            end = credits
        head = s.last_index(lambda line: bool(PROMPT_WITH_TEXT.match(line)), 0, end)
        if head < 0:
            return None
        above = s.last_index(lambda line: bool(PROMPT_WITH_TEXT.match(line)), 0, head)
        if above < 0 and credits < 0:
            return None  # a lone "> text" line: the input that was just submitted
        first = s.lines[head]
        if AGENT_PROMPT_WITH_TEXT.match(first):
            # "[agent] > t": the user's own line (an input or a reply to a question); the
            # answer is what the turn printed under it, up to its credits line.
            if credits < 0:
                return None
            return "\n".join(s.lines[head + 1 : end])
        out = [first[first.index("> ") + 2 :]]
        out += s.lines[head + 1 : end]
        return "\n".join(out)
