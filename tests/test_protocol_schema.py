"""Keep the wire contract in step: protocol/cao-protocol.schema.json, the examples in
protocol/spec.md, and the Python wire types (cao_sidecar/wire.py with its tables, the
classes in cao_sidecar/wire_types/, core/errors.py, core/status.py).

No sidecar process and no tmux here: these tests only compare documents and types.
"""

from __future__ import annotations

import enum
import importlib
import json
import math
import re
import typing
from pathlib import Path
from typing import Any, Literal, Union

import attrs
import pytest
from jsonschema import Draft202012Validator

from cao_sidecar import wire
from cao_sidecar.core import errors
from cao_sidecar.core.status import AgentStatus

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "protocol" / "cao-protocol.schema.json"
SPEC_PATH = ROOT / "protocol" / "spec.md"

SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
DEFS: dict[str, Any] = SCHEMA["$defs"]
SPEC_TEXT = SPEC_PATH.read_text(encoding="utf-8")

PARAMS_CLASSES = tuple(params for params, _result in wire.METHODS.values())


def _name(cls: type) -> str:
    return cls.__name__


# The same $defs, but the wire types closed (additionalProperties false): our own examples must
# not use fields the contract does not list (a misspelt optional field would pass otherwise).
_WIRE_NAMES = {cls.__name__ for cls in wire.WIRE_CLASSES}
STRICT_DEFS: dict[str, Any] = {
    name: {**schema, "additionalProperties": False} if name in _WIRE_NAMES else schema for name, schema in DEFS.items()
}


def validator_for(schema: dict[str, Any], *, formats: bool = True, strict: bool = False) -> Draft202012Validator:
    """A validator for `schema`, with the document's $defs in reach of its `#/$defs/...` refs.

    `formats`: also check `format` (e.g. date-time), a constraint beyond the Python type.
    `strict`: refuse properties the wire types do not list."""
    return Draft202012Validator(
        {"$defs": STRICT_DEFS if strict else DEFS, **schema},
        format_checker=Draft202012Validator.FORMAT_CHECKER if formats else None,
    )


def schema_errors(def_name: str, instance: Any, *, strict: bool = False) -> list[str]:
    assert def_name in DEFS, f"schema has no $defs/{def_name}"
    check = validator_for({"$ref": f"#/$defs/{def_name}"}, strict=strict)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in check.iter_errors(instance)]


def to_json(value: Any) -> Any:
    """What actually goes over the wire: a JSON round trip (enums become their values)."""
    return json.loads(json.dumps(value, allow_nan=False))


# ---- the schema document itself ------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)
    for subschema in DEFS.values():
        Draft202012Validator.check_schema(subschema)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_ref_resolves() -> None:
    refs = _refs(SCHEMA)
    assert refs
    for ref in refs:
        assert ref.startswith("#/$defs/"), ref
        assert ref.removeprefix("#/$defs/") in DEFS, f"dangling {ref}"


def test_protocol_version_is_1() -> None:
    assert SCHEMA["protocolVersion"] == 1
    assert DEFS["CaoCapability"]["properties"]["protocolVersion"]["const"] == 1
    assert re.search(r"^# .*version 1$", SPEC_TEXT, re.M), "spec.md title should name version 1"


# ---- method and notification tables --------------------------------------------------------


def test_schema_methods_are_exactly_the_wire_methods() -> None:
    assert set(SCHEMA["methods"]) == set(wire.METHODS)


def test_schema_notifications_are_exactly_the_wire_notifications() -> None:
    assert set(SCHEMA["notifications"]) == set(wire.NOTIFICATIONS)


@pytest.mark.parametrize("method", sorted(wire.METHODS))
def test_method_refs_name_the_wire_classes(method: str) -> None:
    params_cls, result_cls = wire.METHODS[method]
    entry = SCHEMA["methods"][method]
    assert entry["params"] == {"$ref": f"#/$defs/{_name(params_cls)}"}
    assert entry["result"] == {"$ref": f"#/$defs/{_name(result_cls)}"}
    assert entry.get("description")


@pytest.mark.parametrize("method", sorted(wire.NOTIFICATIONS))
def test_notification_refs_name_the_wire_classes(method: str) -> None:
    entry = SCHEMA["notifications"][method]
    assert entry["params"] == {"$ref": f"#/$defs/{_name(wire.NOTIFICATIONS[method])}"}
    assert entry.get("description")


def test_every_wire_class_has_a_def() -> None:
    missing = [_name(cls) for cls in wire.WIRE_CLASSES if _name(cls) not in DEFS]
    assert not missing


def test_every_class_of_wire_types_is_in_the_tables() -> None:
    """A wire type added to a module of cao_sidecar/wire_types is checked only once wire.py lists it."""
    package = ROOT / "cao_sidecar" / "wire_types"
    defined = {
        cls
        for path in package.glob("*.py")
        for cls in vars(importlib.import_module(f"cao_sidecar.wire_types.{path.stem}")).values()
        if attrs.has(cls) and cls.__module__ == f"cao_sidecar.wire_types.{path.stem}"
    }
    assert len(defined) > 50
    assert sorted(_name(cls) for cls in defined - set(wire.WIRE_CLASSES)) == []


def test_spec_has_a_section_per_method_and_notification() -> None:
    headings = set(re.findall(r"^### (\S+)\s*$", SPEC_TEXT, re.M))
    assert set(wire.METHODS) | set(wire.NOTIFICATIONS) <= headings


