"""Provider `copilot`: GitHub Copilot CLI (`copilot`).

Constructed from provider-notes.md; Copilot 1.0.102 (npm) runs here up to its folder trust and
"Please use /login" screens (captured), its turns need a GitHub login (built screens, and
others' 1.0.91 start-up in tests/fixtures/screens/corpus.tsv). Screen (bottom = newest):

    > the last input                       the user's line
    ● the answer                           answer blocks: "● " head, "  " continuation
    ─────────────────────
    ❯ Type @ to mention files ...          the prompt (placeholder or typed text)
    ─────────────────────
    ~/work  [⎇ main]      claude-sonnet-4.5 footer

Busy: "esc to cancel" (with a spinner line). Waiting: the folder-trust question ("Do you trust
the files in this folder?"), tool approvals with numbered choices, "[y/n]".

MCP: `--additional-mcp-config @FILE` (our server with the agent's credential, HTTP). Tools:
`--allow-all-tools` (bypass), `--allow-tool`, `--deny-tool`. The system prompt has no flag;
Copilot reads AGENTS.md / .github/copilot-instructions.md from the workspace instead.
"""

from __future__ import annotations

import re

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.cli_facts import CliFacts
from cao_sidecar.providers import mcp_config
from cao_sidecar.providers.base import LaunchContext
from cao_sidecar.providers.patterns import AnswerRule, PatternProvider, compile_rules
from cao_sidecar.providers.screen import Dialog, string_list

S = AgentStatus


class CopilotProvider(PatternProvider):
    name = "copilot"
    cli = CliFacts(
        title="GitHub Copilot CLI",
        binary="copilot",
        install="npm install -g @github/copilot",
        login="run `copilot` in a terminal and use /login, or set GH_TOKEN",
    )
    command = ("copilot",)
    exit_command = "/exit"
    interrupt_key = "Escape"
    model_args = ("--model", "{model}")
    rules = compile_rules(
        [
            (
                S.WAITING_USER_ANSWER,
                r"Do you trust the files in this folder|\[y/n\]|^\s*❯ \d+\. |"
                r"Do you want to (?:run|allow|proceed)|↑↓ to (?:navigate|select)",
                12,
                "bottom",
                "waiting: a question with choices at the bottom",
            ),
            (
                S.WAITING_USER_ANSWER,
                r"Please use /login to sign in|You must be logged in",
                8,
                "bottom",
                "waiting: Copilot asks for /login (not signed in)",
            ),
            (S.PROCESSING, r"esc to cancel|Esc to cancel", 8, "bottom", "processing: 'esc to cancel' at the bottom"),
            (
                S.ERROR,
                r"^\s*(?:✗|✘|×)?\s*(?:Error|error):|Request failed|rate limit",
                0,
                "after_input",
                "error: an error line after the last input",
            ),
            (S.IDLE, r"^\s*❯(?: |$)|Type @ to mention files", 6, "bottom", "idle: the ❯ prompt near the bottom"),
        ]
    )
    input_pattern = re.compile(r"^\s*> \S")
    answer = AnswerRule(
        start=re.compile(r"^● (?!\w+\(.*\)$)"),
        end=re.compile(r"^\s*[─━]{10,}|^\s*❯|^● |^> "),
        strip=re.compile(r"^(?:● |  )"),
    )
    dialogs = (
        Dialog("folder trust", r"Do you trust the files in this folder", keys=("Enter",)),
        Dialog(
            "login",
            r"/login|Please log in|not logged in|Sign in with GitHub",
            fail="Copilot CLI is not logged in: run `copilot` in a terminal and use /login",
        ),
    )

    def _launch_args(self, ctx: LaunchContext) -> list[str]:
        args: list[str] = []
        servers = {srv.name: dict(mcp_config.claude_entry(srv), tools=["*"]) for srv in mcp_config.extra_servers(ctx.options)}
        if "CAO_MCP_URL" in ctx.env:
            servers[mcp_config.SERVER_NAME] = dict(
                mcp_config.http_server_entry(ctx.env["CAO_MCP_URL"], ctx.env["CAO_MCP_TOKEN"]), tools=["*"]
            )
        if servers:
            config = {"mcpServers": servers}
            path = mcp_config.write_private_json(ctx.agent_dir / "mcp-copilot.json", config)
            args += ["--additional-mcp-config", f"@{path}"]
        opts = ctx.options
        if opts.get("permission_mode") == "bypassPermissions" or opts.get("allow_all_tools"):
            args += ["--allow-all-tools"]
        allowed = string_list(opts.get("allowed_tools"))
        if mcp_config.team_tools_preapproved(ctx.env, opts):
            # Copilot names an MCP server's tool `server(tool)`.
            allowed += [f"{mcp_config.SERVER_NAME}({tool})" for tool in mcp_config.TEAM_TOOLS]
        for tool in allowed:
            args.append("--allow-tool=" + tool)
        for tool in string_list(opts.get("disallowed_tools")):
            args.append("--deny-tool=" + tool)
        return args
