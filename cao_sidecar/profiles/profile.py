"""One agent profile: Markdown with YAML frontmatter; the body is the agent's system prompt.

The format is documented in docs/profiles.md and described by
cao_sidecar/profiles/profile.schema.json. `check_profile` returns the profile (or None) and every
problem found, each with its line; `parse_profile` is the strict form that raises.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import attrs

from cao_sidecar.profiles.files import (
    CONTROL,
    NAME_PATTERN,
    NAME_RULE,
    Checker,
    Diagnostic,
    Frontmatter,
    FrontmatterError,
    checked_working_directory,
    show,
    split_frontmatter,
    suggest,
    yaml_type,
)

# Portable permission modes (Claude Code's names; other providers map or ignore them).
PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions")
ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
HEADER_NAME = re.compile(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}\Z")
KNOWN_FIELDS = (
    "name",
    "description",
    "provider",
    "model",
    "allowedTools",
    "disallowedTools",
    "mcpServers",
    "permissionMode",
    "askForTeamTools",
    "workingDirectory",
    "env",
    "tags",
    "worktree",
    "worktreeFiles",
    "pool",
    "host",
)
MAX_POOL = 16  # warm workers one profile may ask for (the global cap in settings limits them all)
ALIASES = {"tools": "allowedTools", "allowed_tools": "allowedTools", "mcp_servers": "mcpServers", "cwd": "workingDirectory"}
RESERVED_MCP_SERVER = "cao"
# CAO's profiles name no provider (CAO picks one when it launches): such a profile runs on this.
DEFAULT_PROVIDER = "claude_code"
# CAO's own MCP server, which CAO's profiles list: the sidecar serves the same tools itself.
CAO_MCP_SERVER = "cao-mcp-server"


class ProfileError(ValueError):
    """A profile file that cannot be used; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@attrs.define(frozen=True)
class McpServer:
    """An extra MCP server for one agent: stdio (`command`) or HTTP (`url`)."""

    name: str
    transport: str  # stdio | http | sse
    command: Optional[str] = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: Optional[str] = None
    headers: tuple[tuple[str, str], ...] = ()


@attrs.define
class Profile:
    name: str
    provider: str
    description: str = ""
    model: Optional[str] = None
    system_prompt: str = ""
    env: dict[str, str] = attrs.field(factory=dict)  # added to the agent's environment
    source: str = "builtin"  # the scope: builtin | user | workspace
    path: Optional[Path] = None
    extra: dict[str, Any] = attrs.field(factory=dict)  # unknown fields, as given
    allowed_tools: Optional[list[str]] = None  # None: the provider's default
    disallowed_tools: Optional[list[str]] = None
    mcp_servers: list[McpServer] = attrs.field(factory=list)
    permission_mode: Optional[str] = None
    # True: the CLI asks before our own MCP tools (handoff, assign, ...) like before any other tool.
    ask_for_team_tools: bool = False
    working_directory: Optional[str] = None  # absolute once loaded from a catalog
    tags: list[str] = attrs.field(factory=list)
    worktree: bool = False  # each agent gets its own git worktree and branch (core.worktree_manager)
    worktree_files: list[str] = attrs.field(factory=list)  # untracked files copied into it (.env, ...)
    pool: int = 0  # warm, idle, fresh workers the orchestrator keeps started (core.pool)
    host: Optional[str] = None  # hosts.yaml name its agents run on (issue 19); None: where asked

    @property
    def scope(self) -> str:
        return self.source


def known_providers(workspace: Path | None = None) -> list[str]:
    """The providers a profile may name: built-ins plus user-defined ones (in the workspace's
    .cao/providers/ and the user's config dir), as the orchestrator resolves them."""
    try:
        from cao_sidecar.providers import provider_names

        return list(provider_names(workspace))
    except Exception:  # noqa: BLE001 - a broken provider module must not break profiles
        return []


