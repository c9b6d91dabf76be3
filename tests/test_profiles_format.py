"""The profile and flow formats without a sidecar: the shipped JSON Schemas, the built-in
profiles, the parsers' rules, and the flow scheduler's sleeping (with a fake clock and core)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import attrs
import pytest
import yaml
from jsonschema import Draft202012Validator

from cao_sidecar.flows import flow as flow_module
from cao_sidecar.flows.catalog import FlowCatalog
from cao_sidecar.flows.flow import check_schedule, fill_placeholders
from cao_sidecar.flows.scheduler import Clock, FlowScheduler, next_after
from cao_sidecar.profiles import profile as profile_module
from cao_sidecar.profiles.catalog import ProfileCatalog, builtin_profiles_dir
from cao_sidecar.profiles.files import split_frontmatter
from cao_sidecar.profiles.profile import parse_profile, ProfileError
from cao_sidecar.storage.flows import FlowRunStore

ROOT = Path(__file__).resolve().parent.parent
PROFILE_SCHEMA = json.loads((ROOT / "cao_sidecar" / "profiles" / "profile.schema.json").read_text())
FLOW_SCHEMA = json.loads((ROOT / "cao_sidecar" / "flows" / "flow.schema.json").read_text())
BUILTINS = ("supervisor", "developer", "reviewer", "tester", "architect", "security", "performance")


def test_schemas_are_valid_and_list_exactly_the_known_fields():
    Draft202012Validator.check_schema(PROFILE_SCHEMA)
    Draft202012Validator.check_schema(FLOW_SCHEMA)
    assert set(PROFILE_SCHEMA["properties"]) == set(profile_module.KNOWN_FIELDS)
    assert set(FLOW_SCHEMA["properties"]) == set(flow_module.KNOWN_FIELDS)
    for schema in (PROFILE_SCHEMA, FLOW_SCHEMA):
        for key, prop in schema["properties"].items():
            assert len(prop.get("description", "")) > 20, key


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_profiles_are_valid_and_substantial(name):
    path = builtin_profiles_dir() / f"{name}.md"
    text = path.read_text(encoding="utf-8")
    fm = split_frontmatter(text)
    assert not list(Draft202012Validator(PROFILE_SCHEMA).iter_errors(fm.fields))
    profile = parse_profile(text, path=path)
    assert profile.name == name and profile.provider == "claude_code"
    assert len(profile.system_prompt) > 1000 and profile.description


def test_supervisor_explains_every_tool_and_how_to_combine_results():
    prompt = parse_profile((builtin_profiles_dir() / "supervisor.md").read_text()).system_prompt
    for tool in ("handoff", "assign", "send_message", "list_sessions"):
        assert re.search(rf"`{tool}\(", prompt), tool
    assert "Combining results" in prompt and "self-contained" in prompt
    # It names only profiles that ship.
    named = set(re.findall(r"^- `([a-z_]+)`:", prompt, re.M))
    assert named == set(BUILTINS) - {"supervisor"}


def test_the_catalog_has_every_builtin_and_no_errors():
    catalog = ProfileCatalog(workspace_dirs=[], user_dir=None)
    assert set(BUILTINS) | {"mock_developer", "mock_reviewer", "mock_supervisor"} <= set(catalog.names())
    assert catalog.errors == {}


def test_yaml_is_only_ever_loaded_safely_and_never_written():
    offenders = []
    for path in (ROOT / "cao_sidecar").rglob("*.py"):
        text = path.read_text()
        for pattern in (
            r"yaml\.load\(",
            r"yaml\.unsafe",
            r"yaml\.full_load",
            r"yaml\.(safe_)?dump",
            r"Loader=yaml\.(Full|Unsafe)?Loader\b",
        ):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert not offenders


def test_parse_profile_raises_with_the_line():
    with pytest.raises(ProfileError) as info:
        parse_profile("---\nname: ok\nprovider: mock\nmodel: [1]\n---\nx\n")
    assert info.value.line == 4 and "'model' must be a string" in str(info.value)


@pytest.mark.parametrize(
    "schedule, problem",
    [
        ("* * * * *", None),
        ("*/15 9-17 * * mon-fri", None),
        ("0 2 * * *", None),
        ("@daily", None),
        ("  0   2 * * *  ", None),
        ("@reboot", "unknown schedule"),
        ("0 2 * *", "5 fields"),
        ("0 0 2 * * *", "5 fields"),
        ("61 * * * *", "not a valid cron"),
        ("0 2 * * *\n", "control"),
        ("0 2 * * *; rm -rf /", "characters cron does not use"),
        ("$(reboot) * * * *", "characters cron does not use"),
    ],
)
def test_schedules(schedule, problem):
    result = check_schedule(schedule)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result


def test_placeholders_are_filled_once_and_missing_ones_reported():
    text, missing = fill_placeholders("a {{x}} b {{ y }} c {{z}}", {"x": "{{y}}", "y": "$(rm -rf /)"})
    assert text == "a {{y}} b $(rm -rf /) c {{z}}" and missing == ["z"]


def test_cron_is_local_time_and_follows_dst():
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Europe/Berlin")
    before = datetime(2025, 3, 29, 12, 0, tzinfo=zone)  # the night DST starts
    first = next_after("0 2 * * *", before)  # 02:00 does not exist that night
    second = next_after("0 3 * * *", before)
    assert first > before and second.hour == 3 and second.utcoffset() == timedelta(hours=2)


def test_clock_offset_env(monkeypatch):
    monkeypatch.setenv("CAO_CLOCK_OFFSET_SECONDS", "3600")
    clock = Clock.from_env()
    assert abs((clock.now() - datetime.now(timezone.utc)).total_seconds() - 3600) < 5
    monkeypatch.setenv("CAO_CLOCK_OFFSET_SECONDS", "soon")
    assert Clock.from_env().offset == 0.0


# ---- the scheduler sleeps until the next due time ----------------------------------------------


@attrs.define
class FakeAgent:
    terminal_id: str


@attrs.define
class FakeProfile:
    name: str
    host: Optional[str] = None


class FakeCatalog:
    def get(self, name: str) -> FakeProfile:
        return FakeProfile(name)


class FakeCore:
    default_cwd = "/"

    def __init__(self) -> None:
        self.assigned: list[tuple[str, dict[str, Any]]] = []
        self.catalog = FakeCatalog()

    def assign(self, message: str, **kw: Any) -> FakeAgent:
        self.assigned.append((message, kw))
        return FakeAgent(f"t{len(self.assigned)}")


class CountingClock(Clock):
    def __init__(self, offset: float) -> None:
        super().__init__(offset)
        self.calls = 0

    def now(self) -> datetime:
        self.calls += 1
        return super().now()


async def test_the_scheduler_sleeps_until_the_next_run_and_runs_it(trusted_tmp_path):
    tmp_path = trusted_tmp_path  # the workspace, trusted
    flows = tmp_path / "ws" / ".cao" / "flows"
    flows.mkdir(parents=True)
    (flows / "soon.md").write_text('---\nname: soon\nschedule: "* * * * *"\nprofile: p\n---\necho soon\n')
    (flows / "later.md").write_text('---\nname: later\nschedule: "0 0 1 1 *"\nprofile: p\n---\necho later\n')
    catalog = FlowCatalog(workspace_folders=[tmp_path / "ws"], user_dir=None)
    catalog.reload()
    now = datetime.now().timestamp()
    clock = CountingClock(offset=(-(now + 0.5)) % 60)  # a minute boundary in 0.5 s
    core = FakeCore()
    store = FlowRunStore(tmp_path / "state.db")
    scheduler = FlowScheduler(core=core, flows=catalog, store=store, clock=clock, auto=True)
    scheduler.start()
    try:
        await asyncio.sleep(0.3)
        assert core.assigned == [] and clock.calls <= 6  # asleep, not polling
        await asyncio.sleep(0.6)
        assert [m for m, _ in core.assigned] == ["echo soon"]
        assert core.assigned[0][1]["profile"] == "p" and core.assigned[0][1]["keep"] is False
        calls = clock.calls
        await asyncio.sleep(0.5)
        assert clock.calls - calls <= 2  # asleep again until the next minute
        run = store.last(str(flows / "soon.md"))
        assert run is not None and run.status == "running" and run.terminal_id == "t1" and run.trigger == "schedule"
    finally:
        await scheduler.close()
        store.close()
    # Closing marks the runs this sidecar could not see to their end.
    store = FlowRunStore(tmp_path / "state.db")
    assert store.last(str(flows / "soon.md")).status == "failed"
    store.close()


def test_two_sidecars_never_run_the_same_slot(tmp_path):
    first = FlowRunStore(tmp_path / "state.db")
    second = FlowRunStore(tmp_path / "state.db")
    slot = "2025-11-21T02:00:00+01:00"
    assert first.start(flow="f", path="/f.md", trigger="schedule", scheduled_at=slot) is not None
    assert second.start(flow="f", path="/f.md", trigger="schedule", scheduled_at=slot) is None
    assert second.start(flow="f", path="/f.md", trigger="manual", scheduled_at=None) is not None
    first.close()
    second.close()


def test_yaml_module_is_pyyaml_safe_loader_based():
    # The frontmatter loader is a safe loader (libyaml's when PyYAML has it): no Python object
    # construction at all.
    from cao_sidecar.profiles.files import _Loader

    assert issubclass(_Loader, (yaml.SafeLoader, yaml.CSafeLoader))
    assert issubclass(_Loader, yaml.constructor.SafeConstructor)
    assert not issubclass(_Loader, yaml.constructor.FullConstructor)
