"""Provider `codex`: OpenAI's Codex CLI (`codex`, launched with `--no-alt-screen`).

Screen (0.169; bottom = newest):

    › the last input                       a submitted input (history)
    • Working (3s • esc to interrupt)      busy ("◦" blinks; "• Reconnecting... (…esc to interrupt)")
      └ Connection failed: ...             detail lines under a status
    • the answer                           an answer: "• " head, "  " continuation lines
      Worked for 4s • 12:01                turn summary
    › Ask Codex to do anything             the composer (a placeholder, or typed text)
      GPT-6.1-Sol default · /path          footer lines: model and directory,
      ← for agents · ? for shortcuts       shortcuts, "N% left", warnings

Error notices ("■ You've hit your usage limit", "■ unexpected status 401 …") end a turn, also
when its input scrolled away or no composer is drawn under them.

Dialogs (trust, sign-in, approvals) show numbered options with a `›` cursor. Events beat the
screen: Codex's `notify` program (our hook_relay.py) reports `agent-turn-complete` with the last
assistant message; screens still report processing, waiting and errors.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers import mcp_config
from cao_sidecar.providers.base import Classification, HookEvent, LaunchContext, LaunchSpec
from cao_sidecar.providers.screen import (
    Dialog,
    Screen,
    ScreenProvider,
    command_from_options,
    extra_args,
    relay_argv,
)

S = AgentStatus

COMPOSER = "› "
OLD_PROMPTS = ("❯ ", "» ", "codex> ")
CHOICE = re.compile(r"^\s*[›>❯] ?\d+\. ")
STATUS_LINE = re.compile(r"^[•◦] .*\(.*esc to interrupt\)\s*$")
DETAIL = re.compile(r"^\s+(?:└|│|├)")
SUMMARY = re.compile(r"^\s*(?:─+ )?Worked for .*\d")
FOOTER = re.compile(
    r"\? for shortcuts|for agents|\d+% (?:context )?left|context left|send\s+⌃J|tab to queue|"
    r"ctrl\+[a-z] |· /|esc to interrupt|f2 to view|⚠ \d+ warning"
)
ANSWER_HEAD = "• "
NOT_ANSWERS = re.compile(
    r"^• (?:Working|Reconnecting|Ran |Running |Explored|Exploring|Edited|Editing|Called|Calling|Updated Plan|"
    r"Added |Deleted |Read |Search|Waiting|Thinking|Searched|Viewed|Listed|Change Approved|Approved|"
    r"Interrupted|You approved|You denied|You granted|You did not)"
)
NOTICE_ERROR = re.compile(r"^■ (?!Conversation interrupted)")
ERROR = re.compile(r"^(?:■ (?!Conversation interrupted)|\s*(?:ERROR|Error|error):|\s*panic:|thread '.*' panicked)")
WAITING = re.compile(
    r"Would you like to (?:run|make|send|grant)|Approval Required|\[a\] Accept|\[d\] Decline|\(y/n\)|"
    r"Yes, proceed|Yes, just this once|Press enter to confirm or esc to cancel|allow Codex to"
)
TITLE_PROMPT = "Generate a concise, single-line task title"

APPROVAL_POLICIES = ("untrusted", "on-failure", "on-request", "never")
SANDBOX_MODES = ("read-only", "workspace-write", "danger-full-access")


class CodexProvider(ScreenProvider):
    name = "codex"
    cli = CliFacts(
        title="Codex",
        binary="codex",
        install="npm install -g @openai/codex",
        login="run `codex login` in a terminal (or `codex login --with-api-key`), or set OPENAI_API_KEY",
        credential_files=("$CODEX_HOME/auth.json", "~/.codex/auth.json"),
        credential_env=("OPENAI_API_KEY", "CODEX_API_KEY"),
    )
    exit_command = "/exit"
    interrupt_key = "Escape"
    event_statuses = frozenset({S.COMPLETED})
    # Codex draws its composer for a moment before the trust dialog replaces it.
    ready_settle_seconds = 1.0
    dialogs = (
        Dialog(
            "workspace trust",
            r"Trust this folder\?|allow Codex to work in this folder|Trust and continue",
            keys=("1", "Enter"),
        ),
        Dialog(
            "login",
            r"Sign in with ChatGPT|Paste or type your API key|Sign in with Device Code|Finish signing in",
            fail="Codex is not logged in: run `codex login` in a terminal (or `codex login --with-api-key`)",
        ),
        Dialog("update available", r"Update available!", keys=("Escape",)),
        Dialog("full-access consent", r"continue anyway\?|Yes, continue anyway", keys=("Enter",)),
    )

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        opts = ctx.options
        argv = command_from_options(["codex"], ctx)
        argv += ["--no-alt-screen", "-c", "check_for_update_on_startup=false"]
        if ctx.model:
            argv.append("--model=" + ctx.model)
        if ctx.system_prompt:
            argv += ["-c", "developer_instructions=" + mcp_config.toml_value(ctx.system_prompt)]
        argv += mcp_config.codex_args(ctx.env, opts)
        notify = relay_argv(ctx, self.name)
        if notify is not None:
            argv += ["-c", "notify=" + mcp_config.toml_value(notify)]
        mode = opts.get("permission_mode")
        if mode in ("bypassPermissions", "yolo") or opts.get("dangerously_bypass_approvals_and_sandbox"):
            argv += ["--dangerously-bypass-approvals-and-sandbox"]
        else:
            approval = opts.get("approval_policy")
            if approval in APPROVAL_POLICIES:
                argv += ["-c", f'approval_policy="{approval}"']
            sandbox = opts.get("sandbox_mode")
            if sandbox in SANDBOX_MODES:
                argv += ["-c", f'sandbox_mode="{sandbox}"']
        argv += extra_args(ctx)
        # Codex starts its MCP servers with the session, before its composer takes input.
        return LaunchSpec(argv=argv, env={}, events=notify is not None, connects_to_sidecar="CAO_MCP_URL" in ctx.env)

    # ---- screen -------------------------------------------------------------------------------

    @staticmethod
    def _composer(s: Screen) -> int:
        """The live composer line: the lowest `› ` line that is not a numbered choice, with only
        footer or blank lines under it."""
        lines = s.lines
        low = max(0, len(lines) - 12)
        for i in range(len(lines) - 1, low - 1, -1):
            line = lines[i]
            if line.startswith(COMPOSER) or line.startswith(OLD_PROMPTS) or line.rstrip() in ("›", "❯"):
                if CHOICE.match(line):
                    return -1
                return i
            if line.strip() and not (FOOTER.search(line) or line.startswith("  ")):
                return -1
        return -1

    @staticmethod
    def _last_input(s: Screen, end: int) -> int:
        return s.last_index(lambda line: line.startswith(COMPOSER) and not CHOICE.match(line), 0, end)

    def _classify(self, s: Screen) -> Classification:
        composer = self._composer(s)
        tail = s.tail(20)
        if composer < 0:
            dialog = self._dialog(s)
            if dialog is not None:
                return dialog
            if any(CHOICE.match(line) or WAITING.search(line) for line in tail):
                return Classification(S.WAITING_USER_ANSWER, "dialog: choices or an approval at the bottom")
            if any(STATUS_LINE.match(line) for line in s.tail(4)):
                return Classification(S.PROCESSING, "status line '(… esc to interrupt)' at the bottom")
            if NOTICE_ERROR.match(s.lines[s.last_nonblank()]):
                return Classification(S.ERROR, "an error notice (■ …) is the last line")
            return Classification(S.STARTING, "no composer (›) yet")
        # Approval prompts can sit above the composer in some versions.
        above = s.tail(8, composer)
        if any(WAITING.search(line) for line in above):
            return Classification(S.WAITING_USER_ANSWER, "approval question right above the composer")
        block = self._block_above(s, composer)
        if block >= 0 and STATUS_LINE.match(s.lines[block]):
            return Classification(S.PROCESSING, "status line '(… esc to interrupt)' right above the composer")
        if any("esc to interrupt" in line for line in s.lines[composer + 1 :]):
            return Classification(S.PROCESSING, "footer says 'esc to interrupt'")
        last_input = self._last_input(s, composer)
        head = self._answer_head(s, last_input + 1, composer)
        # An error notice (usage limit, expired login) under the turn's last answer ends it.
        notice = s.last_index(lambda line: bool(NOTICE_ERROR.match(line)), last_input + 1, composer)
        if notice > head:
            where = "the last input" if last_input >= 0 else "the top of the screen"
            return Classification(S.ERROR, f"an error notice (■ …) follows {where} and its last answer")
        if last_input < 0:
            return Classification(S.IDLE, "composer, no input yet")
        if head >= 0:
            summary = any(SUMMARY.match(line) for line in s.lines[head:composer])
            rule = "an answer (•) and 'Worked for' follow the last input" if summary else ("an answer (•) follows the last input")
            return Classification(S.COMPLETED, rule)
        for line in s.lines[last_input + 1 : composer]:
            if ERROR.match(line):
                return Classification(S.ERROR, "an error line follows the last input")
        return Classification(S.IDLE, "composer; no answer after the last input")

    @staticmethod
    def _block_above(s: Screen, composer: int) -> int:
        i = composer - 1
        while i >= 0 and (not s.lines[i].strip() or DETAIL.match(s.lines[i])):
            i -= 1
        return i

    @staticmethod
    def _answer_head(s: Screen, start: int, end: int) -> int:
        for i in range(end - 1, start - 1, -1):
            line = s.lines[i]
            if line.startswith(ANSWER_HEAD) and not NOT_ANSWERS.match(line) and not STATUS_LINE.match(line):
                return i
        return -1

    def _extract(self, s: Screen) -> Optional[str]:
        composer = self._composer(s)
        end = composer if composer >= 0 else len(s.lines)
        last_input = self._last_input(s, end)
        head = self._answer_head(s, last_input + 1, end)
        if head < 0:
            return None
        out = [s.lines[head][len(ANSWER_HEAD) :]]
        for line in s.lines[head + 1 : end]:
            if SUMMARY.match(line):
                break
            if line.startswith("  ") or not line.strip():
                out.append(line[2:])
            else:
                break
        return "\n".join(out)

    # ---- events -------------------------------------------------------------------------------

    def hook_event(self, source: str, payload: Any, turn_text: Optional[str]) -> Optional[HookEvent]:
        if not isinstance(payload, dict) or payload.get("type") != "agent-turn-complete":
            return None
        inputs = payload.get("input-messages") or payload.get("input_messages") or []
        if not isinstance(inputs, list):
            inputs = []
        texts = [m.strip() for m in inputs if isinstance(m, str)]
        if turn_text is not None and texts:
            wanted = turn_text.strip()
            if wanted not in texts and any(t.startswith(TITLE_PROMPT) for t in texts):
                return None  # Codex's own side thread (it names the task), not our turn
        elif any(t.startswith(TITLE_PROMPT) for t in texts):
            return None
        answer = payload.get("last-assistant-message", payload.get("last_assistant_message"))
        confirmed = turn_text is not None and turn_text.strip() in texts
        return HookEvent(S.COMPLETED, answer if isinstance(answer, str) else None, confirmed=confirmed)