# ---- each wire class against its $def ------------------------------------------------------


def _fields(cls: type) -> dict[str, attrs.Attribute]:
    return {wire.camel(field.name): field for field in attrs.fields(cls)}


def _default(field: attrs.Attribute) -> Any:
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory()
    if isinstance(default, enum.Enum):
        return default.value
    return default


wire_class = pytest.mark.parametrize("cls", wire.WIRE_CLASSES, ids=_name)


@wire_class
def test_properties_are_the_camelcase_fields(cls: type) -> None:
    schema = DEFS[_name(cls)]
    assert schema["type"] == "object"
    assert set(schema["properties"]) == set(_fields(cls))


@wire_class
def test_required_are_the_fields_without_default(cls: type) -> None:
    schema = DEFS[_name(cls)]
    expected = {key for key, field in _fields(cls).items() if field.default is attrs.NOTHING}
    assert set(schema.get("required", [])) == expected


@wire_class
def test_schema_defaults_equal_attrs_defaults(cls: type) -> None:
    properties = DEFS[_name(cls)]["properties"]
    for key, field in _fields(cls).items():
        if field.default is attrs.NOTHING:
            assert "default" not in properties[key], f"required {key} documents a default"
        else:
            assert "default" in properties[key], f"optional {key} does not document its default"
            expected = _default(field)
            actual = properties[key]["default"]
            assert actual == expected and type(actual) is type(expected), (key, actual, expected)


@wire_class
def test_every_property_is_described(cls: type) -> None:
    for key, prop in DEFS[_name(cls)]["properties"].items():
        assert isinstance(prop.get("description"), str) and len(prop["description"]) > 5, key


@pytest.mark.parametrize("cls", PARAMS_CLASSES, ids=_name)
def test_params_accept_unknown_properties(cls: type) -> None:
    assert DEFS[_name(cls)].get("additionalProperties") is True
    minimal = {key: MINIMAL_VALUES[key] for key, f in _fields(cls).items() if f.default is attrs.NOTHING}
    params = {**minimal, "someFutureField": [1, 2]}
    if cls is wire.HandoffParams:
        params["profile"] = "mock_developer"
    assert not schema_errors(_name(cls), params)
    wire.structure_params(params, cls)


# Field types: a value is accepted by the schema property iff the Python annotation accepts it.

MINIMAL_VALUES: dict[str, Any] = {
    "profile": "mock_developer",
    "message": "echo hi",
    "terminalId": "3f9c2a71",
    "name": "nightly-review",
    "enabled": True,
    "answer": "Yes",
    "trusted": True,
    "runId": "f6de43f26f7a",
    "key": 0,
    "task": "echo hi",
}

AGENT_INFO_JSON = {
    "terminalId": "3f9c2a71",
    "session": "cao-shop",
    "profile": "mock_developer",
    "provider": "mock",
    "status": "idle",
    "workingDirectory": "/home/ana/src/shop",
    "createdAt": "2025-11-21T11:04:05+00:00",
}
PROFILE_INFO_JSON = {
    "name": "mock_developer",
    "description": "Test developer agent.",
    "provider": "mock",
    "source": "builtin",
}

# No integral floats (600.0): JSON Schema counts them as integers, wire.structure_params does not.
SAMPLES: list[Any] = [
    None,
    "",
    "text",
    "3f9c2a71",
    *(s.value for s in AgentStatus),
    "last",
    "full",
    "delivered",
    "queued",
    "bogus",
    0,
    7,
    -1,
    2.5,
    1e-3,
    True,
    False,
    [],
    ["x"],
    [1],
    {},
    {"a": 1},
    [AGENT_INFO_JSON],
    [PROFILE_INFO_JSON],
    [{}],
    AGENT_INFO_JSON,
]


def python_accepts(annotation: Any, value: Any) -> bool:
    """Whether a JSON value fits a wire annotation (the meaning the schema must encode)."""
    origin = typing.get_origin(annotation)
    if origin is Union:
        return any(python_accepts(arg, value) for arg in typing.get_args(annotation))
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(python_accepts(item, v) for v in value)
    if origin is dict and typing.get_args(annotation) == (str, Any):
        return isinstance(value, dict)  # a free-form JSON object
    if origin is dict and typing.get_args(annotation) == (str, str):
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if annotation is Any:
        return True  # any JSON value (a workflow's output)
    if annotation is type(None):
        return value is None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, str) and value in {m.value for m in annotation}
    if annotation is str:
        return isinstance(value, str)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if attrs.has(annotation):
        if not isinstance(value, dict):
            return False
        fields = _fields(annotation)
        if any(f.default is attrs.NOTHING and key not in value for key, f in fields.items()):
            return False
        return all(python_accepts(f.type, value[key]) for key, f in fields.items() if key in value)
    raise AssertionError(f"no JSON meaning known for annotation {annotation!r}")


@wire_class
def test_property_types_match_annotations(cls: type) -> None:
    properties = DEFS[_name(cls)]["properties"]
    mismatches = []
    for key, field in _fields(cls).items():
        check = validator_for(properties[key], formats=False)
        for value in SAMPLES:
            in_schema = check.is_valid(value)
            in_python = python_accepts(field.type, value)
            if in_schema != in_python:
                mismatches.append(f"{key}={value!r}: schema {in_schema}, python {in_python}")
    assert not mismatches


