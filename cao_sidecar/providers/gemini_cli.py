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

Launch: our settings go in a system settings file (`GEMINI_CLI_SYSTEM_SETTINGS_PATH`, 0600 in
the agent's directory): `mcpServers.cao` (Streamable HTTP `httpUrl` + the agent's token) and
command hooks (BeforeAgent → processing, AfterAgent → completed with the answer hook_relay.py
reads from the session transcript, Notification ToolPermission → waiting) that run hook_relay.py;
`GEMINI_CLI_TRUST_WORKSPACE=true` (no folder-trust dialog, no restart). Gemini CLI refuses a system
settings file whose parent directories are writable by others (e.g. under /tmp): keep the
sidecar's state directory in a private place (the default, ~/.local/state, is).
"""

from __future__ import annotations

import re
import shlex
import sys
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
)

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


class GeminiCliProvider(ScreenProvider):
    name = "gemini_cli"
    cli = CliFacts(
        title="Gemini CLI",
        binary="gemini",
        install="npm install -g @google/gemini-cli",
        login="run `gemini` once in a terminal and sign in, or set GEMINI_API_KEY",
        credential_files=("~/.gemini/oauth_creds.json",),
        credential_env=("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA"),
    )
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
        argv = command_from_options(["gemini"], ctx)
        if ctx.model:
            argv.append("--model=" + ctx.model)
        mode = opts.get("approval_mode")
        if opts.get("permission_mode") == "bypassPermissions":
            mode = "yolo"
        if mode in APPROVAL_MODES:
            argv.append("--approval-mode=" + mode)
        allowed = opts.get("allowed_tools")
        if isinstance(allowed, list) and allowed:
            argv += ["--allowed-tools=" + str(tool) for tool in allowed]
        settings: dict[str, Any] = dict(mcp_config.gemini_settings(ctx.env, opts))
        url = hook_url(ctx.env, self.name)
        events = False
        if url is not None and ctx.env.get("CAO_MCP_TOKEN"):
            relay = shlex.join([sys.executable, str(Path(__file__).with_name("hook_relay.py")), "--url", url,
                                "--token-file", str(ctx.agent_dir / "credential"), "--stdin"])
            settings["hooks"] = {
                event: [{"matcher": "*", "hooks": [{"type": "command", "command": relay, "name": f"cao-{event}",
                                                    "timeout": 10000}]}]
                for event in ("BeforeAgent", "AfterAgent", "Notification")
            }
            settings["hooksConfig"] = {"enabled": True}
            events = True
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
            path = mcp_config.write_private_json(ctx.agent_dir / SETTINGS_FILE, settings)
            env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] = str(path)
        argv += extra_args(ctx)
        # Gemini CLI connects to its MCP servers as it starts (after the folder-trust dialog, before
        # authentication): ready waits for that, so the first task has our tools.
        return LaunchSpec(argv=argv, env=env, events=events, connects_to_sidecar="CAO_MCP_URL" in ctx.env)

    # ---- screen -------------------------------------------------------------------------------

    @staticmethod
    def _prompt(s: Screen) -> int:
        low = max(0, len(s.lines) - 8)
        for i in range(len(s.lines) - 1, low - 1, -1):
            if LIVE_PROMPT.match(s.lines[i]) and not CHOICE.match(s.lines[i]):
                # The live prompt has the rule (its box top) within a few lines above.
                if any(_is_box_top(line) for line in s.lines[max(0, i - 3) : i]):
                    return i
        return -1

    def _classify(self, s: Screen) -> Classification:
        prompt = self._prompt(s)
        if prompt < 0:
            dialog = self._dialog(s)
            if dialog is not None:
                return dialog
            tail = s.tail(25)
            if any(CHOICE.match(line) or WAITING.search(line) for line in tail):
                return Classification(S.WAITING_USER_ANSWER, "dialog: a confirmation with choices")
            if any(BUSY.search(line) for line in s.tail(4)):
                return Classification(S.PROCESSING, "busy line at the bottom")
            return Classification(S.STARTING, "no input prompt yet")
        box_top = s.last_index(lambda line: _is_box_top(line), 0, prompt)
        end = box_top if box_top >= 0 else prompt
        above = s.tail(6, end)
        if any(CHOICE.match(line) or WAITING.search(line) for line in above):
            return Classification(S.WAITING_USER_ANSWER, "confirmation right above the input box")
        if any(BUSY.search(line) for line in s.tail(3, end)):
            return Classification(S.PROCESSING, "'(esc to cancel, Ns)' right above the input box")
        last_input = s.last_index(lambda line: bool(INPUT.match(line)), 0, end)
        if last_input < 0:
            return Classification(S.IDLE, "input prompt, no input yet")
        if s.last_index(lambda line: bool(ANSWER_HEAD.match(line)), last_input + 1, end) >= 0:
            return Classification(S.COMPLETED, "an answer (✦) follows the last input")
        if s.last_index(lambda line: bool(ERROR.search(line)), last_input + 1, end) >= 0:
            return Classification(S.ERROR, "an error (✕) follows the last input")
        return Classification(S.IDLE, "input prompt; no answer after the last input")

    def _extract(self, s: Screen) -> Optional[str]:
        prompt = self._prompt(s)
        end = len(s.lines)
        if prompt >= 0:
            top = s.last_index(lambda line: _is_box_top(line), 0, prompt)
            end = top if top >= 0 else prompt
        last_input = s.last_index(lambda line: bool(INPUT.match(line)), 0, end)
        head = s.last_index(lambda line: bool(ANSWER_HEAD.match(line)), last_input + 1, end)
        if head < 0:
            return None
        first = s.lines[head]
        out = [first[first.index("✦ ") + 2 :]]
        for line in s.lines[head + 1 : end]:
            if ANSWER_HEAD.match(line) or INPUT.match(line) or BUSY.search(line) or MODE_NOTICE.search(line):
                break
            out.append(line[3:] if line.startswith("   ") else line.strip())
        return "\n".join(out)

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
