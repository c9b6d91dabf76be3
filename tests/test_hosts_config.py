"""hosts.yaml validation, terminal id qualification and the node's keyed calls (no ssh needed;
tests/test_hosts_ssh.py runs the real thing against an sshd)."""

from __future__ import annotations

import asyncio

import pytest

from cao_sidecar.hosts.config import HostConfig, HostsError, attach_over_ssh, parse_hosts, qualify, split_terminal_id
from cao_sidecar.hosts.install import node_argv
from cao_sidecar.hosts.node import KeyedCalls, is_node_link


def test_a_valid_hosts_file() -> None:
    hosts = parse_hosts(
        "hosts:\n  - name: box1\n    ssh: dev@box1\n    options: ['-p', '2222']\n  - name: gpu-2\n    ssh: gpu2\n    workspace: ~/w\n"
    )
    assert hosts["box1"] == HostConfig(name="box1", ssh="dev@box1", options=("-p", "2222"))
    assert hosts["gpu-2"].workspace == "~/w"
    assert parse_hosts("") == {} and parse_hosts("hosts: []") == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("hosts: [", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping with a list 'hosts'"),
        ("hosts:\n  - box1\n", "hosts[0]: expected a mapping"),
        ("hosts:\n  - name: Box1\n    ssh: a\n", "'name' must be 1-32 lowercase"),
        ("hosts:\n  - name: main\n    ssh: a\n", "not auto or local or main"),
        ("hosts:\n  - name: b\n    ssh: a\n  - name: b\n    ssh: c\n", "host 'b' is defined twice"),
        ("hosts:\n  - name: b\n    ssh: -oProxyCommand=x\n", "'ssh' must be an ssh destination"),
        ("hosts:\n  - name: b\n    ssh: 'a b'\n", "'ssh' must be an ssh destination"),
        ("hosts:\n  - name: b\n    ssh: a\n    options: -p 22\n", "'options' must be a list of strings"),
        ("hosts:\n  - name: b\n    ssh: a\n    port: 22\n", "unknown field(s) port"),
    ],
)
def test_bad_hosts_files_say_where(text: str, says: str) -> None:
    with pytest.raises(HostsError) as raised:
        parse_hosts(text, "hosts.yaml")
    assert says in str(raised.value) and str(raised.value).startswith("hosts.yaml")


def test_terminal_ids_are_qualified_by_host() -> None:
    assert split_terminal_id("box1:ab12cd34") == ("box1", "ab12cd34")
    assert split_terminal_id("ab12cd34") == (None, "ab12cd34")
    raw = {"agents": [{"terminalId": "ab12", "prompt": None}], "worktree": {"terminalId": "ab12"}, "output": "terminalId"}
    assert qualify(raw, "box1") == {
        "agents": [{"terminalId": "box1:ab12", "prompt": None}], "worktree": {"terminalId": "box1:ab12"}, "output": "terminalId",
    }  # fmt: skip
    assert qualify({"terminalId": "box2:ff"}, "box1") == {"terminalId": "box2:ff"}  # already qualified


def test_commands_over_ssh() -> None:
    host = HostConfig(name="box1", ssh="dev@box1", options=("-p", "2222"), workspace="~/my node")
    argv = node_argv(host, "0.1.0-abc")
    assert argv[0] == "ssh" and "BatchMode=yes" in argv and argv[-2] == "dev@box1"
    assert argv[-1] == "~/.cache/cao-sidecar/0.1.0-abc/bin/python -m cao_sidecar node --workspace ~/'my node'"
    attach = attach_over_ssh(host, ["tmux", "-L", "s", "attach", "-t", "=cao"])
    assert attach[:2] == ["ssh", "-t"] and attach[-1] == "tmux -L s attach -t =cao"


def test_a_node_link_is_told_by_its_options() -> None:
    assert is_node_link({"initializationOptions": {"caoNode": True}})
    assert not is_node_link({"initializationOptions": {"caoNode": "yes"}}) and not is_node_link(None)


async def test_a_key_seen_again_joins_the_call() -> None:
    calls = KeyedCalls()
    runs = []

    async def work() -> str:
        runs.append(1)
        await asyncio.sleep(0.05)
        return "done"

    first = calls.run("k1", work)
    again = calls.run("k1", work)  # the re-sent request of a dropped link
    assert first is again and await first == "done" and await calls.run("k1", work) == "done"
    assert await calls.run("k2", work) == "done" and len(runs) == 2


