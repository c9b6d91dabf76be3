"""Provider `claude_code`: Anthropic's Claude Code (`claude`).

Screen (2.1.x; bottom = newest):

    ❯ the last input                       a submitted input (history)
    ● Bash(touch x)                        a tool call ...
      ⎿  Done                              ... and its result
    ● the answer                           an answer block: "● " head, "  " continuation lines
    ✻ Churned for 4s                       turn summary (while busy: "✻ Cascading… (3s · ↓ 2 tokens)")
    ────────────────────────────────       the input box: a rule,
    ❯                                      the prompt (typed text after "❯ "),
    ────────────────────────────────       a rule,
      ? for shortcuts · ← for agents       and footer lines ("esc to interrupt" while busy,
                         ● high · /effort   "● high · /effort" is a footer, not an answer)

2.1.x draws the turn summary after every turn: an answer without it is still being written.
Errors may be drawn as an answer block ("● Please run /login · API Error: 401 …", 2.1.332) under
a prompt placeholder ("❯ Once fixed, resend your message"); retries show as "✻ … retrying in 3s".

Dialogs (trust, permission) replace the input box. Events beat the screen: launched with
`--settings FILE` whose HTTP hooks POST to the sidecar (UserPromptSubmit, Pre/PostToolUse →
processing; Stop → completed with `last_assistant_message` or the transcript's last answer;
Notification(permission_prompt)/PermissionRequest → waiting_user_answer; StopFailure → error).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any, Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers import mcp_config
from cao_sidecar.providers.base import Classification, HookEvent, LaunchContext, LaunchSpec
from cao_sidecar.providers.screen import (
    RULE_LINE,
    Dialog,
    Screen,
    ScreenProvider,
    command_from_options,
    extra_args,
    hook_url,
    string_list,
)

S = AgentStatus

PROMPT = "❯"
ANSWER_HEADS = ("● ", "⏺ ")
# "✻ Cascading… (0s · ↓ 2 tokens)", "· Computing…": a word (or more) and an ellipsis.
SPINNER = re.compile(r"^[✶✢✽✻✳·*✦∗] \S.*(?:…|\.\.\.)(?:\s*\(.*\))?\s*$")
SUMMARY = re.compile(r"^[✶✢✽✻✳·*✦∗] \S+ for \d")
TOOL_RESULT = re.compile(r"^\s+⎿")
# "✻ Connection refused — ... · Retrying in 14s · attempt 6/10": the turn goes on by itself.
RETRYING = re.compile(r"^[✶✢✽✻✳·*✦∗] .*(?i:retrying in) \d")
# The feedback survey drawn after a turn ("● How is Claude doing this session? (optional)").
SURVEY = re.compile(r"^[●⏺] How is Claude doing this session\?|^\s+\d: Bad\s+\d: Fine")
# An error drawn as an answer block (2.1.3xx): "● Please run /login · API Error: 401 ...".
API_ERROR_HEAD = re.compile(r"^[●⏺] (?:.* · )?API Error\b|^[●⏺] Please run /login\b")
# Placeholders in an empty prompt: 'Try "write a test for …"', "Once fixed, resend your message".
PLACEHOLDER = re.compile(r'^❯[ \xa0](?:Try "|Once fixed, resend your message\s*$)')
# An answer's continuation line (its "● " head may have scrolled away above).
CONTINUATION = re.compile(r"^  \S")
ERROR_RESULT = re.compile(
    r"^\s+⎿\s+(?:API Error|Error|Not logged in|Please run /login|Invalid API key|Credit balance|Request timed out|"
    r"OAuth token|Claude AI usage limit|Prompt is too long)"
)
WAITING = re.compile(
    r"Do you want to (?:proceed|make this edit|create|allow|run)|Would you like to proceed\?|"
    r"^\s*❯ \d+\. |Enter to confirm|↑/↓ to navigate|Esc to cancel · Tab to amend|\(y/n\)"
)
HOOK_EVENTS = (
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "Notification",
    "PermissionRequest",
    "Stop",
    "StopFailure",
)
SETTINGS_FILE = "claude-settings.json"
SESSION_FILE = "claude-session-id"

PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "auto", "dontAsk")


def _is_rule(line: str) -> bool:
    return bool(RULE_LINE.match(line))


def _is_bypass(options: dict[str, Any]) -> bool:
    return options.get("permission_mode") == "bypassPermissions" or bool(options.get("dangerously_skip_permissions"))


class ClaudeCodeProvider(ScreenProvider):
    name = "claude_code"
    cli = CliFacts(
        title="Claude Code",
        binary="claude",
        install="npm install -g @anthropic-ai/claude-code",
        login="run `claude` once in a terminal and log in with /login, or set ANTHROPIC_API_KEY",
        credential_files=("~/.claude/.credentials.json", "$CLAUDE_CONFIG_DIR/.credentials.json"),
        credential_env=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"),
        logged_out_screen=r"Not logged in\b.*/login",
    )
    exit_command = "/exit"
    interrupt_key = "Escape"
    event_statuses = frozenset({S.PROCESSING, S.COMPLETED, S.ERROR, S.WAITING_USER_ANSWER})
    dialogs = (
        Dialog("workspace trust", r"Yes, I trust this folder|Do you trust the files in this folder", keys=("Enter",)),
        # Only when the profile asked for bypass mode (the settings file pre-accepts it too):
        # the consent defaults to "No, exit", so choose "2. Yes, I accept".
        Dialog("bypass-permissions consent", r"Yes, I accept", keys=("2",), when=_is_bypass),
        Dialog(
            "bypass-permissions consent",
            r"Yes, I accept",
            fail="Claude Code asks to accept bypass-permissions mode, which the profile did not ask for",
        ),
        Dialog("API key approval", r"Do you want to use this API key\?", keys=("Up", "Enter")),
        Dialog("text style (first run)", r"Choose the text style|Let's get started", keys=("Enter",)),
        Dialog(
            "login",
            r"Select login method|Log in with your Claude|Paste code here if prompted|Browser didn't open",
            fail="Claude Code is not logged in: run `claude` once in a terminal and log in (or set ANTHROPIC_API_KEY)",
        ),
        Dialog("update available", r"Update available.*(?:Skip|later)", keys=("Escape",)),
    )

    # ---- launch -------------------------------------------------------------------------------

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        opts = ctx.options
        argv = command_from_options(["claude"], ctx)
        session_id = str(uuid.uuid4())
        (ctx.agent_dir / SESSION_FILE).write_text(session_id)
        argv += ["--session-id", session_id]
        if ctx.model:
            argv.append("--model=" + ctx.model)
        if ctx.system_prompt:
            argv.append("--append-system-prompt=" + ctx.system_prompt)
        argv += effort_args(opts.get("effort"))
        argv += mcp_config.claude_code_args(ctx.env, ctx.agent_dir, opts)
        settings: dict[str, Any] = {}
        url = hook_url(ctx.env, self.name)
        if url is not None and ctx.env.get("CAO_MCP_TOKEN"):
            entry = {
                "type": "http",
                "url": url,
                "headers": {"Authorization": f"Bearer {ctx.env['CAO_MCP_TOKEN']}"},
                "timeout": 10,
            }
            settings["hooks"] = {event: [{"hooks": [dict(entry)]}] for event in HOOK_EVENTS}
        if _is_bypass(opts):
            settings["skipDangerousModePermissionPrompt"] = True
            argv += ["--dangerously-skip-permissions"]
        elif isinstance(opts.get("permission_mode"), str) and opts["permission_mode"] in PERMISSION_MODES:
            argv += ["--permission-mode", opts["permission_mode"]]
        if settings:
            path = mcp_config.write_private_json(ctx.agent_dir / SETTINGS_FILE, settings)
            argv += ["--settings", str(path)]
        allowed = string_list(opts.get("allowed_tools"))
        if mcp_config.team_tools_preapproved(ctx.env, opts):
            # Merged with the profile's own list: our tools never stop a lead at a prompt.
            allowed += [tool for tool in mcp_config.claude_team_tools() if tool not in allowed]
        if allowed:
            argv += ["--allowedTools=" + tool for tool in allowed]
        disallowed = string_list(opts.get("disallowed_tools"))
        if disallowed:
            argv += ["--disallowedTools=" + tool for tool in disallowed]
        argv += extra_args(ctx)
        env = {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1"}
        # Claude Code connects to its MCP servers in the background as it starts.
        return LaunchSpec(argv=argv, env=env, events="hooks" in settings, connects_to_sidecar="CAO_MCP_URL" in ctx.env)

    # ---- screen -------------------------------------------------------------------------------

    @staticmethod
    def _input_box(s: Screen) -> Optional[tuple[int, int, int]]:
        """(top rule, prompt line, bottom rule) of the input box near the bottom, or None."""
        lines = s.lines
        lowest = max(0, len(lines) - 40)
        bottom = s.last_index(_is_rule, lowest)
        while bottom > lowest:
            # The prompt line(s) sit between two rules; the footer (below) never holds a rule.
            top = s.last_index(_is_rule, lowest, bottom)
            if top < 0:
                return None
            if bottom - top >= 2 and lines[top + 1].startswith(PROMPT):
                return top, top + 1, bottom
            bottom = top
        return None

    def _classify(self, s: Screen) -> Classification:
        lines = s.lines
        box = self._input_box(s)
        if box is None:
            tail = s.tail(25)
            if any(WAITING.search(line) for line in tail):
                dialog = self._dialog(s)
                return dialog or Classification(S.WAITING_USER_ANSWER, "dialog: a question with choices at the bottom")
            if any("Unable to connect to Anthropic services" in line for line in tail):
                return Classification(S.ERROR, "error: cannot reach Anthropic services")
            last = s.tail(3)
            if any(SPINNER.match(line) for line in last):
                return Classification(S.PROCESSING, "spinner line, no input box yet")
            if self._last_input(s, len(lines)) >= 0 or self._answer_head(s, 0, len(lines)) >= 0:
                # A conversation without its input box under it: a redraw caught half way.
                return Classification(S.PROCESSING, "conversation without an input box (a redraw caught half way)")
            return Classification(S.STARTING, "no input box yet")
        top, prompt, bottom = box
        footer = lines[bottom + 1 :]
        above = self._block_above(s, top)
        summary_above = above is not None and bool(SUMMARY.match(lines[above]))
        # 2.1.3xx keeps "esc to interrupt" in its shortcut line after some turns: the turn
        # summary right above the box says the turn is over.
        if any("esc to interrupt" in line for line in footer) and not summary_above:
            return Classification(S.PROCESSING, "footer says 'esc to interrupt'")
        if above is not None and SPINNER.match(lines[above]) and not summary_above:
            return Classification(S.PROCESSING, "spinner line right above the input box")
        if above is not None and RETRYING.match(lines[above]):
            return Classification(S.PROCESSING, "the request is being retried ('Retrying in …') above the input box")
        if lines[prompt].strip() != PROMPT and not PLACEHOLDER.match(lines[prompt]):
            return Classification(S.IDLE, "input box holds typed text")
        # The last input may have scrolled away under a tall paste or answer: then the whole
        # screen above the box belongs to the last turn.
        last_input = self._last_input(s, top)
        where = "the last input" if last_input >= 0 else "the top of the screen (input scrolled away)"
        head = self._answer_head(s, last_input + 1, top)
        if head >= 0 and API_ERROR_HEAD.match(lines[head]):
            return Classification(S.ERROR, f"empty prompt; an API error (● … API Error) follows {where}")
        if head >= 0:
            if summary_above or any(SUMMARY.match(line) for line in lines[head:top]):
                return Classification(S.COMPLETED, f"empty prompt; an answer (●) and the turn summary follow {where}")
            if not any("Interrupted" in line for line in lines[head:top]):
                # 2.1.x ends every turn with its summary ("✻ Worked for 4s"), even a 0 s one.
                return Classification(S.PROCESSING, f"an answer (●) follows {where}, no turn summary yet (still written)")
            return Classification(S.COMPLETED, f"empty prompt; an answer (●) follows {where}")
        for i in range(last_input + 1, top):
            if ERROR_RESULT.match(lines[i]):
                return Classification(S.ERROR, f"empty prompt; an error (⎿ ...) follows {where}")
        if summary_above:
            return Classification(S.COMPLETED, f"empty prompt; the turn summary follows {where}")
        if last_input < 0 and above is not None and CONTINUATION.match(lines[above]) and not TOOL_RESULT.match(lines[above]):
            return Classification(S.PROCESSING, "an answer's lines (head scrolled away) above the box, no turn summary yet")
        if last_input < 0:
            return Classification(S.IDLE, "empty prompt, no input yet")
        return Classification(S.IDLE, "empty prompt; no answer after the last input")

    @staticmethod
    def _block_above(s: Screen, top: int) -> Optional[int]:
        """The lowest meaningful line above the input box (tips under the spinner skipped)."""
        i = top - 1
        while i >= 0 and (not s.lines[i].strip() or TOOL_RESULT.match(s.lines[i]) and "Tip:" in s.lines[i]):
            i -= 1
        return i if i >= 0 else None

    @staticmethod
    def _last_input(s: Screen, end: int) -> int:
        return s.last_index(lambda line: line.startswith((PROMPT + " ", "> ")), 0, end)

    @staticmethod
    def _answer_head(s: Screen, start: int, end: int) -> int:
        """The last answer block head in [start, end) that is not a tool call."""
        for i in range(end - 1, start - 1, -1):
            line = s.lines[i]
            if line.startswith(ANSWER_HEADS) and not SURVEY.match(line):
                nxt = i + 1
                if nxt < end and TOOL_RESULT.match(s.lines[nxt]):
                    continue  # a tool call: "● Bash(...)" then "  ⎿  result"
                return i
        return -1

    def _extract(self, s: Screen) -> Optional[str]:
        box = self._input_box(s)
        end = box[0] if box is not None else len(s.lines)
        last_input = self._last_input(s, end)
        head = self._answer_head(s, last_input + 1, end)
        if head < 0:
            return None
        out = [s.lines[head][2:]]
        for line in s.lines[head + 1 : end]:
            if line.startswith("  ") or not line.strip():
                if TOOL_RESULT.match(line):
                    break
                out.append(line[2:])
            else:
                break  # the turn summary (✻ ... for 4s) or the next block
        return "\n".join(out)

    # ---- events -------------------------------------------------------------------------------

    def hook_event(self, source: str, payload: Any, turn_text: Optional[str]) -> Optional[HookEvent]:
        if not isinstance(payload, dict):
            return None
        event = payload.get("hook_event_name")
        if event in ("UserPromptSubmit", "PreToolUse", "PostToolUse"):
            return HookEvent(S.PROCESSING)
        if event == "PermissionRequest":
            return HookEvent(S.WAITING_USER_ANSWER)
        if event == "Notification":
            kind = payload.get("notification_type")
            message = str(payload.get("message") or "")
            if kind in ("permission_prompt", "elicitation_dialog") or (kind is None and "permission" in message):
                return HookEvent(S.WAITING_USER_ANSWER)
            return None  # idle_prompt and friends: not a change of status
        if event == "StopFailure":
            return HookEvent(S.ERROR)
        if event == "Stop":
            answer = payload.get("last_assistant_message")
            if not isinstance(answer, str):
                answer = read_transcript_answer(payload.get("transcript_path"), payload.get("session_id"))
            return HookEvent(S.COMPLETED, answer)
        return None


def read_transcript_answer(path: Any, session_id: Any) -> Optional[str]:
    """The text of the last assistant turn in a Claude Code transcript (JSONL).

    Only a file named after the session (`<session_id>.jsonl`) is read: the path comes from the
    agent, and the sidecar does not read arbitrary files for it.
    """
    if not isinstance(path, str) or not isinstance(session_id, str) or not session_id:
        return None
    p = Path(path)
    if p.name != f"{session_id}.jsonl" or p.suffix != ".jsonl" or not p.is_file():
        return None
    try:
        size = p.stat().st_size
        with open(p, "rb") as handle:
            # The last turn is near the end; 4 MB is plenty and bounds the work.
            handle.seek(max(0, size - 4 * 1024 * 1024))
            data = handle.read()
    except OSError:
        return None
    return transcript_answer(data.decode("utf-8", "replace").splitlines())


def transcript_answer(records: list[str]) -> Optional[str]:
    """Text blocks of the assistant records after the last user record (prompt or tool result)."""
    texts: list[str] = []
    for raw in records:
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        kind = record.get("type")
        message = record.get("message")
        if not isinstance(message, dict):
            message = {}
        if kind == "user":
            texts = []
        elif kind == "assistant":
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                for block in content:
                    if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                        texts.append(block["text"])
    if not texts:
        return None
    return "\n\n".join(t.strip("\n") for t in texts)


# Claude Code's reasoning effort (`--effort`, 2.1.x): a profile's `effort: high`.
EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")


def effort_args(effort: Any) -> list[str]:
    if effort is None:
        return []
    if effort not in EFFORT_LEVELS:
        raise ValueError(f"effort {effort!r} is not one of {', '.join(EFFORT_LEVELS)}")
    return ["--effort", effort]