@pytest.mark.parametrize("cls", PARAMS_CLASSES, ids=_name)
def test_structure_params_agrees_with_schema_per_property(cls: type) -> None:
    """The server's own params check (wire.structure_params) and the schema agree, value by value."""
    properties = DEFS[_name(cls)]["properties"]
    fields = _fields(cls)
    base = {key: MINIMAL_VALUES[key] for key, f in fields.items() if f.default is attrs.NOTHING}
    mismatches = []
    for key in fields:
        check = validator_for(properties[key], formats=False)
        for value in SAMPLES:
            try:
                wire.structure_params({**base, key: value}, cls)
                in_python = True
            except wire.ParamsError as exc:
                in_python = False
                assert f"'{key}'" in str(exc), f"error does not name the field: {exc}"
            if check.is_valid(value) != in_python:
                mismatches.append(f"{key}={value!r}: schema {not in_python}, structure_params {in_python}")
    assert not mismatches


@pytest.mark.parametrize("cls", PARAMS_CLASSES, ids=_name)
def test_missing_required_field_is_rejected_by_both(cls: type) -> None:
    fields = _fields(cls)
    required = [key for key, f in fields.items() if f.default is attrs.NOTHING]
    base = {key: MINIMAL_VALUES[key] for key in required}
    for key in required:
        params = {k: v for k, v in base.items() if k != key}
        if cls is wire.HandoffParams:
            params["profile"] = "mock_developer"
        assert schema_errors(_name(cls), params), f"schema accepts {_name(cls)} without {key}"
        with pytest.raises(wire.ParamsError, match=f"'{key}'"):
            wire.structure_params(params, cls)


def test_handoff_needs_exactly_one_of_profile_and_terminal_id() -> None:
    ok = [
        {"message": "m", "profile": "mock_developer"},
        {"message": "m", "terminalId": "3f9c2a71"},
        {"message": "m", "profile": "mock_developer", "terminalId": None},
        {"message": "m", "profile": None, "terminalId": "3f9c2a71"},
    ]
    bad = [
        {"message": "m"},
        {"message": "m", "profile": None, "terminalId": None},
        {"message": "m", "profile": "mock_developer", "terminalId": "3f9c2a71"},
    ]
    for params in ok:
        assert not schema_errors("HandoffParams", params), params
    for params in bad:
        assert schema_errors("HandoffParams", params), params


# ---- status values and errors --------------------------------------------------------------


def test_status_enum_is_agent_status() -> None:
    enum_values = DEFS["AgentStatus"]["enum"]
    assert enum_values == [s.value for s in AgentStatus]
    assert len(enum_values) == 8


