"""A git worktree per worker, end to end: real git, real tmux, the real sidecar (cao_client),
mock agents that edit files (`edit PATH TEXT`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from cao_client import CaoClient, CaoError
from conftest import isolated_env, kill_tmux

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ana", "GIT_AUTHOR_EMAIL": "ana@example.com",
    "GIT_COMMITTER_NAME": "Ana", "GIT_COMMITTER_EMAIL": "ana@example.com",
}  # fmt: skip


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    ).stdout


def make_repo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    git(folder, "init", "--quiet", "--initial-branch=main")
    (folder / "shared.txt").write_text("original\n")
    (folder / "README").write_text("shop\n")
    git(folder, "add", ".")
    git(folder, "commit", "--quiet", "-m", "start")
    return folder


async def wait_until(predicate, timeout: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)
    return value


@pytest.fixture
def env(tmp_base):
    env = isolated_env(tmp_base)
    yield env
    kill_tmux(env["CAO_TMUX_SOCKET"])


async def start(env: dict[str, str], workspace: Path, notes: list | None = None) -> CaoClient:
    return await CaoClient.start(
        workspace=workspace, env=env,
        on_notification=(lambda m, p: notes.append((m, p))) if notes is not None else None,
    )  # fmt: skip


async def test_three_parallel_workers_edit_the_same_file_apart_then_merge_and_conflict(env, tmp_base):
    repo = make_repo(tmp_base / "workspace" / "shop")
    notes: list = []
    cao = await start(env, repo, notes)
    try:
        tasks = [
            cao.handoff(f"edit shared.txt version {i}", profile="mock_developer", worktree=True, working_directory=str(repo))
            for i in range(3)
        ]
        results = await asyncio.gather(*tasks)
        paths = {r["worktree"]["path"] for r in results}
        assert len(paths) == 3 and all(not p.startswith(str(repo)) for p in paths)
        for i, result in enumerate(results):
            tree = result["worktree"]
            # Each saw only its own edit, on its own branch, from main.
            assert Path(tree["path"], "shared.txt").read_text() == f"version {i}\n"
            assert tree["base"] == "main" and tree["branch"].startswith("cao/mock_developer-")
            assert tree["committedLeftovers"] is True  # the mock agent never commits itself
            assert tree["files"] == ["shared.txt"] and len(tree["commits"]) == 1
            assert "shared.txt" in tree["diffStat"]
            assert git(repo, "show", f"{tree['branch']}:shared.txt") == f"version {i}\n"
        assert (repo / "shared.txt").read_text() == "original\n"  # the user's tree untouched

        listed = (await cao.request("cao/listWorktrees", {}))["worktrees"]
        assert {w["terminalId"] for w in listed} == {r["terminalId"] for r in results}
        assert all(w["state"] == "kept" and w["agentStatus"] is None for w in listed)  # handoff workers ended

        first, second, third = results
        merged = await cao.request("cao/mergeWorktree", {"terminalId": first["terminalId"]})
        assert merged["merged"] is True and merged["worktree"]["state"] == "merged"
        assert (repo / "shared.txt").read_text() == "version 0\n"
        assert not Path(first["worktree"]["path"]).exists()

        head_before = git(repo, "rev-parse", "HEAD")
        conflict = await cao.request("cao/mergeWorktree", {"terminalId": second["terminalId"]})
        assert conflict["merged"] is False and conflict["conflicts"] == ["shared.txt"]
        # Nothing lost: the base and its tree as they were, the worker's branch and worktree kept.
        assert git(repo, "rev-parse", "HEAD") == head_before
        assert git(repo, "status", "--porcelain") == ""
        assert (repo / "shared.txt").read_text() == "version 0\n"
        assert git(repo, "show", f"{second['worktree']['branch']}:shared.txt") == "version 1\n"
        assert Path(second["worktree"]["path"], "shared.txt").read_text() == "version 1\n"
        left = {w["terminalId"] for w in (await cao.request("cao/listWorktrees", {}))["worktrees"]}
        assert left == {second["terminalId"], third["terminalId"]}

        # Rebase conflicts too, and is undone.
        rebased = await cao.request("cao/mergeWorktree", {"terminalId": second["terminalId"], "strategy": "rebase"})
        assert rebased["merged"] is False and rebased["conflicts"] == ["shared.txt"]
        assert git(repo, "show", f"{second['worktree']['branch']}:shared.txt") == "version 1\n"

        discarded = await cao.request("cao/discardWorktree", {"terminalId": third["terminalId"]})
        assert discarded["worktree"]["state"] == "discarded"
        assert not Path(third["worktree"]["path"]).exists()
        assert third["worktree"]["branch"] not in git(repo, "branch", "--list")
    finally:
        await cao.close()


async def test_assign_reports_where_the_work_is_and_a_lead_agent_merges_it(env, tmp_base):
    repo = make_repo(tmp_base / "workspace" / "shop")
    (repo / ".env").write_text("TOKEN=1\n")
    (repo / ".gitignore").write_text("")
    profiles = tmp_base / "config" / "cao-sidecar" / "agents"
    profiles.mkdir(parents=True)
    (profiles / "wt_dev.md").write_text(
        "---\nname: wt_dev\ndescription: d\nprovider: mock\nworktree: true\nworktreeFiles: [.env, missing.cfg]\n---\nDev.\n"
    )
    notes: list = []
    cao = await start(env, repo, notes)
    try:
        worker = (await cao.assign("wt_dev", "edit feature.txt new feature", working_directory=str(repo)))["terminalId"]
        done = await wait_until(
            lambda: next((p for m, p in notes if m == "cao/workerCompleted" and p["terminalId"] == worker), None)
        )
        tree = done["worktree"]
        assert done["error"] is None and tree["branch"] == f"cao/wt_dev-{worker}"
        assert tree["files"] == ["feature.txt"] and tree["committedLeftovers"] is True
        assert tree["copiedFiles"] == [".env"] and any("missing.cfg" in n for n in tree["notes"])
        assert Path(tree["path"], ".env").read_text() == "TOKEN=1\n"
        assert ".env" not in git(repo, "show", "--stat", tree["branch"])  # copied, never committed

        # The caller's choice wins over the profile's.
        plain = await cao.handoff("echo hi", profile="wt_dev", worktree=False, working_directory=str(repo))
        assert plain["worktree"] is None
        # A worker that changed nothing leaves no worktree behind once it is gone.
        idle = await cao.handoff("echo nothing to do", profile="wt_dev", working_directory=str(repo))
        assert idle["worktree"]["files"] == [] and idle["worktree"]["commits"] == []

        async def listed_ids():
            return {w["terminalId"] for w in (await cao.request("cao/listWorktrees", {}))["worktrees"]}

        deadline = asyncio.get_running_loop().time() + 20
        while idle["terminalId"] in await listed_ids():
            assert asyncio.get_running_loop().time() < deadline, "the empty worktree was not removed"
            await asyncio.sleep(0.2)
        assert not Path(idle["worktree"]["path"]).exists()
        assert worker in await listed_ids()  # the one with work stays

        # A lead agent asks for the merge through its MCP tool (the mock agent calls it).
        lead = (await cao.spawn("mock_supervisor", working_directory=str(repo)))["terminalId"]
        answer = await cao.handoff(f"merge_work {worker}", terminal_id=lead)
        assert "merged" in answer["output"], answer["output"]
        assert (repo / "feature.txt").read_text() == "new feature\n"
    finally:
        await cao.close()


async def test_worker_killed_mid_task_keeps_its_worktree_after_a_restart(env, tmp_base):
    repo = make_repo(tmp_base / "workspace" / "shop")
    notes: list = []
    first = await start(env, repo, notes)
    worker = await first.spawn("mock_developer", worktree=True, working_directory=str(repo), name="dev1")
    tid = worker["terminalId"]
    assert worker["worktree"]["branch"] == "cao/mock_developer-dev1"
    path = Path(worker["worktree"]["path"])
    running = asyncio.ensure_future(first.handoff("edit-then-sleep 60 half.txt half done", terminal_id=tid))
    await wait_until(lambda: (path / "half.txt").exists())
    # The worker dies mid-task, then the sidecar dies too.
    pane_pid = subprocess.run(
        ["tmux", "-L", env["CAO_TMUX_SOCKET"], "list-panes", "-a", "-F", "#{pane_pid} #{window_name}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    pid = next(int(line.split()[0]) for line in pane_pid.splitlines() if "dev1" in line)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(CaoError):
        await running
    os.kill(first._process.pid, signal.SIGKILL)
    await first._process.wait()

    second = await start(env, repo)
    try:
        listed = (await second.request("cao/listWorktrees", {}))["worktrees"]
        assert [w["terminalId"] for w in listed] == [tid]
        kept = listed[0]
        assert kept["state"] == "kept" and kept["dirty"] is True and kept["branch"] == "cao/mock_developer-dev1"
        assert (path / "half.txt").read_text() == "half done\n"
        # The same name cannot take the branch while that work is open.
        taken = await second.spawn("mock_developer", worktree=True, working_directory=str(repo), name="dev1")
        pytest.fail(f"expected branchTaken, got {taken}")
    except CaoError as exc:
        assert exc.code == -31012 and exc.data["reason"] == "branchTaken", exc
        merged = await second.request("cao/mergeWorktree", {"terminalId": tid})
        assert merged["merged"] and merged["worktree"]["committedLeftovers"] is True
        assert (repo / "half.txt").read_text() == "half done\n"
    finally:
        await second.close()


async def test_clear_errors(env, tmp_base):
    repo = make_repo(tmp_base / "workspace" / "shop")
    plain = tmp_base / "workspace" / "plain"
    plain.mkdir()
    cao = await start(env, repo)
    try:

        async def error_of(coro):
            with pytest.raises(CaoError) as info:
                await coro
            return info.value

        not_repo = await error_of(cao.spawn("mock_developer", worktree=True, working_directory=str(plain)))
        assert not_repo.code == -31012 and not_repo.data["reason"] == "notGitRepo"
        unknown = await error_of(cao.spawn("mock_developer", worktree=True, base_ref="no-such", working_directory=str(repo)))
        assert unknown.data["reason"] == "unknownBaseRef" and "no-such" in unknown.message
        no_worktree = await error_of(cao.spawn("mock_developer", base_ref="main", working_directory=str(repo)))
        assert no_worktree.code == -32602
        assert not (await cao.request("cao/listWorktrees", {}))["worktrees"]  # failed spawns left none

        # A base ref: the branch starts there.
        git(repo, "branch", "old")
        (repo / "README").write_text("newer\n")
        git(repo, "commit", "--quiet", "-am", "newer")
        done = await cao.handoff(
            "edit x.txt x", profile="mock_developer", worktree=True, base_ref="old", working_directory=str(repo)
        )
        assert done["worktree"]["base"] == "old" and Path(done["worktree"]["path"], "README").read_text() == "shop\n"

        # A dirty base refuses the merge and changes nothing.
        work = await cao.handoff("edit y.txt y", profile="mock_developer", worktree=True, working_directory=str(repo))
        (repo / "README").write_text("uncommitted\n")
        dirty = await error_of(cao.request("cao/mergeWorktree", {"terminalId": work["terminalId"]}))
        assert dirty.data["reason"] == "dirtyBase" and "README" in dirty.message
        assert (repo / "README").read_text() == "uncommitted\n" and not (repo / "y.txt").exists()
        gone = await error_of(cao.request("cao/mergeWorktree", {"terminalId": "00000000"}))
        assert gone.data["reason"] == "noWorktree"
    finally:
        await cao.close()


async def test_git_missing_is_a_clear_error(env, tmp_base):
    repo = make_repo(tmp_base / "workspace" / "shop")
    bin_dir = tmp_base / "bin"
    bin_dir.mkdir()
    for tool in ("tmux", "python3", "env", "sh"):
        found = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    cao = await start({**env, "PATH": str(bin_dir)}, repo)
    try:
        with pytest.raises(CaoError) as info:
            await cao.spawn("mock_developer", worktree=True, working_directory=str(repo))
        assert info.value.data["reason"] == "gitMissing"
    finally:
        await cao.close()


def test_untracked_files_are_copied_only_from_inside_the_repository(tmp_path):
    from cao_sidecar.core.worktrees import copy_untracked

    repo = make_repo(tmp_path / "repo")
    outside = tmp_path / "secret"
    outside.write_text("do not copy\n")
    (repo / ".env").write_text("A=1\n")
    (repo / "link.env").symlink_to(outside)
    (repo / "conf").symlink_to(tmp_path)
    (repo / "dir").mkdir()
    target = tmp_path / "wt"
    target.mkdir()
    copied, notes = copy_untracked(
        str(repo), target, [".env", "link.env", "conf/secret", "../secret", "/etc/passwd", "dir", "none"]
    )
    assert copied == [".env"] and (target / ".env").read_text() == "A=1\n"
    assert len(notes) == 6 and not (target / "link.env").exists() and not (target / "conf").exists()
    assert any("symlink" in n for n in notes)


def test_profile_and_flow_fields_and_the_trust_rules(tmp_path):
    from cao_sidecar.flows.flow import check_flow
    from cao_sidecar.profiles.files import split_frontmatter
    from cao_sidecar.profiles.profile import ProfileError, parse_profile
    from cao_sidecar.profiles.untrusted import hold_back_profile

    text = "---\nname: dev\nprovider: mock\nworktree: true\nworktreeFiles: [.env, config/local.yaml]\n---\nDev.\n"
    profile = parse_profile(text)
    assert profile.worktree is True and profile.worktree_files == [".env", "config/local.yaml"]
    assert parse_profile("---\nname: dev\nprovider: mock\n---\nDev.\n").worktree is False
    for bad in ("../outside", "/etc/passwd", "~/.ssh/id_rsa", ".git/config"):
        with pytest.raises(ProfileError, match="worktreeFiles"):
            parse_profile(f"---\nname: dev\nprovider: mock\nworktreeFiles: [{bad!r}]\n---\nDev.\n")
    with pytest.raises(ProfileError, match="worktree"):
        parse_profile("---\nname: dev\nprovider: mock\nworktree: yes please\n---\nDev.\n")
    # An untrusted folder's profile keeps its worktree (it isolates) but copies nothing in.
    held, diagnostic = hold_back_profile(profile, tmp_path)
    assert held.worktree is True and held.worktree_files == []
    assert diagnostic is not None and "worktreeFiles" in diagnostic.message

    flow_text = '---\nname: nightly\nschedule: "0 3 * * *"\nprofile: dev\nworktree: true\n---\nTidy up.\n'
    flow, _diagnostics = check_flow(split_frontmatter(flow_text), path=tmp_path / "nightly.md", scope="user", base_dir=tmp_path)
    assert flow is not None and flow.worktree is True
    plain, _diagnostics = check_flow(
        split_frontmatter(flow_text.replace("worktree: true\n", "")),
        path=tmp_path / "nightly.md",
        scope="user",
        base_dir=tmp_path,
    )
    assert plain is not None and plain.worktree is None
