"""Profiles end to end: real files under a temporary workspace, the real sidecar process.

Discovery and shadowing (workspace folders, user config dir, built-ins), live reload with atomic
saves (edit -> cao/profilesChanged and cao/listProfiles), diagnostics that appear and clear,
hostile names and YAML, the last good version staying in force, cao/installProfile and the
`cao-sidecar profiles` command line. One sidecar for the whole module.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types

from test_profiles_common import (
    atomic_write,
    by_name,
    cli,
    live_sidecar,
    profile_text,
    request,
    rpc_error,
    start,
    stop,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONFIG, SIDECAR = live_sidecar("profiles")
WS = SIDECAR.workspace
SECOND = SIDECAR.base / "second"  # a second workspace folder
WS_AGENTS = WS / ".cao" / "agents"
SECOND_AGENTS = SECOND / ".cao" / "agents"
USER_AGENTS = SIDECAR.config_dir / "agents"  # does not exist when the sidecar starts
BUILTINS = {"supervisor", "developer", "reviewer", "tester", "architect", "security", "performance"}
LATENCIES: list[float] = []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    # Written before the sidecar starts: the same names in several layers.
    WS_AGENTS.mkdir(parents=True)
    SECOND_AGENTS.mkdir(parents=True)
    (WS_AGENTS / "reviewer.md").write_text(profile_text("reviewer", description="Workspace reviewer."))
    (WS_AGENTS / "shared.md").write_text(profile_text("shared", description="From the first folder."))
    (SECOND_AGENTS / "shared.md").write_text(profile_text("shared", description="From the second folder."))
    (SECOND_AGENTS / "only_second.md").write_text(profile_text("only_second"))
    lsp = await start(CONFIG, SIDECAR, folders=[WS, SECOND])
    yield lsp
    await stop(lsp, SIDECAR)
    if LATENCIES:
        print(
            f"\nprofile reload latency (save -> cao/profilesChanged): n={len(LATENCIES)} "
            f"median={statistics.median(LATENCIES) * 1000:.1f} ms max={max(LATENCIES) * 1000:.1f} ms "
            f"all={[round(x * 1000, 1) for x in LATENCIES]}"
        )


async def profiles(client) -> dict[str, dict]:
    return by_name((await request(client, "cao/listProfiles", {}))["profiles"])


async def saved(path: Path, text: str, predicate, *, client=None) -> dict:
    """Save `path` atomically; wait for the cao/profilesChanged that satisfies `predicate`."""
    mark = SIDECAR.mark("cao/profilesChanged")
    moment = atomic_write(path, text)
    note, arrived = await SIDECAR.next("cao/profilesChanged", lambda n: predicate(by_name(n["profiles"])), since=mark)
    LATENCIES.append(arrived - moment)
    return by_name(note["profiles"])


# ---- discovery and shadowing -----------------------------------------------------------------


async def test_builtin_profiles_are_listed_with_their_files(client):
    listed = await profiles(client)
    assert BUILTINS | {"mock_developer", "mock_supervisor"} <= set(listed)
    for name in BUILTINS - {"reviewer"}:
        info = listed[name]
        assert info["scope"] == "builtin" and info["source"] == "builtin"
        assert info["provider"] == "claude_code" and info["description"]
        assert Path(info["path"]).name == f"{name}.md" and Path(info["path"]).is_file()
        assert info["shadows"] == [] and info["stale"] is False
    prompt = Path(listed["supervisor"]["path"]).read_text()
    for tool in ("handoff", "assign", "send_message", "list_sessions"):
        assert f"`{tool}(" in prompt, tool
    # Problems of built-ins (claude_code not registered yet) are not the user's to fix: no diagnostics.
    assert not [n for n in SIDECAR.notifications["textDocument/publishDiagnostics"] if "agent_profiles" in n["uri"]]


async def test_workspace_shadows_user_shadows_builtin_in_order(client):
    USER_AGENTS.mkdir(parents=True, exist_ok=True)
    listed = await saved(
        USER_AGENTS / "reviewer.md",
        profile_text("reviewer", description="User reviewer."),
        lambda p: len(p.get("reviewer", {}).get("shadows", [])) == 2,
    )
    reviewer = listed["reviewer"]
    assert reviewer["scope"] == "workspace" and reviewer["description"] == "Workspace reviewer."
    assert reviewer["source"] == str(WS_AGENTS / "reviewer.md")
    assert reviewer["shadows"][0] == str(USER_AGENTS / "reviewer.md")
    assert Path(reviewer["shadows"][1]).parent.name == "agent_profiles"
    # Remove the workspace one: the user's takes over, and still shadows the built-in.
    mark = SIDECAR.mark("cao/profilesChanged")
    (WS_AGENTS / "reviewer.md").unlink()
    note, _ = await SIDECAR.next(
        "cao/profilesChanged", lambda n: by_name(n["profiles"])["reviewer"]["scope"] == "user", since=mark
    )
    reviewer = by_name(note["profiles"])["reviewer"]
    assert reviewer["description"] == "User reviewer." and len(reviewer["shadows"]) == 1
    assert (await profiles(client))["reviewer"]["scope"] == "user"


async def test_first_workspace_folder_shadows_the_second(client):
    listed = await profiles(client)
    assert listed["shared"]["description"] == "From the first folder."
    assert listed["shared"]["shadows"] == [str(SECOND_AGENTS / "shared.md")]
    assert listed["only_second"]["scope"] == "workspace"


async def test_workspace_folder_added_later_is_watched(client):
    third = SIDECAR.base / "third"
    (third / ".cao" / "agents").mkdir(parents=True)
    (third / ".cao" / "agents" / "t.md").write_text(profile_text("from_third"))
    mark = SIDECAR.mark("cao/profilesChanged")
    client.workspace_did_change_workspace_folders(
        types.DidChangeWorkspaceFoldersParams(
            event=types.WorkspaceFoldersChangeEvent(
                added=[types.WorkspaceFolder(uri=third.as_uri(), name="third")],
                removed=[types.WorkspaceFolder(uri=SECOND.as_uri(), name="second")],
            )
        )
    )
    note, _ = await SIDECAR.next("cao/profilesChanged", lambda n: "from_third" in by_name(n["profiles"]), since=mark)
    assert "only_second" not in by_name(note["profiles"])
    # And it is live: an edit there is seen.
    listed = await saved(
        third / ".cao" / "agents" / "t.md",
        profile_text("from_third", description="edited"),
        lambda p: p.get("from_third", {}).get("description") == "edited",
    )
    assert listed["from_third"]["scope"] == "workspace"


# ---- live reload -----------------------------------------------------------------------------


async def test_add_edit_rename_delete_are_live(client):
    path = WS_AGENTS / "live.md"
    listed = await saved(path, profile_text("live_one", description="v1"), lambda p: "live_one" in p)
    assert listed["live_one"]["path"] == str(path)
    assert (await profiles(client))["live_one"]["description"] == "v1"  # listProfiles agrees at once

    for version in range(2, 7):
        listed = await saved(
            path,
            profile_text("live_one", description=f"v{version}"),
            lambda p, v=version: p.get("live_one", {}).get("description") == f"v{v}",
        )
    assert (await profiles(client))["live_one"]["description"] == "v6"

    # Rename the file: same profile, new path.
    mark = SIDECAR.mark("cao/profilesChanged")
    moved = WS_AGENTS / "renamed.md"
    moment = time.monotonic()
    os.rename(path, moved)
    note, arrived = await SIDECAR.next(
        "cao/profilesChanged", lambda n: by_name(n["profiles"]).get("live_one", {}).get("path") == str(moved), since=mark
    )
    LATENCIES.append(arrived - moment)

    # Rename the profile inside the file.
    listed = await saved(moved, profile_text("live_two"), lambda p: "live_two" in p and "live_one" not in p)

    # Delete it.
    mark = SIDECAR.mark("cao/profilesChanged")
    moment = time.monotonic()
    moved.unlink()
    note, arrived = await SIDECAR.next("cao/profilesChanged", lambda n: "live_two" not in by_name(n["profiles"]), since=mark)
    LATENCIES.append(arrived - moment)
    assert "live_two" not in await profiles(client)


async def test_reload_latency_is_under_100_ms(client):
    path = WS_AGENTS / "latency.md"
    start_count = len(LATENCIES)
    for version in range(10):
        await saved(
            path,
            profile_text("latency", description=f"l{version}"),
            lambda p, v=version: p.get("latency", {}).get("description") == f"l{v}",
        )
    mine = LATENCIES[start_count:]
    assert statistics.median(mine) < 0.1, [round(x * 1000, 1) for x in mine]
    assert max(mine) < 1.0, [round(x * 1000, 1) for x in mine]
    path.unlink()


async def test_user_dir_created_while_running_is_picked_up(client):
    # USER_AGENTS was created by an earlier test; a brand-new nested dir is the harder case.
    nested_config = SIDECAR.config_dir / "agents"
    assert nested_config.is_dir()
    listed = await saved(nested_config / "late.md", profile_text("late_user"), lambda p: "late_user" in p)
    assert listed["late_user"]["scope"] == "user"


async def test_temp_files_and_other_names_are_ignored(client):
    mark = SIDECAR.mark("cao/profilesChanged")
    for name in (".hidden.md", "#autosave.md#", "notes.txt", "backup.md~", ".live.md.swp"):
        (WS_AGENTS / name).write_text(profile_text("should_not_load"))
    atomic_write(WS_AGENTS / "marker.md", profile_text("marker"))
    await SIDECAR.next("cao/profilesChanged", lambda n: "marker" in by_name(n["profiles"]), since=mark)
    assert "should_not_load" not in await profiles(client)


# ---- diagnostics -----------------------------------------------------------------------------


async def test_diagnostics_appear_and_clear_and_the_last_good_version_stays(client):
    path = WS_AGENTS / "keeper.md"
    await saved(path, profile_text("keeper", description="good"), lambda p: "keeper" in p)
    assert SIDECAR.diagnostics_for(path) in (None, [])

    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    atomic_write(path, "---\nname: keeper\ndescription: [unclosed\nprovider: mock\n---\nbody\n")
    diagnostics = await SIDECAR.diagnostics_after(path, mark, lambda d: bool(d))
    error = next(d for d in diagnostics if d["severity"] == 1)
    assert error["line"] in (3, 4) and "YAML" in error["message"] and error["source"] == "cao-sidecar"
    assert any("last good version" in d["message"] for d in diagnostics)
    listed = await profiles(client)
    assert listed["keeper"]["stale"] is True and listed["keeper"]["description"] == "good"

    # The last good version still works.
    result = await request(client, "cao/handoff", {"profile": "keeper", "message": "echo still works"}, timeout=60)
    assert result["output"] == "still works"

    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    atomic_write(path, profile_text("keeper", description="fixed"))
    assert await SIDECAR.diagnostics_after(path, mark) == []
    listed = await profiles(client)
    assert listed["keeper"]["stale"] is False and listed["keeper"]["description"] == "fixed"

    # Deleting a broken file clears its diagnostics too.
    atomic_write(path, "no frontmatter at all\n")
    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    await SIDECAR.diagnostics_after(path, mark - 1 if mark else 0, lambda d: bool(d))
    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    path.unlink()
    assert await SIDECAR.diagnostics_after(path, mark) == []
    assert "keeper" not in await profiles(client)


# Each case: file text, expected severity (1 error, 2 warning), expected line, a word of the message,
# whether the profile is still listed.
CASES = {
    "missing_name": ("---\ndescription: x\nprovider: mock\n---\nb\n", 1, None, "name", False),
    "bad_name": ("---\nname: two words\nprovider: mock\n---\nb\n", 1, 2, "letters", False),
    "traversal_name": ("---\nname: ../etc/passwd\nprovider: mock\n---\nb\n", 1, 2, "letters", False),
    "newline_name": ('---\nname: "evil\\nname"\nprovider: mock\n---\nb\n', 1, 2, "letters", False),
    "trailing_newline_name": ('---\nname: "trailing\\n"\nprovider: mock\n---\nb\n', 1, 2, "letters", False),
    "control_description": ('---\nname: ctl_desc\ndescription: "bell\\a"\nprovider: mock\n---\nb\n', 1, 3, "control", False),
    "wrong_type": ("---\nname: wrong_type\nprovider: mock\ntags: 5\n---\nb\n", 1, 4, "list", False),
    "provider_list": ("---\nname: prov_list\nprovider: [mock]\n---\nb\n", 1, 3, "string", False),
    "unknown_provider": ("---\nname: unknown_prov\nprovider: claude_cod\n---\nb\n", 2, 3, "not available", True),
    "unknown_field": ("---\nname: unknown_field\nprovider: mock\ncolour: red\n---\nb\n", 2, 4, "colour", True),
    "reserved_env": ("---\nname: reserved_env\nprovider: mock\nenv:\n  CAO_TERMINAL_ID: x\n---\nb\n", 1, 4, "reserved", False),
    "mcp_cao": ("---\nname: mcp_cao\nprovider: mock\nmcpServers:\n  cao: {url: http://x}\n---\nb\n", 1, 4, "own MCP", False),
    "anchors_bomb": (
        "---\nname: bomb\nprovider: mock\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n---\nb\n",
        1,
        4,
        "anchors",
        False,
    ),
    "python_tag": (
        "---\nname: !!python/object/apply:os.system ['touch {marker}']\nprovider: mock\n---\nb\n",
        1,
        2,
        "not allowed",
        False,
    ),
    "deep_nesting": ("---\nname: deep\nprovider: mock\nx: " + "[" * 40 + "]" * 40 + "\n---\nb\n", 1, 4, "nested", False),
    "no_frontmatter": ("just text\n", 1, 1, "frontmatter", False),
    "not_closed": ("---\nname: open\nprovider: mock\n", 1, 1, "closed", False),
    "duplicate_key": ("---\nname: dup\nprovider: mock\nname: dup2\n---\nb\n", 1, 4, "twice", False),
    "list_frontmatter": ("---\n- a\n- b\n---\nb\n", 1, 2, "fields", False),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_each_problem_is_reported_on_its_line(client, case):
    text, severity, line, word, listed_after = CASES[case]
    marker = SIDECAR.base / f"pwned-{case}"
    text = text.replace("{marker}", str(marker))
    path = WS_AGENTS / f"case_{case}.md"
    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    atomic_write(path, text)
    diagnostics = await SIDECAR.diagnostics_after(path, mark, lambda d: bool(d))
    first = diagnostics[0]
    assert first["severity"] == severity, diagnostics
    assert word.lower() in first["message"].lower(), diagnostics
    if line is not None:
        assert first["line"] == line, diagnostics
    assert not marker.exists()
    names = await profiles(client)  # the sidecar is alive and answering
    declared = {"unknown_provider": "unknown_prov", "unknown_field": "unknown_field"}.get(case)
    if listed_after:
        assert declared in names
    else:
        assert not any(info["path"] == str(path) for info in names.values())
    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    path.unlink()
    assert await SIDECAR.diagnostics_after(path, mark) == []


async def test_files_that_are_refused_before_parsing(client):
    outside = SIDECAR.base / "outside.md"
    outside.write_text(profile_text("outside"))
    cases = {
        WS_AGENTS / "link.md": ("outside", lambda p: p.symlink_to(outside)),
        WS_AGENTS / "fifo.md": ("regular file", lambda p: os.mkfifo(p)),
        WS_AGENTS / "big.md": ("larger", lambda p: p.write_text(profile_text("big", body="x" * 300_000))),
        WS_AGENTS / "latin1.md": (
            "UTF-8",
            lambda p: p.write_bytes(profile_text("latin", description="caf\xe9").encode("latin-1")),
        ),
        WS_AGENTS / "evil\nname.md": ("control characters", lambda p: p.write_text(profile_text("evil_file"))),
    }
    for path, (word, make) in cases.items():
        mark = SIDECAR.mark("textDocument/publishDiagnostics")
        make(path)
        diagnostics = await SIDECAR.diagnostics_after(path, mark, lambda d: bool(d))
        assert diagnostics[0]["severity"] == 1 and word in diagnostics[0]["message"], (path, diagnostics)
    listed = await profiles(client)
    assert not {"outside", "big", "latin", "evil_file"} & set(listed)
    for path in cases:
        path.unlink()


async def test_duplicate_name_in_one_directory_is_an_error_on_the_later_file(client):
    first, second = WS_AGENTS / "dup_a.md", WS_AGENTS / "dup_b.md"
    await saved(first, profile_text("twin", description="first"), lambda p: "twin" in p)
    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    atomic_write(second, profile_text("twin", description="second"))
    diagnostics = await SIDECAR.diagnostics_after(second, mark, lambda d: bool(d))
    assert "already defined in dup_a.md" in diagnostics[0]["message"]
    assert (await profiles(client))["twin"]["description"] == "first"
    mark = SIDECAR.mark("textDocument/publishDiagnostics")
    second.unlink()
    assert await SIDECAR.diagnostics_after(second, mark) == []
    first.unlink()


async def test_full_profile_format_loads(client):
    (SIDECAR.base / "wd").mkdir(exist_ok=True)
    text = (
        "---\nname: full\ndescription: >\n  A folded\n  description.\nprovider: mock\nmodel: sonnet\n"
        "allowedTools: [Read, Grep, 'Bash(git diff:*)']\ndisallowedTools: WebFetch, WebSearch\n"
        "mcpServers:\n  docs:\n    command: npx\n    args: [-y, docs-server]\n    env: {TOKEN: abc}\n"
        "  web:\n    url: https://mcp.example.com/mcp\n    headers: {X-Key: k}\n"
        "permissionMode: plan\nworkingDirectory: ../wd\nenv:\n  DEBUG: 1\n  FLAG: true\ntags: [a, b]\n---\nPrompt.\n"
    )
    listed = await saved(WS_AGENTS / "full.md", text, lambda p: "full" in p)
    info = listed["full"]
    assert info["description"] == "A folded description." and info["model"] == "sonnet" and info["tags"] == ["a", "b"]
    assert SIDECAR.diagnostics_for(WS_AGENTS / "full.md") in (None, [])
    # workingDirectory (relative to the workspace folder) is where the agent starts.
    agent = await request(client, "cao/spawn", {"profile": "full"}, timeout=60)
    agents = {a["terminalId"]: a for a in (await request(client, "cao/listAgents", {}))["agents"]}
    assert agents[agent["terminalId"]]["workingDirectory"] == str(SIDECAR.base / "wd")
    await request(client, "cao/terminate", {"terminalId": agent["terminalId"]})
    (WS_AGENTS / "full.md").unlink()


# ---- install ---------------------------------------------------------------------------------


async def test_install_profile_from_a_file_and_by_name(client):
    source = SIDECAR.base / "to_install.md"
    text = profile_text("installed_one", description="Installed.", extra="colour: red\n")
    source.write_text(text)
    result = await request(client, "cao/installProfile", {"profile": str(source)})
    target = USER_AGENTS / "installed_one.md"
    assert result["name"] == "installed_one" and result["path"] == str(target) and result["replaced"] is False
    assert len(result["warnings"]) == 1 and result["warnings"][0].startswith("line 5: unknown field 'colour'")
    assert target.read_text() == text  # byte for byte
    assert (await profiles(client))["installed_one"]["scope"] == "user"  # visible when answered

    error = await rpc_error(client, "cao/installProfile", {"profile": str(source)})
    assert error.code == -32602 and "already installed" in error.message
    result = await request(client, "cao/installProfile", {"profile": str(source), "overwrite": True})
    assert result["replaced"] is True

    result = await request(client, "cao/installProfile", {"profile": "architect"})
    assert Path(result["path"]) == USER_AGENTS / "architect.md"
    listed = await profiles(client)
    assert listed["architect"]["scope"] == "user" and len(listed["architect"]["shadows"]) == 1


async def test_install_refuses_bad_input(client):
    bad = SIDECAR.base / "bad_install.md"
    bad.write_text("---\nname: bad install\nprovider: mock\n---\nb\n")
    cases = [
        ({"profile": str(bad)}, -32602, "line 2"),
        ({"profile": "../x"}, -32602, "no such file"),
        ({"profile": "../../../../etc/passwd"}, -32602, "not a valid profile"),
        ({"profile": "evil\nname"}, -32602, "control characters"),
        ({"profile": "no_such_profile"}, -31001, "unknown profile"),
        ({"profile": str(SIDECAR.base)}, -32602, "regular file"),
        ({"profile": 5}, -32602, "'profile'"),
        ({}, -32602, "'profile'"),
    ]
    for params, code, word in cases:
        error = await rpc_error(client, "cao/installProfile", params)
        assert error.code == code and word in error.message, (params, error.code, error.message)
    assert not (USER_AGENTS / "x.md").exists() and not (USER_AGENTS / "passwd.md").exists()
    assert sorted(p.name for p in USER_AGENTS.iterdir() if p.name.startswith(".")) == []  # no temp files left


# ---- command line ----------------------------------------------------------------------------


async def test_command_line_profiles_verbs(client):
    out = cli(SIDECAR, "profiles", "list", "--json")
    assert out.returncode == 0, out.stderr
    listed = by_name(json.loads(out.stdout))
    assert listed["shared"]["scope"] == "workspace" and listed["architect"]["scope"] == "user"

    out = cli(SIDECAR, "profiles", "show", "supervisor")
    assert out.returncode == 0 and "send_message" in out.stdout and "file:" in out.stdout

    for hostile in ("../x", "a\nb", "a\x1bb", "", "supervisor\n"):
        out = cli(SIDECAR, "profiles", "show", hostile)
        assert out.returncode == 2 and "not valid" in out.stderr, (hostile, out.stderr)
        assert "\x1b" not in out.stderr

    bad = WS_AGENTS / "cli_bad.md"
    bad.write_text("---\nname: cli_bad\nprovider: mock\ntags: 5\n---\nb\n")
    out = cli(SIDECAR, "profiles", "check")
    assert out.returncode == 1 and f"{bad}:4:1: error: 'tags' must be a list" in out.stderr, out.stderr
    out = cli(SIDECAR, "profiles", "check", str(bad))
    assert out.returncode == 1
    bad.unlink()

    source = SIDECAR.base / "cli_install.md"
    source.write_text(profile_text("cli_installed"))
    out = cli(SIDECAR, "profiles", "install", str(source))
    assert out.returncode == 0 and "installed profile 'cli_installed'" in out.stdout
    out = cli(SIDECAR, "profiles", "install", str(source))
    assert out.returncode == 1 and "--force" in out.stderr
    out = cli(SIDECAR, "profiles", "install", "--force", str(source))
    assert out.returncode == 0 and "replaced" in out.stdout
    # The running sidecar saw the CLI's install.
    mark = SIDECAR.mark("cao/profilesChanged")
    await SIDECAR.next("cao/profilesChanged", lambda n: "cli_installed" in by_name(n["profiles"]), since=0)
    assert "cli_installed" in await profiles(client)
    del mark
