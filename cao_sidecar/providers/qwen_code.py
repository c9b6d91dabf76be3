"""Provider `qwen_code`: Qwen Code (`qwen`, npm `@qwen-code/qwen-code`), a fork of Gemini CLI.

Screen (0.15.10 and 0.24.4 captured here; bottom = newest):

      > the last input                     a submitted input (two spaces in)
      ⠏ Thinking... (3s · esc to cancel)   busy (spinner, "(Ns · … esc to cancel)")
      ✦ the answer                         an answer: "✦ " head (0.24: "◆︎ "), continuation lines
      ✕ [API Error: ...]                   an error
      ●︎ Update successful! …               notices (not an answer)
    ──────────────────────
    >   Type your message or @path/to/file  the live prompt (column 0; placeholder or typed text)
    ──────────────────────
      ? for shortcuts                      footer (0.24: "➜ dir · model", "Auto mode (…)")

Tool confirmations replace the input box: a box with "Allow execution of: 'touch'?", numbered
choices under a `›` cursor and "Waiting for user confirmation..." under it. Without a
credential Qwen Code opens "Select Authentication Method" (0.24: "Connect a Provider").

Launch: our settings go in a system settings file (`QWEN_CODE_SYSTEM_SETTINGS_PATH`, 0600 in
the agent's directory): `mcpServers.cao` (Streamable HTTP `httpUrl` + the agent's token, `trust`
so the team's tools never ask), `general.enableAutoUpdate: false` (Qwen Code otherwise runs
`npm install -g` of its newest release in the background: seen with 0.15.10), and Claude-style
command hooks (UserPromptSubmit → processing, Stop → completed with `last_assistant_message`,
PermissionRequest → waiting) that run hook_relay.py. The model comes from the profile's env
(OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL: any OpenAI-compatible server) or the user's
own `~/.qwen/settings.json`.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import gemini_family, mcp_config
from cao_sidecar.providers.base import HookEvent, LaunchContext, LaunchSpec
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers.gemini_family import InputBoxScreen
from cao_sidecar.providers.prompt import ScreenPrompt, read_prompt
from cao_sidecar.providers.screen import RULE_LINE, Dialog, Screen, extra_args, string_list

S = AgentStatus

LIVE_PROMPT = re.compile(r"^>(?: |$)")
INPUT = re.compile(r"^  > \S")
# "(3s · esc to cancel)", "(1s · ↑ 5 tokens · esc to cancel)"
BUSY = re.compile(r"\(\d[\dhms ]*(?: · [^()]*)? · esc to cancel\)|esc to cancel\)$")
ANSWER_HEAD = re.compile(r"^  (?:✦|◆\ufe0e?) ")
ERROR = re.compile(r"^  ✕ |\[API Error")
CONFIRM = re.compile(
    r"Waiting for user confirmation|Allow execution of|Apply this change\?|Do you want to proceed|"
    r"^\s*│?\s*› \d+\. (?:Yes|No|Allow|Always)"
)
# Lines under an answer that end it: notices, tool boxes, another input or answer.
ANSWER_END = re.compile(r"^  (?:●|╭|> |✕ )|^  (?:✦|◆\ufe0e?) ")
SETTINGS_FILE = "qwen-system-settings.json"
APPROVAL_MODES = ("default", "auto-edit", "yolo", "plan")
HOOK_EVENTS = ("UserPromptSubmit", "Stop", "PermissionRequest")


class QwenCodeProvider(InputBoxScreen):
    name = "qwen_code"
    cli = CliFacts(
        title="Qwen Code",
        binary="qwen",
        install="npm install -g @qwen-code/qwen-code",
        login="set OPENAI_API_KEY (and OPENAI_BASE_URL, OPENAI_MODEL) in the profile's env, or run `qwen` once and /auth",
        credential_files=("~/.qwen/oauth_creds.json",),
        credential_env=("OPENAI_API_KEY", "DASHSCOPE_API_KEY"),
    )
    INPUT, ANSWER_HEAD, ERROR, BUSY = INPUT, ANSWER_HEAD, ERROR, BUSY
    CONTINUATION = "    "
    BUSY_TEXT = "(Ns · esc to cancel)"
    ANSWER_GLYPHS = "✦/◆"
    exit_command = "/quit"
    interrupt_key = "Escape"
    event_statuses = frozenset({S.PROCESSING, S.COMPLETED, S.WAITING_USER_ANSWER})
    dialogs = (
        Dialog("folder trust", r"Do you trust (?:the files in )?this folder\?|Trust folder \(", keys=("Enter",)),
        Dialog(
            "login",
            r"Select Authentication Method|Connect a Provider|How would you like to authenticate|Waiting for auth",
            fail="Qwen Code is not authenticated: set OPENAI_API_KEY (and OPENAI_BASE_URL, OPENAI_MODEL) in the "
            "profile's env, or run `qwen` in a terminal and use /auth",
        ),
    )

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        opts = ctx.options
        argv = gemini_family.base_argv("qwen", ctx, APPROVAL_MODES)
        argv += ["--allowed-tools=" + tool for tool in string_list(opts.get("allowed_tools"))]
        argv += ["--exclude-tools=" + tool for tool in string_list(opts.get("disallowed_tools"))]
        if ctx.system_prompt:
            argv.append("--append-system-prompt=" + ctx.system_prompt)
        settings: dict[str, Any] = dict(mcp_config.gemini_settings(ctx.env, opts))
        settings["general"] = {"enableAutoUpdate": False, "disableUpdateNag": True}
        hooks = gemini_family.relay_hooks(ctx, self.name, HOOK_EVENTS, "")
        if hooks is not None:
            settings["hooks"] = hooks
        path = mcp_config.write_private_json(ctx.agent_dir / SETTINGS_FILE, settings)
        argv += extra_args(ctx)
        return LaunchSpec(
            argv=argv,
            env={"QWEN_CODE_SYSTEM_SETTINGS_PATH": str(path)},
            events=hooks is not None,
            connects_to_sidecar="CAO_MCP_URL" in ctx.env,
        )

    # ---- screen -------------------------------------------------------------------------------

    def _prompt(self, s: Screen) -> int:
        """The live prompt: a `>` line in column 0 right under the input box's top rule."""
        for i in range(len(s.lines) - 1, max(0, len(s.lines) - 8) - 1, -1):
            if LIVE_PROMPT.match(s.lines[i]) and i > 0 and RULE_LINE.match(s.lines[i - 1]):
                return i
        return -1

    def _box_top(self, s: Screen, prompt: int) -> int:
        return prompt - 1  # the rule right above the prompt

    def _confirming(self, line: str) -> bool:
        return bool(CONFIRM.search(line))

    def _ends_answer(self, line: str) -> bool:
        return bool(ANSWER_END.match(line))

    def read_prompt(self, screen: str) -> ScreenPrompt:
        # The spinner line "Waiting for user confirmation..." under the box is not part of the menu.
        lines = screen.rstrip().split("\n")
        for i in range(len(lines) - 1, max(-1, len(lines) - 4), -1):
            if "Waiting for user confirmation" in lines[i]:
                return read_prompt("\n".join(lines[:i]))
        return read_prompt(screen)

    # ---- events -------------------------------------------------------------------------------

    def hook_event(self, source: str, payload: Any, turn_text: Optional[str]) -> Optional[HookEvent]:
        if not isinstance(payload, dict):
            return None
        event = payload.get("hook_event_name")
        if event == "UserPromptSubmit":
            return HookEvent(S.PROCESSING)
        if event == "PermissionRequest":
            return HookEvent(S.WAITING_USER_ANSWER)
        if event == "Stop":
            answer = payload.get("last_assistant_message")
            return HookEvent(S.COMPLETED, answer if isinstance(answer, str) else None)
        return None
