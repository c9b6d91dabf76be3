"""Provider `gemini_cli`: Google's Gemini CLI (`gemini`).

Screen (0.61; bottom = newest):

     > the last input                      a submitted input (history)
     ⠼ Thinking... (esc to cancel, 3s)     busy (braille spinner, "(esc to cancel, Ns)")
     ✦ the answer                          an answer: "✦ " head, continuation lines
     ✕ [API Error: ...]                    an error
    ──────────────────────
     Shift+Tab to accept edits
     >   Type your message or @path/to/file   the live prompt (placeholder or typed text)
     workspace (/directory)   sandbox   /model     footer lines

Older versions draw the input box with half blocks (`▀▀▀` above, `▄▄▄` below) and a `*` prompt.

Dialogs are boxes: folder trust ("Do you trust the files in this folder?"), authentication
("How would you like to authenticate", "Please enter your Gemini API key"), tool confirmations
("Allow execution", "Apply this change?") with a "●" cursor on numbered choices.

Launch: our settings (0600 in the agent's directory): `mcpServers.cao` (Streamable HTTP `httpUrl`
+ the agent's token) and command hooks (BeforeAgent → processing, AfterAgent → completed with the
answer hook_relay.py reads from the session transcript, Notification ToolPermission → waiting) that
run hook_relay.py; `GEMINI_CLI_TRUST_WORKSPACE=true` (no folder-trust dialog, no restart). Gemini
reads a system settings file only if root owns it and every directory above it, none writable by
group or others: then `GEMINI_CLI_SYSTEM_SETTINGS_PATH`, otherwise (any ordinary user, or a state
directory under /tmp) a private Gemini home, `GEMINI_CLI_HOME` (gemini_home.py).
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import gemini_family, gemini_home, mcp_config
from cao_sidecar.providers.base import HookEvent, LaunchContext, LaunchSpec
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers.gemini_family import InputBoxScreen
from cao_sidecar.providers.screen import RULE_LINE, Dialog, Screen, extra_args

S = AgentStatus

LIVE_PROMPT = re.compile(r"^\s*│?\s*[>!*] ")
INPUT = re.compile(r"^ ?> \S")
BUSY = re.compile(r"\(esc to cancel, [\dhms ]+\)|^\s*[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] \S")
ANSWER_HEAD = re.compile(r"^ ?✦ ")
ERROR = re.compile(r"^ ?✕ |\[API Error|^\s*Error:")
CHOICE = re.compile(r"^\s*│?\s*● \d+\. ")
# Notices drawn right above the input box, not part of an answer.
MODE_NOTICE = re.compile(r"\(ctrl \+ \w to toggle\)|^\s+\? for shortcuts\s*$|^\s*Shift\+Tab to accept edits")
# The input box's top edge: a rule (0.61), a rounded corner, or half blocks (▀▀▀, older).
HALF_BLOCK_EDGE = re.compile(r"^\s*▀{20,}\s*$")


def _is_box_top(line: str) -> bool:
    return bool(RULE_LINE.match(line) or HALF_BLOCK_EDGE.match(line)) or line.lstrip().startswith("╭")


WAITING = re.compile(
    r"Allow execution|Apply this change\?|Do you want to proceed|Allow once|Allow for this session|"
    r"Waiting for user confirmation|Modify with external editor"
)
SETTINGS_FILE = "gemini-system-settings.json"
APPROVAL_MODES = ("default", "auto_edit", "yolo", "plan")


class GeminiCliProvider(InputBoxScreen):
    name = "gemini_cli"
    cli = CliFacts(
        title="Gemini CLI",
        binary="gemini",
        install="npm install -g @google/gemini-cli",
        login="run `gemini` once in a terminal and sign in, or set GEMINI_API_KEY",
        credential_files=("~/.gemini/oauth_creds.json",),
        credential_env=("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA"),
    )
    INPUT, ANSWER_HEAD, ERROR, BUSY = INPUT, ANSWER_HEAD, ERROR, BUSY
    CONFIRM_WINDOW = 25
    BUSY_TEXT = "(esc to cancel, Ns)"
    exit_command = "/quit"
    interrupt_key = "Escape"
    event_statuses = frozenset({S.PROCESSING, S.COMPLETED, S.WAITING_USER_ANSWER})
    dialogs = (
        Dialog("folder trust", r"Do you trust the files in this folder\?|Trust folder \(", keys=("Enter",)),
        # --include-directories (our context directory holding the profile's prompt) asks too.
        Dialog("included directory trust", r"Do you trust the following folders being added", keys=("Enter",)),
        # With GEMINI_API_KEY set, the CLI preselects "Use Gemini API Key" and pre-fills the key.
        # Choosing it opens "Enter Gemini API Key" with the key pre-filled in its box: submit it
        # (checked first: the "Existing API key detected" line can be gone by then, and the box's
        # "Please enter your Gemini API key" must not be read as a login the user has to do).
        Dialog("auth: submit the pre-filled API key", r"^\s*│ │ (?!Paste your API key here)\S", keys=("Enter",), window=10),
        Dialog("auth: existing API key", r"Existing API key detected", keys=("Enter",)),
        Dialog(
            "login",
            r"How would you like to authenticate|Sign in with Google|Waiting for auth|Please enter your Gemini API key",
            fail="Gemini CLI is not authenticated: run `gemini` in a terminal and sign in (or set GEMINI_API_KEY)",
        ),
        Dialog("update available", r"Gemini CLI update available|Automatic update", keys=()),
    )

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        opts = ctx.options
        argv = gemini_family.base_argv("gemini", ctx, APPROVAL_MODES)
        allowed = opts.get("allowed_tools")
        if isinstance(allowed, list) and allowed:
            argv += ["--allowed-tools=" + str(tool) for tool in allowed]
        settings: dict[str, Any] = dict(mcp_config.gemini_settings(ctx.env, opts))
        hooks = gemini_family.relay_hooks(ctx, self.name, ("BeforeAgent", "AfterAgent", "Notification"), "*")
        if hooks is not None:
            settings["hooks"] = hooks
            settings["hooksConfig"] = {"enabled": True}
        if ctx.system_prompt:
            # Gemini CLI has no "append to the system prompt" option; the profile's prompt goes in
            # as a context file (GEMINI.md) of an included directory, which it loads as memory.
            prompt_dir = ctx.agent_dir / "gemini-context"
            prompt_dir.mkdir(mode=0o700, exist_ok=True)
            (prompt_dir / "GEMINI.md").write_text(ctx.system_prompt + "\n", encoding="utf-8")
            argv.append(f"--include-directories={prompt_dir}")
            settings["context"] = {"loadMemoryFromIncludeDirectories": True}
        # The sidecar trusts the agent's working directory (it answers the CLI's folder-trust
        # dialog with "Trust folder" otherwise): said up front, Gemini CLI does not restart itself
        # after the dialog, a restart after which 0.61 sometimes still held the folder untrusted
        # and so never connected to its MCP servers (ours included).
        env = {"GEMINI_CLI_TRUST_WORKSPACE": "true"}
        if settings:
            # A system settings file where Gemini accepts one, else a private Gemini home (it
            # skips system settings not owned by root or under a world-writable directory).
            home = ctx.env.get("HOME") or os.path.expanduser("~")
            env.update(gemini_home.settings_env(ctx.agent_dir, home, settings, SETTINGS_FILE))
        argv += extra_args(ctx)
        # Gemini CLI connects to its MCP servers as it starts (after the folder-trust dialog, before
        # authentication): ready waits for that, so the first task has our tools.
        return LaunchSpec(argv=argv, env=env, events=hooks is not None, connects_to_sidecar="CAO_MCP_URL" in ctx.env)

    # ---- screen -------------------------------------------------------------------------------

    def _prompt(self, s: Screen) -> int:
        low = max(0, len(s.lines) - 8)
        for i in range(len(s.lines) - 1, low - 1, -1):
            if LIVE_PROMPT.match(s.lines[i]) and not CHOICE.match(s.lines[i]):
                # The live prompt has the rule (its box top) within a few lines above.
                if any(_is_box_top(line) for line in s.lines[max(0, i - 3) : i]):
                    return i
        return -1

    def _box_top(self, s: Screen, prompt: int) -> int:
        top = s.last_index(_is_box_top, 0, prompt)
        return top if top >= 0 else prompt

    def _confirming(self, line: str) -> bool:
        return bool(CHOICE.match(line) or WAITING.search(line))

    def _ends_answer(self, line: str) -> bool:
        return bool(ANSWER_HEAD.match(line) or INPUT.match(line) or MODE_NOTICE.search(line))

    # ---- events -------------------------------------------------------------------------------

    def hook_event(self, source: str, payload: Any, turn_text: Optional[str]) -> Optional[HookEvent]:
        if not isinstance(payload, dict):
            return None
        event = payload.get("hook_event_name")
        if event == "BeforeAgent":
            return HookEvent(S.PROCESSING)
        if event == "AfterAgent":
            # `cao_answer`: the relay's copy from the transcript (`prompt_response` is garbled
            # when the answer was streamed in pieces: hook_relay.py); else the screen's answer.
            answer = payload.get("cao_answer")
            return HookEvent(S.COMPLETED, answer if isinstance(answer, str) else None)
        if event == "Notification" and payload.get("notification_type") == "ToolPermission":
            return HookEvent(S.WAITING_USER_ANSWER)
        return None
