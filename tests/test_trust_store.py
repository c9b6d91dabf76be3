"""The trust store (cao_sidecar.trust) and what an untrusted folder's files do not get, in process.

The end-to-end tests on the real sidecar are in tests/test_trust_live.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from cao_sidecar import trust
from cao_sidecar.profiles.catalog import ProfileCatalog
from cao_sidecar.profiles.profile import Profile
from cao_sidecar.profiles.untrusted import hold_back_profile


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(trust, "POLICY", trust.Policy())
    return tmp_path / "config" / "cao-sidecar" / "trust.json"


def test_grant_writes_a_private_file_keyed_by_real_path(tmp_path: Path, store: Path) -> None:
    folder = tmp_path / "src" / "shop"
    folder.mkdir(parents=True)
    link = tmp_path / "shop-link"
    link.symlink_to(folder)
    assert not trust.is_trusted(folder)
    assert trust.grant(link) == str(folder)
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    doc = json.loads(store.read_text())
    assert doc["version"] == 1 and list(doc["trusted"]) == [str(folder)]
    assert doc["trusted"][str(folder)]["grantedAt"].endswith("Z")
    assert trust.is_trusted(folder) and trust.is_trusted(link)
    assert [p.name for p in store.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_parent_folder_rule(tmp_path: Path, store: Path) -> None:
    (tmp_path / "src" / "shop" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "shopping").mkdir()
    trust.grant(tmp_path / "src" / "shop")
    assert trust.is_trusted(tmp_path / "src" / "shop" / "sub")
    assert not trust.is_trusted(tmp_path / "src" / "shopping")  # a name prefix is no parent
    assert not trust.is_trusted(tmp_path / "src")


def test_revoke(tmp_path: Path, store: Path) -> None:
    trust.grant(tmp_path)
    assert trust.revoke(tmp_path) is True
    assert trust.revoke(tmp_path) is False
    assert not trust.is_trusted(tmp_path)
    assert json.loads(store.read_text())["trusted"] == {}


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"version": 2, "trusted": {}}', b'{"version": 1, "trusted": {"relative/path": {}}}', b"\xff\xfe", b"[]"],
)
def test_a_corrupt_file_trusts_nothing_and_is_set_aside_before_a_grant(tmp_path: Path, store: Path, content: bytes) -> None:
    store.parent.mkdir(parents=True)
    store.write_bytes(content)
    os.chmod(store, 0o600)
    state = trust.read_store()
    assert state.trusted == {} and state.problem and "not a valid trust file" in state.problem
    trust.grant(tmp_path)
    aside = list(store.parent.glob("trust.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert trust.is_trusted(tmp_path)


def test_a_symlinked_store_is_not_believed_and_a_write_replaces_the_link(tmp_path: Path, store: Path) -> None:
    elsewhere = tmp_path / "repo" / "planted.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(json.dumps({"version": 1, "trusted": {str(tmp_path): {"grantedAt": ""}}}))
    os.chmod(elsewhere, 0o600)
    store.parent.mkdir(parents=True)
    store.symlink_to(elsewhere)
    state = trust.read_store()
    assert state.trusted == {} and "symbolic link" in (state.problem or "")
    assert not trust.is_trusted(tmp_path)
    before = elsewhere.read_text()
    trust.grant(tmp_path / "repo")
    assert elsewhere.read_text() == before  # never written through the link
    assert not store.is_symlink() and stat.S_ISREG(store.lstat().st_mode)
    assert list(json.loads(store.read_text())["trusted"]) == [str(tmp_path / "repo")]


def test_a_store_others_may_write_is_not_believed(tmp_path: Path, store: Path) -> None:
    trust.grant(tmp_path)
    os.chmod(store, 0o666)
    assert not trust.is_trusted(tmp_path)
    assert "writable by others" in (trust.read_store().problem or "")


def test_the_editor_decides_for_its_folders_when_it_says_so(tmp_path: Path, store: Path) -> None:
    policy = trust.POLICY
    assert policy.decide(tmp_path) == trust.Decision(False, "none")
    trust.grant(tmp_path)
    assert policy.decide(tmp_path) == trust.Decision(True, "store")  # the file changed: read again
    policy.set_editor_decision(None, False)  # initializationOptions.workspaceTrusted: false
    assert policy.decide(tmp_path) == trust.Decision(False, "editor")
    policy.set_editor_decision(tmp_path, True)  # cao/setTrust persist:false
    assert policy.decide(tmp_path) == trust.Decision(True, "editor")
    policy.set_editor_decision(tmp_path, None)  # the user wrote the store from the editor
    assert policy.decide(tmp_path) == trust.Decision(True, "store")


def test_hold_back_keeps_what_cannot_run_anything(tmp_path: Path) -> None:
    profile = Profile(
        name="helper",
        provider="claude_code",
        description="d",
        model="opus",
        system_prompt="You help.",
        env={"X": "1"},
        permission_mode="bypassPermissions",
        allowed_tools=["*"],
        disallowed_tools=["Bash"],
        working_directory="/",
        extra={"command": "evil", "dangerously_skip_permissions": True},
        tags=["t"],
    )
    kept, diagnostic = hold_back_profile(profile, tmp_path)
    assert kept.env == {} and kept.permission_mode is None and kept.allowed_tools is None
    assert kept.extra == {} and kept.working_directory is None and kept.mcp_servers == []
    assert (kept.name, kept.provider, kept.model, kept.system_prompt, kept.disallowed_tools, kept.tags) == (
        "helper",
        "claude_code",
        "opus",
        "You help.",
        ["Bash"],
        ["t"],
    )
    assert diagnostic is not None and diagnostic.severity == "warning"
    assert "cao-sidecar trust" in diagnostic.message
    assert diagnostic.held_back and "env" in diagnostic.held_back and "command" in diagnostic.held_back
    inside, note = hold_back_profile(Profile(name="p", provider="mock", working_directory=str(tmp_path / "sub")), tmp_path)
    assert inside.working_directory == str(tmp_path / "sub") and note is None


def test_an_untrusted_workspace_profile_never_shadows_and_trust_reorders(tmp_path: Path, store: Path) -> None:
    agents = tmp_path / "ws" / ".cao" / "agents"
    agents.mkdir(parents=True)
    (agents / "mock_developer.md").write_text(
        "---\nname: mock_developer\ndescription: mine\nprovider: mock\nenv: {A: b}\n---\nx\n"
    )
    catalog = ProfileCatalog(workspace_dirs=[agents], user_dir=None)
    entry = catalog.entry("mock_developer")
    assert entry is not None and entry.layer.scope == "builtin" and entry.shadows == [agents / "mock_developer.md"]
    held = {d.held_back for d in catalog.diagnostics()[agents / "mock_developer.md"]}
    assert held == {"profile mock_developer: env not applied", "profile mock_developer: the built-in one stays in force"}
    trust.grant(tmp_path / "ws")
    catalog.set_workspace_dirs([agents], None)
    catalog.reload()
    entry = catalog.entry("mock_developer")
    assert entry is not None and entry.layer.scope == "workspace" and entry.item.env == {"A": "b"}
    assert agents / "mock_developer.md" not in catalog.diagnostics()