def test_a_profile_names_its_host() -> None:
    from cao_sidecar.profiles.profile import ProfileError, parse_profile

    assert parse_profile("---\nname: far\ndescription: d\nprovider: mock\nhost: box1\n---\nbody\n").host == "box1"
    with pytest.raises(ProfileError) as raised:
        parse_profile("---\nname: far\ndescription: d\nprovider: mock\nhost: Box 1\n---\nbody\n")
    assert "'host'" in str(raised.value)


FAR = "---\nname: far_dev\ndescription: d\nprovider: mock\nhost: box1\npool: 2\nworkingDirectory: /orchestrator/only\nenv:\n  FAR_FLAVOUR: 'five'\n---\nbody\n"


def test_a_profile_sent_to_a_host_is_checked_there(tmp_path) -> None:
    from cao_sidecar.core.errors import InvalidRequest
    from cao_sidecar.hosts.profiles import supplied_profile

    trusted = supplied_profile({"name": "far_dev", "text": FAR, "trusted": True, "scope": "workspace"}, "far_dev", tmp_path)
    assert trusted.name == "far_dev" and trusted.provider == "mock" and trusted.env == {"FAR_FLAVOUR": "five"}
    # Another machine's folder, the host it runs on and the orchestrator's warm workers do not apply.
    assert trusted.working_directory is None and trusted.host is None and trusted.pool == 0
    # From a folder the user has not trusted: held back on the node as on the orchestrator.
    untrusted = supplied_profile({"name": "far_dev", "text": FAR, "trusted": False}, "far_dev", tmp_path)
    assert untrusted.env == {} and untrusted.system_prompt == trusted.system_prompt
    for definition, says in [
        ("text", "expected an object"),
        ({"name": "far_dev", "text": FAR}, "'trusted' must be"),
        ({"name": "other", "text": FAR, "trusted": True}, "it names 'other'"),
        ({"name": "far_dev", "text": FAR.replace("name: far_dev", "name: other"), "trusted": True}, "its 'name' is 'other'"),
        ({"name": "far_dev", "text": "no frontmatter", "trusted": True}, "line 1"),
        ({"name": "far_dev", "text": FAR.replace("pool: 2", "pool: many"), "trusted": True}, "pool"),
        ({"name": "far_dev", "text": "x" * 300_000, "trusted": True}, "at most 256 KiB"),
    ]:
        with pytest.raises(InvalidRequest) as raised:
            supplied_profile(definition, "far_dev", tmp_path)
        assert says in raised.value.message and "'far_dev'" in raised.value.message, raised.value.message


def test_a_supplied_profile_wins_over_a_file_of_its_name(tmp_path) -> None:
    from cao_sidecar.profiles.catalog import ProfileCatalog
    from cao_sidecar.hosts.profiles import supplied_profile

    catalog = ProfileCatalog(workspace_dirs=[], user_dir=None)
    builtin = catalog.get("mock_developer")
    text = FAR.replace("far_dev", "mock_developer")
    catalog.supply(supplied_profile({"name": "mock_developer", "text": text, "trusted": True}, "mock_developer", tmp_path))
    assert catalog.get("mock_developer").env == {"FAR_FLAVOUR": "five"} and builtin.env != catalog.get("mock_developer").env
    catalog.reload()  # the node's own files change: the orchestrator's definition stays in force
    assert catalog.get("mock_developer").env == {"FAR_FLAVOUR": "five"}


def test_a_provider_sent_to_a_host_is_checked_there() -> None:
    from cao_sidecar.core.errors import InvalidRequest
    from cao_sidecar.hosts.profiles import supplied_provider

    good = {"name": "mycli", "file": "mycli.yaml", "text": "command: [mycli, --chat]\nexit_command: /quit\n"}
    provider = supplied_provider(good)
    assert provider.name == "mycli" and tuple(provider.command) == ("mycli", "--chat")
    for definition, says in [
        ("text", "expected an object"),
        ({**good, "text": None}, "'text' must be a provider file"),
        ({**good, "file": "../x.yaml"}, "'file' must be a file name"),
        ({**good, "file": "mycli.sh"}, "'file' must be a file name"),
        ({**good, "text": "status: [1]\n"}, "mycli.yaml: give 'command'"),
        ({**good, "text": "command: [x]\nbogus: 1\n"}, "unknown fields: bogus"),
        ({**good, "name": "other"}, "defines 'mycli', not 'other'"),
        ({**good, "text": "x" * 300_000}, "at most 256 KiB"),
    ]:
        with pytest.raises(InvalidRequest) as raised:
            supplied_provider(definition)
        assert says in raised.value.message and "provider file" in raised.value.message, raised.value.message