def check_profile(
    fm: Frontmatter,
    *,
    path: Path | None = None,
    source: str = "builtin",
    base_dir: Path | None = None,
    providers: list[str] | None = None,
) -> tuple[Optional[Profile], list[Diagnostic]]:
    c = Checker(fm)
    f = fm.fields
    name = c.name("name")
    if "provider" in f:
        provider = c.string("provider", required=True, max_len=64)
    else:
        provider = DEFAULT_PROVIDER
        c.warning(
            f"no 'provider' (as in CAO's profiles): it runs on {DEFAULT_PROVIDER}; add `provider: NAME` to choose",
            line=fm.where("name")[0],
        )
    if provider is not None:
        if not NAME_PATTERN.match(provider):
            c.error(f"'provider' must be {NAME_RULE}, got {show(provider)}", "provider")
            provider = None
        else:
            known = known_providers() if providers is None else providers
            if known and provider not in known:
                c.warning(
                    f"provider '{provider}' is not available in this sidecar{suggest(provider, known)} "
                    f"(available: {', '.join(known)}); starting this profile fails until it is",
                    "provider",
                )
    description = c.string("description", fold=True, max_len=1000) or ""
    model = _not_flag_like(c, "model", c.string("model", max_len=200))
    allowed = _not_flag_like(c, "allowedTools", c.string_list("allowedTools"))
    disallowed = _not_flag_like(c, "disallowedTools", c.string_list("disallowedTools"))
    mcp_servers = _mcp_servers(c, f.get("mcpServers"))
    permission_mode = c.string("permissionMode", max_len=64)
    if permission_mode is not None and permission_mode not in PERMISSION_MODES:
        c.warning(
            f"permissionMode {show(permission_mode)} is not one of {', '.join(PERMISSION_MODES)}"
            f"{suggest(permission_mode, PERMISSION_MODES)}; the provider may not support it",
            "permissionMode",
        )
    ask_for_team_tools = c.boolean("askForTeamTools", False)
    working_directory = _working_directory(c, base_dir)
    env = c.string_map(
        "env",
        f.get("env"),
        key_pattern=ENV_NAME,
        key_rule="letters, digits and '_', not starting with a digit",
        allow_newlines=True,
    )
    if env:
        for key in env:
            if key.startswith("CAO_"):
                c.error(f"'env': {key} is reserved for the sidecar (names starting with CAO_ cannot be set)", "env")
                env = None
                break
    tags = c.string_list("tags") or []
    worktree = c.boolean("worktree", False)
    worktree_files = _worktree_files(c)
    pool = _pool_size(c, worktree)
    host = _host(c)
    c.unknown_fields(
        KNOWN_FIELDS, ALIASES, passed_on="it is passed to the provider as a provider-specific option, if it has one by that name"
    )
    body = fm.body.strip()
    if not body:
        c.warning("the body (the agent's system prompt) is empty", line=fm.end_line)
    if c.failed or name is None or provider is None or env is None or worktree_files is None:
        return None, c.diagnostics
    return (
        Profile(
            name=name,
            provider=provider,
            description=description,
            model=model,
            system_prompt=body,
            env=env,
            source=source,
            path=path,
            extra={k: v for k, v in f.items() if k not in KNOWN_FIELDS},
            allowed_tools=allowed,
            disallowed_tools=disallowed,
            mcp_servers=mcp_servers or [],
            permission_mode=permission_mode,
            ask_for_team_tools=ask_for_team_tools,
            working_directory=working_directory,
            tags=tags,
            worktree=worktree,
            worktree_files=worktree_files,
            pool=pool,
            host=host,
        ),
        c.diagnostics,
    )


def _not_flag_like(c: Checker, key: str, value: Any) -> Any:
    """`value` unless it (or one of its items) begins with '-': these reach a CLI's command line,
    where such a value could be taken as a flag (`--yolo`, `-c ...`)."""
    for item in [value] if isinstance(value, str) else value or []:
        if item.startswith("-"):
            c.error(f"'{key}': {show(item)} begins with '-', which a CLI could take as a command-line flag", key)
            return None
    return value


def _host(c: Checker) -> Optional[str]:
    """`host:` a name of hosts.yaml (or main/local): where this profile's agents run."""
    import re

    host = c.string("host", max_len=32)
    if host is not None and not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", host):
        c.error(f"'host': {show(host)} is not a host name (lowercase letters, digits, '-'; see hosts.yaml)", "host")
        return None
    return host


def _worktree_files(c: Checker) -> Optional[list[str]]:
    """Paths relative to the repository's top, inside it: what a worktree gets copied in."""
    files = c.string_list("worktreeFiles", comma_string=False, max_items=100) or []
    for rel in files:
        parts = Path(rel).parts
        if not rel or rel.startswith(("/", "~")) or ".." in parts or ".git" in parts or CONTROL.search(rel):
            c.error(
                f"'worktreeFiles': {show(rel)} must be a path relative to the repository's top, inside it "
                "(no '/' or '~' at the start, no '..', no .git)",
                "worktreeFiles",
            )
            return None
    return files


