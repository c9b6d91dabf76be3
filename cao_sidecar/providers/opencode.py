"""Provider `opencode`: OpenCode (`opencode`, a full-screen TUI).

Screen (1.18; bottom = newest; a sidebar may fill the right-hand columns of wide windows):

      ┃  the last input                       a user message: a "┃" bar, text after two spaces
         the answer                          the answer, indented five spaces
         ▣  Build · Claude Sonnet 4.5 · 4.3s  completion marker (no duration while busy)
      ┃                                       the input box: "┃" lines ...
      ┃  Build · Claude Sonnet 4.5 Anthropic  ... with the agent and model ...
      ╹▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀            ... and its bottom edge
       ⬝⬝⬝⬝  esc interrupt     ctrl+p commands   footer ("esc interrupt" only while busy)

Waiting: "△ Permission required" with "Allow once / Always allow / Reject". OpenCode's screen
may stop changing once it is idle, which is fine for output-triggered classification.

Launch: an extra config file (`OPENCODE_CONFIG`, 0600 in the agent's directory) with our MCP
server (`type: remote`, the agent's token), the profile's prompt as an instructions file,
`permission` allow-all in bypass mode, and our plugin (opencode_plugin.js, loaded by path: it
imports nothing, so OpenCode installs nothing for it) that reports busy, permission and idle
(with the turn's input and answer) to the hook endpoint; `OPENCODE_DISABLE_AUTOUPDATE=1`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers import mcp_config
from cao_sidecar.providers.base import Classification, HookEvent, LaunchContext, LaunchSpec
from cao_sidecar.providers.screen import Dialog, Screen, ScreenProvider, command_from_options, extra_args, hook_url

S = AgentStatus

BOX_BOTTOM = re.compile(r"^\s*╹▀")
BAR = re.compile(r"^\s*┃")
USER_LINE = re.compile(r"^\s*┃  \S")
MARKER = re.compile(r"^\s*▣  ")
DONE_MARKER = re.compile(r"^\s*▣  .*· \d[\d.]*(?:ms|s|m)(?:\s|$)|^\s*▣  .*· \d+m \d+s")
WAITING = re.compile(r"△ Permission required|Allow once|Always allow|Reject\b.*(?:esc|enter)|Permission required")
ERROR = re.compile(
    r"^\s*┃?\s*(?:Error|error)\b|AI_APICallError|ProviderModelNotFoundError|ProviderInitError|"
    r"APIError|Unable to connect|Request failed"
)
SIDEBAR_GAP = re.compile(r"\s{8,}")
# Busy footer: "esc interrupt", after one Esc "esc again to interrupt" (1.18).
BUSY = re.compile(r"esc (?:again to )?interrupt")
# `opencode mini` (2.0, a line-oriented view): "› input", the answer, "agent · model · 29.6s",
# an "┃" input line and a footer ending in "ctrl+p menu".
MINI_FOOTER = re.compile(r"ctrl\+p menu")
MINI_INPUT = re.compile(r"^› \S")
MINI_DONE = re.compile(r"^\S.* · .+ · \d[\d.]*(?:ms|s|m)\s*$|^\S.* · .+ · \d+m \d+s\s*$")
MINI_ERROR = re.compile(r"(?i)request failed|^\s*error\b|APIError|Unable to connect")
CONFIG_FILE = "opencode.json"
PLUGIN = Path(__file__).with_name("opencode_plugin.js")


class OpenCodeProvider(ScreenProvider):
    name = "opencode"
    cli = CliFacts(
        title="OpenCode",
        binary="opencode",
        install="npm install -g opencode-ai",
        login="run `opencode auth login` in a terminal, or set your model provider's API key",
        credential_files=("$XDG_DATA_HOME/opencode/auth.json", "~/.local/share/opencode/auth.json"),
        credential_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"),
    )
    exit_command = "/exit"
    interrupt_key = "Escape"
    event_statuses = frozenset({S.PROCESSING, S.COMPLETED, S.WAITING_USER_ANSWER})
    dialogs = (
        Dialog("login", r"Run /connect to add an AI provider|No provider configured|opencode auth login", fail=None, keys=()),
    )

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        argv = command_from_options(["opencode"], ctx)
        if ctx.model:
            argv.append("--model=" + ctx.model)
        config: dict[str, Any] = {"$schema": "https://opencode.ai/config.json", "autoupdate": False}
        if ctx.model:  # also in its own config, over the model of the user's config
            config["model"] = ctx.model
        servers = mcp_config.opencode_entries(ctx.env, ctx.options)
        if servers:
            config["mcp"] = servers
        if ctx.system_prompt:
            path = ctx.agent_dir / "opencode-instructions.md"
            path.write_text(ctx.system_prompt + "\n", encoding="utf-8")
            config["instructions"] = [str(path)]
        permission = mcp_config.opencode_permissions(ctx.env, ctx.options)
        if ctx.options.get("permission_mode") == "bypassPermissions":
            permission.update({"edit": "allow", "bash": "allow", "webfetch": "allow"})
        if permission:
            config["permission"] = permission
        # The plugin reads the sidecar's URL and the agent's token from OpenCode's environment.
        events = hook_url(ctx.env, self.name) is not None and bool(ctx.env.get("CAO_MCP_TOKEN"))
        if events:
            config["plugin"] = [PLUGIN.as_uri()]
        path = mcp_config.write_private_json(ctx.agent_dir / CONFIG_FILE, config)
        argv += extra_args(ctx)
        # OpenCode connects to its MCP servers as it starts (seen with 1.18 here).
        env = {"OPENCODE_CONFIG": str(path), "OPENCODE_DISABLE_AUTOUPDATE": "1"}
        return LaunchSpec(argv=argv, env=env, events=events, connects_to_sidecar="CAO_MCP_URL" in ctx.env)

    # ---- events (opencode_plugin.js) ----------------------------------------------------------

    def hook_event(self, source: str, payload: Any, turn_text: Optional[str]) -> Optional[HookEvent]:
        if not isinstance(payload, dict):
            return None
        event = payload.get("hook_event_name")
        if event == "busy":
            return HookEvent(S.PROCESSING)
        if event == "permission":
            return HookEvent(S.WAITING_USER_ANSWER)
        if event != "idle":
            return None
        said = payload.get("input")
        confirmed = isinstance(said, str) and turn_text is not None and said.strip() == turn_text.strip()
        if isinstance(payload.get("error"), str):
            return HookEvent(S.ERROR, confirmed=confirmed)
        answer = payload.get("answer")
        return HookEvent(S.COMPLETED, answer if isinstance(answer, str) and answer else None, confirmed=confirmed)

    # ---- screen -------------------------------------------------------------------------------

    @staticmethod
    def _box(s: Screen) -> tuple[int, int]:
        """(first line of the input box, its bottom edge), or (-1, -1)."""
        # A full-screen TUI: one input box, at the bottom in a session, mid-screen on the home page.
        bottom = s.last_index(lambda line: bool(BOX_BOTTOM.match(line)), max(0, len(s.lines) - 30))
        if bottom < 0:
            return -1, -1
        top = bottom
        while top > 0 and bottom - top < 10 and BAR.match(s.lines[top - 1]):
            top -= 1
        return top, bottom

    @staticmethod
    def _mini(s: Screen) -> bool:
        return any(MINI_FOOTER.search(line) for line in s.tail(3))

    def _classify_mini(self, s: Screen) -> Classification:
        footer = s.last_nonblank()
        if BUSY.search(s.lines[footer]):
            return Classification(S.PROCESSING, "mini: footer says 'esc interrupt'")
        if any(WAITING.search(line) for line in s.tail(20)):
            return Classification(S.WAITING_USER_ANSWER, "mini: a permission request at the bottom")
        last_input = s.last_index(lambda line: bool(MINI_INPUT.match(line)), 0, footer)
        if last_input < 0:
            return Classification(S.IDLE, "mini: input line, no input yet")
        done = s.last_index(lambda line: bool(MINI_DONE.match(line)), last_input + 1, footer)
        if done < 0:
            return Classification(S.PROCESSING, "mini: no completion line (agent · model · duration) after the last input")
        if any(MINI_ERROR.search(line) for line in s.lines[last_input + 1 : done]):
            return Classification(S.ERROR, "mini: an error follows the last input")
        return Classification(S.COMPLETED, "mini: a completion line (agent · model · duration) follows the last input")

    def _extract_mini(self, s: Screen) -> Optional[str]:
        footer = s.last_nonblank()
        last_input = s.last_index(lambda line: bool(MINI_INPUT.match(line)), 0, footer)
        done = s.last_index(lambda line: bool(MINI_DONE.match(line)), last_input + 1, footer)
        if last_input < 0 or done < 0:
            return None
        start = last_input + 1
        while start < done and s.lines[start].strip():
            start += 1  # the rest of the input's first paragraph
        # Best effort: an input of several paragraphs leaves its later ones in the answer.
        return "\n".join(s.lines[start:done])

    def _classify(self, s: Screen) -> Classification:
        top, bottom = self._box(s)
        if bottom < 0:
            if self._mini(s):
                return self._classify_mini(s)
            if any(WAITING.search(line) for line in s.tail(20)):
                return Classification(S.WAITING_USER_ANSWER, "dialog: a permission request")
            return Classification(S.STARTING, "no input box yet")
        if any(BUSY.search(line) for line in s.lines[bottom:]):
            return Classification(S.PROCESSING, "footer says 'esc interrupt'")
        if any(WAITING.search(line) for line in s.tail(20)):
            return Classification(S.WAITING_USER_ANSWER, "a permission request at the bottom")
        last_input = s.last_index(lambda line: bool(USER_LINE.match(line)), 0, top)
        if last_input < 0:
            return Classification(S.IDLE, "input box, no input yet")
        marker = s.last_index(lambda line: bool(MARKER.match(line)), last_input + 1, top)
        if marker >= 0 and DONE_MARKER.match(s.lines[marker]):
            return Classification(S.COMPLETED, "a completion marker (▣ … · duration) follows the last input")
        if any(ERROR.search(line) for line in s.lines[last_input + 1 : top]):
            return Classification(S.ERROR, "an error follows the last input")
        if marker >= 0:
            # The footer says "esc interrupt" for as long as a turn runs (checked above): a
            # marker without duration under a quiet footer is a turn that was cut short.
            return Classification(S.IDLE, "a marker without duration and no 'esc interrupt': the turn was cut short")
        return Classification(S.IDLE, "input box; nothing after the last input")

    def _extract(self, s: Screen) -> Optional[str]:
        top, _bottom = self._box(s)
        if top < 0 and self._mini(s):
            return self._extract_mini(s)
        end = top if top >= 0 else len(s.lines)
        last_input = s.last_index(lambda line: bool(USER_LINE.match(line)), 0, end)
        marker = s.last_index(lambda line: bool(DONE_MARKER.match(line)), last_input + 1, end)
        if marker < 0:
            return None
        start = last_input + 1
        while start < marker and BAR.match(s.lines[start]):
            start += 1  # the rest of the user's message block
        out = []
        for line in s.lines[start:marker]:
            body = line[5:] if line.startswith("     ") else line.strip()
            body = SIDEBAR_GAP.split(body, 1)[0] if body.strip() else ""
            out.append(body.rstrip())
        return "\n".join(out)
