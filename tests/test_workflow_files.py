"""Workflow files without a sidecar: finding them, trust, the checks (nothing imported or run),
the YAML shape, and the journal's own rules."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cao_sidecar.core.errors import CaoError, InvalidRequest
from cao_sidecar.storage.workflows import WorkflowStore
from cao_sidecar.workflows import catalog
from cao_sidecar.workflows.diagnostics import WorkflowFiles


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / ".cao" / "workflows" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_python_is_parsed_never_run(tmp_path):
    marker = tmp_path / "ran"
    text = f"open({str(marker)!r}, 'w').write('x')\nasync def main(topic):\n    return topic\n"
    assert catalog.check_python(text) == ("", [])
    assert not marker.exists()
    _description, problems = catalog.check_python("x = 1\ndef main(:\n")
    assert len(problems) == 1 and problems[0].startswith("line 2: syntax error")
    assert catalog.check_python('"""Sum up."""\nx = 1\n') == (
        "Sum up.",
        ["line 1: no top-level `main` function (async def main(...): ... return the run's output)"],
    )


@pytest.mark.parametrize(
    "text, problem",
    [
        ("steps: []\n", "`steps` must be a non-empty list"),
        ("steps:\n  - {profile: dev}\n", "step 1: `task` must be non-empty text"),
        ("steps:\n  - {profile: dev, task: x, model: y}\n", "step 1: unknown key `model`"),
        ("steps:\n  - {profile: dev, task: 'see {who}'}\n", "step 1: `{who}` is neither an input nor `previous`"),
        ("steps:\n  - parallel: []\n", "step 1: `parallel` must be a non-empty list of steps"),
        ("steps:\n  - {profile: dev, task: x, timeout: -1}\n", "step 1: `timeout` must be a positive number of seconds"),
        ("inputs: 3\nsteps:\n  - {profile: dev, task: x}\n", "`inputs` must be a list of names or a mapping of name: default"),
        ("steps: [\n", "not valid YAML"),
        ("- just a list\n", "the file must be a mapping with `steps:`"),
    ],
)
def test_yaml_shape_problems_are_named(text, problem):
    _description, problems = catalog.check_yaml(text)
    assert any(problem in p for p in problems), problems


def test_yaml_groups_and_placeholders():
    spec, problems = catalog.parse_yaml(
        {
            "inputs": {"topic": "owls"},
            "steps": [{"profile": "a", "task": "{topic}"}, {"parallel": [{"profile": "b", "task": "{previous}"}]}],
        }
    )
    assert problems == [] and spec is not None
    assert [len(group) for group in spec["steps"]] == [1, 1] and spec["inputs"] == {"topic": "owls"}
    # Only {name}: nothing else of str.format reaches the values.
    assert (
        catalog.fill("{topic} {topic.__class__} {0} {previous}", {"topic": "owls", "previous": "p"})
        == "owls {topic.__class__} {0} p"
    )


def test_workspace_workflows_run_only_in_a_trusted_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    project = tmp_path / "clone"
    write(project, "review.py", "async def main():\n    return 1\n")
    listed = catalog.list_workflows(project)
    assert [(w.name, w.scope, w.trusted) for w in listed] == [("review", "workspace", False)]
    with pytest.raises(CaoError) as refused:
        catalog.find(project, "review")
    assert "not trusted" in refused.value.message and "cao-sidecar trust" in refused.value.message

    from cao_sidecar import trust

    trust.grant(project)
    assert catalog.find(project, "review").path == project / ".cao" / "workflows" / "review.py"


def test_the_workspace_shadows_the_users_and_names_are_checked(trusted_tmp_path):
    user = catalog.user_workflows_dir()
    user.mkdir(parents=True)
    (user / "review.yaml").write_text("steps:\n  - {profile: dev, task: x}\n")
    (user / "mine.yaml").write_text("steps:\n  - {profile: dev, task: x}\n")
    write(trusted_tmp_path, "review.py", "async def main():\n    return 1\n")
    found = {w.name: w for w in catalog.list_workflows(trusted_tmp_path)}
    assert found["review"].scope == "workspace" and found["mine"].scope == "user"
    with pytest.raises(InvalidRequest):
        catalog.find(trusted_tmp_path, "../etc/passwd")
    with pytest.raises(CaoError, match="no workflow 'nope'"):
        catalog.find(trusted_tmp_path, "nope")
    write(trusted_tmp_path, "bad.py", "def main(:\n")
    with pytest.raises(InvalidRequest, match="has problems"):
        catalog.find(trusted_tmp_path, "bad")


def test_diagnostics_report_changes_only_and_clear_fixed_files(trusted_tmp_path):
    files = WorkflowFiles([trusted_tmp_path])
    bad = write(trusted_tmp_path, "bad.py", "x = 1\n\ndef main(:\n")
    first = files.scan()
    assert [line for line, _message in first[bad]] == [3]
    assert files.scan() == {}  # nothing changed
    bad.write_text("def main():\n    pass\n")
    assert files.scan() == {bad: []}


def test_the_journal_records_a_step_once(tmp_path):
    store = WorkflowStore(sqlite3.connect(tmp_path / "state.db", isolation_level=None))
    run = store.add_run(name="r", path="/p.py", script_hash="h", inputs={"a": "b"}, trigger="client")
    assert store.running() == [run]
    store.add_pending(run.run_id, 0, "dev", "t-hash", "task")
    store.mark_sent(run.run_id, 0, "w1")
    assert store.step_of_worker("w1").status == "sent"
    assert store.finish(run.run_id, 0, answer="done", error=None) is True
    assert store.finish(run.run_id, 0, answer="again", error=None) is False  # once
    assert store.step(run.run_id, 0).answer == "done"
    # A failed step is journaled pending again when it is sent again; its attempts count.
    store.add_pending(run.run_id, 1, "dev", "h2", "task 2")
    store.mark_sent(run.run_id, 1, "w2")
    store.finish(run.run_id, 1, answer=None, error="boom")
    store.add_pending(run.run_id, 1, "dev", "h2", "task 2")
    store.mark_sent(run.run_id, 1, "w3")
    step = store.step(run.run_id, 1)
    assert (step.status, step.worker_id, step.attempts, step.error) == ("sent", "w3", 2, None)
    store.set_status(run.run_id, "completed", output={"n": 1})
    assert store.run(run.run_id).output == {"n": 1} and store.running() == []