def _pool_size(c: Checker, worktree: bool) -> int:
    """`pool: N`: a whole number from 0 to MAX_POOL; none for a worktree profile (each of its
    workers needs a branch made for its task, which a warm worker cannot have yet)."""
    value = c.fm.fields.get("pool")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_POOL:
        c.error(
            f"'pool' must be a whole number from 0 to {MAX_POOL}, got {show(value) if isinstance(value, str) else value!r}",
            "pool",
        )
        return 0
    if value and worktree:
        c.warning("'pool' is ignored for a profile with 'worktree: true' (a warm worker has no task branch yet)", "pool")
        return 0
    return value


def _working_directory(c: Checker, base_dir: Path | None) -> Optional[str]:
    return checked_working_directory(c, base_dir, "starting this profile fails")


def _mcp_servers(c: Checker, value: Any) -> Optional[list[McpServer]]:
    key = "mcpServers"
    if value is None:
        return []
    if not isinstance(value, dict):
        c.error(f"'{key}' must be a mapping of server names to settings, got {yaml_type(value)}", key)
        return None
    servers: list[McpServer] = []
    for name, spec in value.items():
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            c.error(f"'{key}': server name {show(name)} must be {NAME_RULE}", key)
            return None
        if name == CAO_MCP_SERVER:
            c.warning(f"'{key}.{name}' (CAO's MCP server) is left out: the sidecar gives every agent the same tools", key)
            continue
        if name == RESERVED_MCP_SERVER:
            c.error(f"'{key}': '{RESERVED_MCP_SERVER}' is the sidecar's own MCP server; choose another name", key)
            return None
        if not isinstance(spec, dict):
            c.error(f"'{key}.{name}' must be a mapping with 'command' or 'url', got {yaml_type(spec)}", key)
            return None
        unknown = set(spec) - {"type", "command", "args", "env", "url", "headers"}
        for extra in sorted(map(str, unknown)):
            c.warning(f"'{key}.{name}': unknown setting '{extra}' is ignored", key)
        command, url = spec.get("command"), spec.get("url")
        transport = spec.get("type", "stdio" if command is not None else "http")
        if transport not in ("stdio", "http", "sse"):
            c.error(f"'{key}.{name}.type' must be stdio, http or sse, got {show(transport)}", key)
            return None
        if (command is None) == (url is None):
            c.error(f"'{key}.{name}' needs exactly one of 'command' (stdio) or 'url' (http)", key)
            return None
        if command is not None:
            if not isinstance(command, str) or not command or CONTROL.search(command):
                c.error(f"'{key}.{name}.command' must be a one-line string", key)
                return None
            args = spec.get("args") or []
            if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in args):
                c.error(f"'{key}.{name}.args' must be a list of strings", key)
                return None
            args = [str(a) for a in args]
            if any("\x00" in a for a in args):
                c.error(f"'{key}.{name}.args' must not contain NUL characters", key)
                return None
            env = c.string_map(
                f"{key}.{name}.env",
                spec.get("env"),
                key_pattern=ENV_NAME,
                key_rule="an environment variable name",
                allow_newlines=True,
            )
            if env is None:
                return None
            servers.append(McpServer(name, "stdio", command=command, args=tuple(args), env=tuple(env.items())))
        else:
            if not isinstance(url, str) or CONTROL.search(url) or not re.match(r"^https?://[^\s/]+", url):
                c.error(f"'{key}.{name}.url' must be an http:// or https:// URL", key)
                return None
            headers = c.string_map(
                f"{key}.{name}.headers", spec.get("headers"), key_pattern=HEADER_NAME, key_rule="an HTTP header name"
            )
            if headers is None:
                return None
            servers.append(
                McpServer(name, transport if transport != "stdio" else "http", url=url, headers=tuple(headers.items()))
            )
    return servers


def parse_profile(text: str, *, path: Path | None = None, source: str = "builtin", base_dir: Path | None = None) -> Profile:
    """Strict form: the profile, or ProfileError naming the first error (with its line)."""
    try:
        fm = split_frontmatter(text)
    except FrontmatterError as exc:
        raise ProfileError(exc.message, line=exc.line) from None
    profile, diagnostics = check_profile(fm, path=path, source=source, base_dir=base_dir)
    if profile is None:
        first = next((d for d in diagnostics if d.severity == "error"), None)
        raise ProfileError(first.message if first else "invalid profile", line=first.line if first else None)
    return profile
