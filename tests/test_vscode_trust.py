"""Workspace trust in the VS Code extension, end to end: code-server with Workspace Trust on opens a
folder laid out like a hostile clone (a `.cao/` and its own `.venv/bin/cao-sidecar`, which leaves a
marker file when run). The person says "No" to VS Code's trust question: the extension starts the
`cao-sidecar` on PATH, never the folder's own, and tells the sidecar the folder is not trusted. The
person then trusts the workspace: the extension restarts into the folder's own sidecar, trusted; or,
when the folder has no program of its own, sends cao/setTrust to the running sidecar, whose answer
shows as a notice.
clients/vscode/e2e/trust.mjs drives the browser; the toolchain comes from .ci/editors/vscode.sh.
"""

from __future__ import annotations

import hashlib
import shutil
import json
import os
import re
from pathlib import Path

import pytest

from conftest import isolated_env, kill_tmux
from editor_trust import NO_SET_TRUST, hostile_folder, path_sidecar
from test_vscode import (
    CACHE,
    CLIENT,
    PLAYWRIGHT,
    _extension_log,
    _package_vsix,
    _stop,
    _tool_env,
    install_code_server,
    need_e2e_toolchain,
    run_driver,
    start_code_server,
)


@pytest.mark.parametrize("own_sidecar", [True, False], ids=["own-sidecar", "no-own-sidecar"])
def test_vscode_restricted_mode_then_trust(tmp_base: Path, own_sidecar: bool) -> None:
    chromium = need_e2e_toolchain()
    tools = _tool_env()
    vsix = _package_vsix(tools, tmp_base)
    env = isolated_env(tmp_base)
    env.pop("CAO_TMUX_SOCKET")  # the extension derives the socket from the workspace path
    workspace = tmp_base / "workspace"
    marker = tmp_base / "workspace-sidecar.marker"
    hostile_folder(workspace, marker)
    if not own_sidecar:
        shutil.rmtree(workspace / ".venv")
    program = path_sidecar(tmp_base / "bin")
    env["PATH"] = f"{tmp_base / 'bin'}{os.pathsep}{tools['PATH']}"
    # code-server's extension host takes PATH from a login shell: put the sidecar there as a user would.
    Path(env["HOME"], ".profile").write_text(f'export PATH="{tmp_base / "bin"}:$PATH"\n')
    sock = "cao-" + hashlib.sha256(str(workspace).encode("utf-8")).hexdigest()[:12]
    code_server_args, user_data = install_code_server(
        tmp_base,
        env,
        vsix,
        {"security.workspace.trust.enabled": True, "security.workspace.trust.startupPrompt": "always"},
        {},
        trust=True,
    )
    server, port, log = start_code_server(tmp_base, code_server_args, workspace, env)
    result_file = tmp_base / "trust-result.json"
    try:
        driver_env = dict(
            env,
            CAO_E2E_URL=f"http://127.0.0.1:{port}",
            CAO_E2E_WORKSPACE=str(workspace),
            CAO_E2E_MARKER=str(marker),
            CAO_E2E_RESULT=str(result_file),
            CAO_E2E_HAS_VENV="1" if own_sidecar else "0",
            CAO_E2E_CHROMIUM=chromium,
            CAO_E2E_PLAYWRIGHT=str(PLAYWRIGHT),
        )
        proc = run_driver(CLIENT / "e2e" / "trust.mjs", tmp_base, driver_env)
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        log_text = _extension_log(user_data)
        failure = tmp_base / "failure.png"
        if failure.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            os.replace(failure, CACHE / "e2e-trust-failure.png")
        assert proc.returncode == 0 and result.get("ok"), (
            f"trust e2e failed: {result.get('error') or proc.stderr}\nsteps: {result.get('steps')}\n"
            f"stdout:\n{proc.stdout}\nextension log:\n{log_text}"
        )
        checks = result["checks"]
        assert "trust" in checks["trustDialog"].lower(), checks["trustDialog"]
        # Restricted Mode: the sidecar on PATH, told the workspace is not trusted; the folder's
        # own program never ran.
        assert re.search(rf"starting {re.escape(str(program))} \(PATH\) .*workspace trusted: false", log_text), log_text
        assert checks["statusBarUntrusted"] == "0 agents"
        assert checks["markerBeforeTrust"] is False
        if not own_sidecar:
            # Trusted: the running sidecar is told (the editor's decision, not persisted).
            assert checks["markerAfterTrust"] is False
            if "has no cao/setTrust" in log_text:
                pytest.skip(NO_SET_TRUST)
            assert re.search(rf"cao/setTrust: {re.escape(str(workspace))} trusted", log_text), log_text
            assert checks["trustedNotice"] and "is now trusted" in checks["trustedNotice"], checks
            return
        # Trusted: the extension restarted into the folder's own sidecar, told it is trusted.
        venv = workspace / ".venv" / "bin" / "cao-sidecar"
        assert re.search(rf"starting {re.escape(str(venv))} \(the workspace's \.venv\) .*workspace trusted: true", log_text), (
            log_text
        )
        assert checks["markerAfterTrust"] is True and marker.exists()
        assert "--tmux-socket" in marker.read_text()
        assert re.fullmatch(r"\d+ agents?", checks["statusBarTrusted"]), checks["statusBarTrusted"]
    finally:
        _stop(server)
        log.close()
        kill_tmux(sock)