def test_spec_status_table_is_agent_status() -> None:
    section = SPEC_TEXT.split("## 4.", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert rows == [s.value for s in AgentStatus]


SIDECAR_ERRORS = (errors.CaoError, *errors.ERROR_CLASSES)
STANDARD_CODES = {
    "parseError": -32700,
    "invalidRequest": -32600,
    "methodNotFound": -32601,
    "invalidParams": -32602,
    "internalError": -32603,
    "requestCancelled": -32800,
}


def test_error_table_has_every_error_class_with_its_code() -> None:
    table = SCHEMA["errors"]
    for cls in SIDECAR_ERRORS:
        assert cls.name in table, f"{cls.__name__} ({cls.name}) missing from schema errors"
        assert table[cls.name]["code"] == cls.code, cls.name


def test_error_table_has_no_sidecar_code_python_does_not_know() -> None:
    table = SCHEMA["errors"]
    python = {cls.name: cls.code for cls in SIDECAR_ERRORS}
    sidecar = {name: e["code"] for name, e in table.items() if e["origin"] == "sidecar"}
    standard = {name: e["code"] for name, e in table.items() if e["origin"] != "sidecar"}
    # invalidParams is both: the JSON-RPC code, raised by the core as InvalidRequest.
    assert {**sidecar, **{k: v for k, v in standard.items() if k in python}} == python
    assert standard == STANDARD_CODES
    for name, entry in table.items():
        assert isinstance(entry["meaning"], str) and entry["meaning"], name


def test_error_codes_are_distinct() -> None:
    codes = [e["code"] for e in SCHEMA["errors"].values()]
    assert len(codes) == len(set(codes))
    python_codes = [cls.code for cls in SIDECAR_ERRORS]
    assert len(python_codes) == len(set(python_codes))


def test_spec_error_table_matches_schema() -> None:
    section = SPEC_TEXT.split("## 8.", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (-\d+) \| `(\w+)` \|", section, re.M)
    assert {name: int(code) for code, name in rows} == {name: e["code"] for name, e in SCHEMA["errors"].items()}


@pytest.mark.parametrize("cls", SIDECAR_ERRORS, ids=lambda c: c.__name__)
def test_error_data_of_each_error_class_fits_the_schema(cls: type[errors.CaoError]) -> None:
    bare = cls("it failed")
    assert bare.data == {"kind": cls.name}
    assert not schema_errors("ErrorData", to_json(bare.data))
    full = cls("it failed", terminalId="3f9c2a71", screenTail="> echo hi\nhi\n", ignored=None)
    assert not schema_errors("ErrorData", to_json(full.data))


# ---- realistic instances, unstructured -----------------------------------------------------

S = AgentStatus
_FLOW_RUN = wire.FlowRunInfo(
    run_id="42",
    flow="nightly-review",
    trigger="schedule",
    status="completed",
    started_at="2025-11-21T02:00:00.125+01:00",
    scheduled_at="2025-11-21T02:00:00+01:00",
    ended_at="2025-11-21T02:04:10.500+01:00",
    terminal_id="5ad0b7c3",
    output="No new problems.",
)
_FLOW = wire.FlowInfo(
    name="nightly-review",
    schedule="0 2 * * *",
    profile="reviewer",
    enabled=True,
    scope="workspace",
    path="/home/ana/src/shop/.cao/flows/nightly-review.md",
    description="Review yesterday's commits.",
    working_directory="/home/ana/src/shop",
    has_gate=True,
    next_run_at="2025-11-22T02:00:00+01:00",
    last_run=_FLOW_RUN,
)
_TRUST = wire.TrustInfo(
    path="/home/ana/src/shop",
    trusted=False,
    source="none",
    has_config=True,
    held_back=["flow nightly-review: not scheduled, its gate does not run", ".cao/providers/x.yaml: not loaded"],
)
_WORKTREE = wire.WorktreeInfo(
    terminal_id="e2a94c10",
    profile="developer",
    session="cao-shop",
    repository="/home/ana/src/shop",
    path="/home/ana/.local/state/cao-sidecar/worktrees/shop-e2a94c10",
    branch="cao/developer-e2a94c10",
    base="main",
    base_commit="9e1f2c4a7b0d3e5f6a8b9c0d1e2f3a4b5c6d7e8f",
    state="kept",
    head="b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8",
    commits=["b7a6c5d Round the total once"],
    files=["src/cart.py"],
    diff_stat=" src/cart.py | 2 +-",
    committed_leftovers=True,
    dirty=False,
    copied_files=[".env"],
    notes=["local.cfg: not copied (not found)"],
    agent_status=S.COMPLETED,
)

WIRE_EXAMPLES: dict[type, Any] = {
    wire.WorktreeInfo: _WORKTREE,
    wire.ListWorktreesParams: wire.ListWorktreesParams(session="cao-shop"),
    wire.ListWorktreesResult: wire.ListWorktreesResult(worktrees=[_WORKTREE]),
    wire.MergeWorktreeParams: wire.MergeWorktreeParams(terminal_id="e2a94c10", strategy="rebase"),
    wire.MergeWorktreeResult: wire.MergeWorktreeResult(
        merged=False, message="conflicts in 1 file(s)", worktree=_WORKTREE, conflicts=["src/cart.py"]
    ),
    wire.DiscardWorktreeParams: wire.DiscardWorktreeParams(terminal_id="e2a94c10"),
    wire.DiscardWorktreeResult: wire.DiscardWorktreeResult(worktree=_WORKTREE),
    wire.SpawnParams: wire.SpawnParams(
        profile="mock_developer",
        provider="mock",
        working_directory="/home/ana/src/shop",
        session="cao-shop",
        name="dev-1",
    ),
    wire.SpawnResult: wire.SpawnResult(
        terminal_id="3f9c2a71",
        session="cao-shop",
        profile="mock_developer",
        provider="mock",
        status=S.IDLE,
        name="dev-1",
    ),
    wire.HandoffParams: wire.HandoffParams(
        message="Review src/cart.py;\nlist the bugs $(not a shell)",
        profile="mock_reviewer",
        timeout_seconds=300.0,
        keep=True,
        work_done_token="handoff-3",
    ),
    wire.HandoffResult: wire.HandoffResult(
        terminal_id="c81d4f0e", status=S.COMPLETED, output="1. apply_discount() subtracts twice."
    ),
    wire.AssignParams: wire.AssignParams(
        profile="mock_developer",
        message="Add a unit test for total().",
        working_directory="/home/ana/src/shop",
        keep=False,
    ),
    wire.AssignResult: wire.AssignResult(terminal_id="5ad0b7c3"),
    wire.SendMessageParams: wire.SendMessageParams(
        terminal_id="5ad0b7c3", message="Also cover the empty cart.", sender="3f9c2a71"
    ),
    wire.SendMessageResult: wire.SendMessageResult(message_id="msg-0007", state="queued"),
    wire.ListAgentsParams: wire.ListAgentsParams(session="cao-shop"),
    wire.AgentInfo: wire.AgentInfo(
        terminal_id="3f9c2a71",
        session="cao-shop",
        profile="mock_developer",
        provider="mock",
        status=S.WAITING_USER_ANSWER,
        working_directory="/home/ana/src/shop",
        created_at="2025-11-21T11:04:05.218+00:00",
        name="dev-1",
        prompt=wire.PromptInfo(id="3f9c2a71:1", text="Delete it?", choices=["Yes", "No"]),
        attach_command=["env", "-u", "TMUX", "tmux", "-S", "/tmp/tmux-1000/cao", "new-session", "-t", "=cao"],
    ),
    wire.ListAgentsResult: wire.ListAgentsResult(
        agents=[
            wire.AgentInfo(
                terminal_id="3f9c2a71",
                session="cao-shop",
                profile="mock_developer",
                provider="mock",
                status=S.IDLE,
                working_directory="/home/ana/src/shop",
                created_at="2025-11-21T11:04:05.218+00:00",
                name="dev-1",
            ),
            wire.AgentInfo(
                terminal_id="5ad0b7c3",
                session="cao-shop",
                profile="mock_reviewer",
                provider="mock",
                status=S.PROCESSING,
                working_directory="/home/ana/src/shop",
                created_at="2025-11-21T11:06:41.907+00:00",
            ),
        ]
    ),
    wire.GetOutputParams: wire.GetOutputParams(terminal_id="3f9c2a71", mode="full"),
    wire.GetOutputResult: wire.GetOutputResult(output="mock agent ready\n> echo hello\nhello\n> "),
    wire.TerminateParams: wire.TerminateParams(terminal_id="3f9c2a71"),
    wire.TerminateResult: wire.TerminateResult(),
    wire.ShutdownParams: wire.ShutdownParams(terminate_agents=True),
    wire.ShutdownResult: wire.ShutdownResult(),
    wire.ListProfilesParams: wire.ListProfilesParams(),
    wire.ProfileInfo: wire.ProfileInfo(
        name="mock_reviewer", description="Test reviewer agent.", provider="mock", source="builtin"
    ),
    wire.ListProfilesResult: wire.ListProfilesResult(
        profiles=[
            wire.ProfileInfo(
                name="mock_developer",
                description="Test developer agent.",
                provider="mock",
                source="builtin",
            ),
            wire.ProfileInfo(
                name="mock_reviewer",
                description="Test reviewer agent.",
                provider="mock",
                source="/home/ana/src/shop/.cao/profiles/mock_reviewer.md",
            ),
        ]
    ),
    wire.InstallProfileParams: wire.InstallProfileParams(profile="/home/ana/agents/dba.md", overwrite=True),
    wire.InstallProfileResult: wire.InstallProfileResult(
        name="dba",
        path="/home/ana/.config/cao-sidecar/agents/dba.md",
        replaced=False,
        warnings=["line 5: unknown field 'colour' is ignored"],
    ),
    wire.FlowRunInfo: _FLOW_RUN,
    wire.FlowInfo: _FLOW,
    wire.ListFlowsParams: wire.ListFlowsParams(),
    wire.ListFlowsResult: wire.ListFlowsResult(flows=[_FLOW]),
    wire.RunFlowParams: wire.RunFlowParams(name="nightly-review"),
    wire.RunFlowResult: wire.RunFlowResult(run=_FLOW_RUN),
    wire.SetFlowEnabledParams: wire.SetFlowEnabledParams(name="nightly-review", enabled=False),
    wire.SetFlowEnabledResult: wire.SetFlowEnabledResult(flow=_FLOW),
    wire.StatsParams: wire.StatsParams(),
    wire.StatsResult: wire.StatsResult(
        agents=2, live_agents=2, tasks=9, credentials=2, queued_messages=0, open_files=31, rss_bytes=93454336
    ),
    wire.DoctorParams: wire.DoctorParams(),
    wire.DoctorResult: wire.DoctorResult(
        tmux={"found": True, "path": "/usr/bin/tmux", "version": "3.3a"},
        providers=[{"provider": "codex", "found": False, "install": "npm install -g @openai/codex", "ok": False}],
        editors=[{"editor": "Emacs", "binary": "emacs", "found": False, "path": None}],
        ok=True,
    ),
    wire.GetLogParams: wire.GetLogParams(terminal_id="3f9c2a71", since=1795600000.5, limit=50),
    wire.GetLogResult: wire.GetLogResult(
        events=[{"at": 1795600000.2, "event": "answer", "terminalId": "3f9c2a71", "text": "hi"}],
        output="\u203a echo hi\n\u25cf hi\n",
    ),
    wire.ProfilesChangedNotification: wire.ProfilesChangedNotification(
        profiles=[
            wire.ProfileInfo(
                name="reviewer",
                description="Reviews diffs.",
                provider="claude_code",
                source="/home/ana/src/shop/.cao/agents/reviewer.md",
                scope="workspace",
                path="/home/ana/src/shop/.cao/agents/reviewer.md",
                model="opus",
                tags=["review"],
                shadows=["/usr/lib/python3/site-packages/cao_sidecar/agent_profiles/reviewer.md"],
                stale=True,
            )
        ]
    ),
    wire.FlowsChangedNotification: wire.FlowsChangedNotification(flows=[_FLOW]),
    wire.AgentStatusNotification: wire.AgentStatusNotification(
        terminal_id="5ad0b7c3",
        profile="mock_developer",
        status=S.WAITING_USER_ANSWER,
        previous_status=S.PROCESSING,
        session="cao-shop",
        prompt=wire.PromptInfo(id="5ad0b7c3:2", text="Overwrite?", choices=[], detail=""),
    ),
    wire.PromptInfo: wire.PromptInfo(
        id="3f9c2a71:1", text="Do you want to proceed?", choices=["Yes", "No"], detail="Bash command rm -rf build"
    ),
    wire.AnswerParams: wire.AnswerParams(terminal_id="3f9c2a71", answer="Yes", prompt_id="3f9c2a71:1"),
    wire.AnswerResult: wire.AnswerResult(terminal_id="3f9c2a71", prompt_id="3f9c2a71:1", typed="key 1"),
    wire.OpenTerminalNotification: wire.OpenTerminalNotification(
        terminal_id="3f9c2a71",
        attach_command=[
            "env",
            "-u",
            "TMUX",
            "/usr/bin/tmux",
            "-u",
            "-S",
            "/tmp/tmux-1000/cao",
            "new-session",
            "-t",
            "=cao",
            ";",
            "select-window",
            "-t",
            "%3",
        ],
    ),
    wire.TrustInfo: _TRUST,
    wire.GetTrustParams: wire.GetTrustParams(),
    wire.GetTrustResult: wire.GetTrustResult(folders=[_TRUST]),
    wire.SetTrustParams: wire.SetTrustParams(trusted=True, path="/home/ana/src/shop", persist=False),
    wire.SetTrustResult: wire.SetTrustResult(
        folders=[wire.TrustInfo(path="/home/ana/src/shop", trusted=True, source="editor", has_config=True)]
    ),
    wire.TrustChangedNotification: wire.TrustChangedNotification(
        folders=[wire.TrustInfo(path="/home/ana/src/shop", trusted=True, source="store", has_config=True)]
    ),
    wire.WorkerCompletedNotification: wire.WorkerCompletedNotification(
        terminal_id="e2a94c10",
        profile="mock_developer",
        status=S.EXITED,
        output="",
        error="agent e2a94c10 exited during its turn",
    ),
}

# Workflows (cao_sidecar.workflows).
_WF_RUN = wire.WorkflowRunInfo(
    run_id="f6de43f26f7a",
    name="review",
    path="/home/ana/src/shop/.cao/workflows/review.py",
    status="running",
    trigger="client",
    started_at="2025-11-21T10:00:00.125+01:00",
    inputs={"topic": "cart"},
    steps=[
        wire.WorkflowStepInfo(
            key=0, profile="developer", task="plan cart", status="completed", terminal_id="5ad0b7c3", answer="a plan", attempts=1
        ),
        wire.WorkflowStepInfo(
            key=1, profile="reviewer", task="review: a plan", status="sent", terminal_id="c81d4f0e", attempts=1
        ),
    ],
)
WIRE_EXAMPLES.update(
    {
        wire.WorkflowInfo: wire.WorkflowInfo(
            name="review",
            path="/home/ana/src/shop/.cao/workflows/review.py",
            kind="python",
            scope="workspace",
            description="Plan, review, sum up.",
        ),
        wire.WorkflowStepInfo: _WF_RUN.steps[0],
        wire.WorkflowRunInfo: _WF_RUN,
        wire.ListWorkflowsParams: wire.ListWorkflowsParams(),
        wire.ListWorkflowsResult: wire.ListWorkflowsResult(
            workflows=[
                wire.WorkflowInfo(
                    name="b", path="/b.yaml", kind="yaml", scope="user", problems=["step 1: `task` must be non-empty text"]
                )
            ]
        ),
        wire.RunWorkflowParams: wire.RunWorkflowParams(name="review", inputs={"topic": "cart"}, wait=True),
        wire.RunWorkflowResult: wire.RunWorkflowResult(run=_WF_RUN),
        wire.ResumeWorkflowParams: wire.ResumeWorkflowParams(run_id="f6de43f26f7a", force=True),
        wire.ResumeWorkflowResult: wire.ResumeWorkflowResult(run=_WF_RUN),
        wire.ListWorkflowRunsParams: wire.ListWorkflowRunsParams(limit=5),
        wire.ListWorkflowRunsResult: wire.ListWorkflowRunsResult(runs=[_WF_RUN]),
        wire.GetWorkflowRunParams: wire.GetWorkflowRunParams(run_id="f6de43f26f7a"),
        wire.GetWorkflowRunResult: wire.GetWorkflowRunResult(run=_WF_RUN),
        wire.WorkflowStepParams: wire.WorkflowStepParams(
            run_id="f6de43f26f7a", key=2, profile="developer", task="sum up", worktree=True, timeout_seconds=90.5
        ),
        wire.WorkflowStepResult: wire.WorkflowStepResult(answer="a plan", terminal_id="5ad0b7c3", replayed=True),
        wire.CancelWorkflowParams: wire.CancelWorkflowParams(run_id="f6de43f26f7a"),
        wire.CancelWorkflowResult: wire.CancelWorkflowResult(run=_WF_RUN),
        wire.WorkflowRunNotification: wire.WorkflowRunNotification(
            run_id="f6de43f26f7a",
            name="review",
            path="/p/review.py",
            status="completed",
            trigger="flow",
            started_at="2025-11-21T10:00:00.125+01:00",
            ended_at="2025-11-21T10:03:00+01:00",
            output={"summary": "ok", "n": [1, 2]},
        ),
    }
)

# Hosts (issue 19): cao/stats says how each host's link and agents are.
_HOST = wire.HostStats(name="box1", state="reconnecting", agents=3, live_agents=2, connects=2, reason="the link ended")
WIRE_EXAMPLES.update(
    {
        wire.HostStats: _HOST,
    }
)
WIRE_EXAMPLES[wire.StatsResult] = wire.StatsResult(
    agents=2, live_agents=2, tasks=9, credentials=2, queued_messages=0, open_files=31, rss_bytes=93454336, hosts=[_HOST]
)

# Variants worth checking too: all defaults, nulls where allowed.
WIRE_VARIANTS: list[Any] = [
    wire.SpawnParams(profile="developer", worktree=True, base_ref="main"),
    wire.HandoffResult(terminal_id="e2a94c10", status=S.COMPLETED, output="done", worktree=_WORKTREE),
    wire.WorkerCompletedNotification(
        terminal_id="e2a94c10", profile="developer", status=S.COMPLETED, output="done", worktree=_WORKTREE
    ),
    wire.WorktreeInfo(
        terminal_id="e2a94c10",
        profile="developer",
        session="cao",
        repository="/r",
        path="/w",
        branch="b",
        base="main",
        base_commit="9e1f2c4",
        state="active",
    ),
    wire.MergeWorktreeResult(merged=True, message="merged", worktree=_WORKTREE, commit="0a1b2c3"),
    wire.SpawnParams(profile="mock_developer"),
    wire.HandoffParams(message="echo hi", terminal_id="3f9c2a71", work_done_token=17),
    wire.AssignParams(profile="mock_developer", message="echo hi"),
    wire.SendMessageParams(terminal_id="3f9c2a71", message="hi"),
    wire.ListAgentsParams(),
    wire.GetOutputParams(terminal_id="3f9c2a71"),
    wire.SpawnResult(
        terminal_id="3f9c2a71",
        session="cao-shop",
        profile="mock_developer",
        provider="mock",
        status=S.IDLE,
    ),
    wire.ListAgentsResult(agents=[]),
    wire.ListProfilesResult(profiles=[]),
    wire.AgentStatusNotification(terminal_id="5ad0b7c3", profile="mock_developer", status=S.STARTING, previous_status=None),
    wire.WorkerCompletedNotification(terminal_id="5ad0b7c3", profile="mock_developer", status=S.COMPLETED, output="done: x"),
    wire.InstallProfileParams(profile="reviewer"),
    wire.InstallProfileResult(name="reviewer", path="/home/ana/.config/cao-sidecar/agents/reviewer.md", replaced=True),
    wire.FlowRunInfo(
        run_id="7",
        flow="triage",
        trigger="manual",
        status="skipped",
        started_at="2025-11-21T09:00:00.001+00:00",
        reason="the gate said no: nothing new",
    ),
    wire.FlowInfo(
        name="triage",
        schedule="@hourly",
        profile="developer",
        enabled=False,
        scope="user",
        path="/home/ana/.config/cao-sidecar/flows/triage.md",
    ),
    wire.ListFlowsResult(flows=[]),
    wire.ProfilesChangedNotification(profiles=[]),
    wire.AnswerParams(terminal_id="3f9c2a71", answer="free text"),
    wire.PromptInfo(id="3f9c2a71:1", text="Proceed?"),
    wire.SetTrustParams(trusted=False),
    wire.FlowInfo(
        name="x",
        schedule="* * * * *",
        profile="developer",
        enabled=True,
        scope="workspace",
        path="/home/ana/src/clone/.cao/flows/x.md",
        has_gate=True,
        untrusted=True,
    ),
    wire.ProfileInfo(
        name="developer",
        description="Not in force.",
        provider="claude_code",
        source="/home/ana/src/clone/.cao/agents/developer.md",
        scope="workspace",
        untrusted=True,
    ),
]


def test_every_wire_class_has_an_example() -> None:
    assert set(WIRE_EXAMPLES) == set(wire.WIRE_CLASSES)


ALL_INSTANCES = list(WIRE_EXAMPLES.values()) + WIRE_VARIANTS


def _instance_id(obj: Any) -> str:
    return f"{type(obj).__name__}-{ALL_INSTANCES.index(obj)}"


@pytest.mark.parametrize("obj", ALL_INSTANCES, ids=_instance_id)
def test_unstructured_instance_validates(obj: Any) -> None:
    data = to_json(wire.unstructure(obj))
    assert not schema_errors(type(obj).__name__, data, strict=True)
    # Every field is on the wire (defaults too), under its camelCase name.
    assert set(data) == set(_fields(type(obj)))


@pytest.mark.parametrize("obj", ALL_INSTANCES, ids=_instance_id)
def test_unstructured_instance_structures_back(obj: Any) -> None:
    cls = type(obj)
    data = to_json(wire.unstructure(obj))
    if cls in PARAMS_CLASSES:
        assert wire.structure_params(data, cls) == obj
    assert wire.converter.structure(data, cls) == obj


def test_params_may_be_omitted_when_nothing_is_required() -> None:
    for cls in PARAMS_CLASSES:
        if all(f.default is not attrs.NOTHING for f in attrs.fields(cls)):
            assert wire.structure_params(None, cls) == cls()
            assert not schema_errors(_name(cls), {})


# ---- the examples in spec.md ---------------------------------------------------------------

EXAMPLE_KINDS = ("request", "response", "notification")
LSP_REQUESTS = {"initialize", "shutdown"}
LSP_NOTIFICATIONS = {"initialized", "exit", "$/cancelRequest", "$/progress"}


@attrs.define
class SpecExample:
    kind: str
    line: int
    message: dict[str, Any]

    @property
    def ident(self) -> str:
        label = self.message.get("method") or f"response-{self.message.get('id')}"
        return f"L{self.line}-{self.kind}-{label}"


def _parse_spec_examples() -> list[SpecExample]:
    found = []
    pattern = re.compile(r"^```json[ \t]*([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
    for match in pattern.finditer(SPEC_TEXT):
        tag = match.group(1).strip()
        line = SPEC_TEXT.count("\n", 0, match.start()) + 1
        assert tag in EXAMPLE_KINDS, f"spec.md line {line}: json block tagged {tag!r}"
        try:
            message = json.loads(match.group(2))
        except json.JSONDecodeError as exc:  # pragma: no cover - reported as a failure
            raise AssertionError(f"spec.md line {line}: invalid JSON: {exc}") from exc
        found.append(SpecExample(tag, line, message))
    return found


SPEC_EXAMPLES = _parse_spec_examples()
REQUESTS = [e for e in SPEC_EXAMPLES if e.kind == "request"]
RESPONSES = [e for e in SPEC_EXAMPLES if e.kind == "response"]
NOTIFICATION_EXAMPLES = [e for e in SPEC_EXAMPLES if e.kind == "notification"]


def response_to(request: SpecExample) -> SpecExample:
    later = [e for e in RESPONSES if e.line > request.line and e.message.get("id") == request.message["id"]]
    assert later, f"spec.md line {request.line}: no response example for request id {request.message['id']}"
    return later[0]


def request_of(response: SpecExample) -> SpecExample:
    earlier = [e for e in REQUESTS if e.line < response.line and e.message.get("id") == response.message.get("id")]
    assert earlier, f"spec.md line {response.line}: response to no request above it"
    return earlier[-1]


def test_spec_has_examples() -> None:
    assert len(REQUESTS) >= len(wire.METHODS)
    assert all(e.message.get("jsonrpc") == "2.0" for e in SPEC_EXAMPLES)


@pytest.mark.parametrize("method", sorted(wire.METHODS))
def test_spec_has_a_successful_exchange_per_method(method: str) -> None:
    exchanges = [(r, response_to(r)) for r in REQUESTS if r.message["method"] == method]
    assert any("result" in resp.message for _req, resp in exchanges), f"no example for {method}"


@pytest.mark.parametrize("method", sorted(wire.NOTIFICATIONS))
def test_spec_has_an_example_per_notification(method: str) -> None:
    assert any(e.message["method"] == method for e in NOTIFICATION_EXAMPLES)


def test_spec_has_initialize_exchange() -> None:
    assert any(r.message["method"] == "initialize" for r in REQUESTS)


def test_request_ids_are_unique() -> None:
    ids = [r.message["id"] for r in REQUESTS]
    assert len(ids) == len(set(ids))


def _error_code(response: SpecExample) -> int | None:
    error = response.message.get("error")
    return error["code"] if error else None


@pytest.mark.parametrize("example", REQUESTS, ids=lambda e: e.ident)
def test_spec_request(example: SpecExample) -> None:
    message = example.message
    method = message["method"]
    assert isinstance(message["id"], (int, str)) and not isinstance(message["id"], bool)
    response = response_to(example)
    if method in LSP_REQUESTS:
        if method == "initialize":
            assert not schema_errors("InitializeParams", message["params"])
        return
    if method not in wire.METHODS:
        assert _error_code(response) == -32601, f"{method} is not a method; answer must be -32601"
        return
    params_cls, _ = wire.METHODS[method]
    params = message.get("params")
    if _error_code(response) == -32602:
        # A bad-params example: both the schema and the server's check refuse it, the same way.
        assert schema_errors(_name(params_cls), params if params is not None else {})
        with pytest.raises(wire.ParamsError) as raised:
            wire.structure_params(params, params_cls)
        assert str(raised.value) == response.message["error"]["message"]
        return
    assert not schema_errors(_name(params_cls), params if params is not None else {}, strict=True)
    wire.structure_params(params, params_cls)


@pytest.mark.parametrize("example", RESPONSES, ids=lambda e: e.ident)
def test_spec_response(example: SpecExample) -> None:
    message = example.message
    assert ("result" in message) != ("error" in message)
    request = request_of(example)
    method = request.message["method"]
    if "error" in message:
        error = message["error"]
        assert not schema_errors("ResponseError", error)
        table = {e["code"]: (name, e) for name, e in SCHEMA["errors"].items()}
        assert error["code"] in table, f"code {error['code']} is not in the errors table"
        name, entry = table[error["code"]]
        if entry["origin"] == "sidecar" or error["code"] == -32602:
            assert not schema_errors("ErrorData", error["data"])
            assert error["data"]["kind"] == name
        return
    result = message["result"]
    if method == "initialize":
        assert not schema_errors("InitializeResult", result)
        cao = result["capabilities"]["experimental"]["cao"]
        assert set(cao["methods"]) == set(wire.METHODS)
        assert set(cao["notifications"]) == set(wire.NOTIFICATIONS)
        assert "mock" in cao["providers"]
        return
    if method == "shutdown":
        assert result is None
        return
    _, result_cls = wire.METHODS[method]
    assert not schema_errors(_name(result_cls), result, strict=True)
    # A client structuring the answer with the wire types gets it back unchanged.
    structured = wire.converter.structure(result, result_cls)
    assert to_json(wire.unstructure(structured)) == {key: result.get(key, _default(f)) for key, f in _fields(result_cls).items()}


@pytest.mark.parametrize("example", NOTIFICATION_EXAMPLES, ids=lambda e: e.ident)
def test_spec_notification(example: SpecExample) -> None:
    message = example.message
    assert "id" not in message
    method = message["method"]
    params = message.get("params")
    if method in wire.NOTIFICATIONS:
        cls = wire.NOTIFICATIONS[method]
        assert not schema_errors(_name(cls), params, strict=True)
        structured = wire.converter.structure(params, cls)
        assert to_json(wire.unstructure(structured)) == params
        return
    assert method in LSP_NOTIFICATIONS, f"unknown notification {method}"
    if method == "$/progress":
        assert validator_for({"$ref": "#/$defs/ProgressToken"}).is_valid(params["token"])
        assert params["value"]["kind"] in ("begin", "report", "end")
        tokens = [
            r.message["params"].get("workDoneToken")
            for r in REQUESTS
            if r.line < example.line and isinstance(r.message.get("params"), dict)
        ]
        assert params["token"] in tokens, "progress on a token no request sent"
    if method == "$/cancelRequest":
        cancelled = [r for r in REQUESTS if r.message["id"] == params["id"] and r.line < example.line]
        assert cancelled and _error_code(response_to(cancelled[-1])) == -32800
