"""The screen corpus: every captured or built screen of every real-CLI provider, read right.

tests/fixtures/screens/corpus.tsv names each screen file with its CLI, version, origin (`real`:
captured here; `ext`: captured by others, see its source; `built`: written by hand), the status
it shows and its source. Every screen must be classified as listed: a rule change that reads one
screen wrong fails here (bench/bench_classify.py prints the per-provider accuracy).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import builtin_providers, get_provider

SCREENS = Path(__file__).parent / "fixtures" / "screens"
ORIGINS = {"real", "ext", "built"}


def corpus() -> list[dict[str, str]]:
    rows = []
    for line in (SCREENS / "corpus.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        file, cli, version, origin, status, source = line.split("\t")
        rows.append({"file": file, "cli": cli, "version": version, "origin": origin, "status": status, "source": source})
    return rows


ROWS = corpus()


def test_every_screen_is_listed_once() -> None:
    listed = [row["file"] for row in ROWS]
    assert len(listed) == len(set(listed))
    on_disk = sorted(p.name for p in SCREENS.glob("*.txt") if not p.name.startswith("mock-"))
    assert sorted(listed) == on_disk


def test_rows_are_well_formed() -> None:
    providers = set(builtin_providers())
    statuses = {s.value for s in AgentStatus}
    for row in ROWS:
        assert row["cli"] in providers and row["file"].startswith(row["cli"] + "-" + row["origin"] + "-"), row
        assert row["origin"] in ORIGINS and row["status"] in statuses and row["version"] and row["source"], row


def test_every_provider_with_a_real_cli_has_real_screens_of_several_versions() -> None:
    versions: dict[str, set[str]] = {}
    for row in ROWS:
        if row["origin"] != "built" and row["version"] not in ("?", "-"):
            versions.setdefault(row["cli"], set()).add(row["version"])
    for cli in ("claude_code", "codex", "opencode", "kiro_cli"):
        assert len(versions.get(cli, ())) >= 2, (cli, versions.get(cli))


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_screen_is_read_right(row: dict[str, str]) -> None:
    text = (SCREENS / row["file"]).read_text(encoding="utf-8")
    result = get_provider(row["cli"]).classify_rule(text)
    assert result.status.value == row["status"], f"{row['file']} ({row['version']}, {row['source']}): {result.rule}"
