"""Workspace trust in the Emacs client (clients/emacs/cao-trust.el + cao.el), ERT against the real
sidecar: clients/emacs/test/cao-trust-test.el on a folder laid out like a hostile clone (a `.cao/`
and its own `.venv/bin/cao-sidecar`, which leaves a marker file when run).

The client-only tests (tag cao-trust) must pass; those that need the sidecar's side of trust
(tag cao-trust-core: cao/setTrust, `cao-sidecar trust`) skip until the sidecar has it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from editor_trust import has_trust_cli, hostile_folder, path_sidecar
from test_emacs import TEST_FILE, _emacs, ert_env, run_ert

TRUST_TEST_FILE = TEST_FILE.parent / "cao-trust-test.el"


def _env(tmp_base: Path) -> dict[str, str]:
    env = ert_env(tmp_base)
    base = tmp_base / "trust"
    hostile_folder(base / "hostile", base / "hostile.marker")
    path_sidecar(tmp_base / "bin")
    env.update(
        CAO_TEST_TRUST_BASE=str(base),
        CAO_TEST_TRUST_BIN=str(tmp_base / "bin"),
        CAO_TEST_TRUST_CLI="1" if has_trust_cli(env) else "0",
    )
    return env


def _counts(output: str) -> tuple[int, int, int]:
    ran = re.search(r"Ran (\d+) tests, (\d+) results as expected, (\d+) unexpected(?:, (\d+) skipped)?", output)
    assert ran, output[-5000:]
    return int(ran.group(1)), int(ran.group(3)), int(ran.group(4) or 0)


def test_emacs_trust_client_side(tmp_base: Path) -> None:
    output = run_ert(_emacs(), _env(tmp_base), [TEST_FILE, TRUST_TEST_FILE], "(tag cao-trust)")
    total, unexpected, skipped = _counts(output)
    assert total >= 5 and unexpected == 0 and skipped == 0, output[-5000:]
    assert not (tmp_base / "trust" / "hostile.marker").exists()


def test_emacs_trust_with_the_sidecar(tmp_base: Path) -> None:
    output = run_ert(_emacs(), _env(tmp_base), [TEST_FILE, TRUST_TEST_FILE], "(tag cao-trust-core)")
    total, unexpected, skipped = _counts(output)
    assert total == 3 and unexpected == 0, output[-5000:]
    if skipped:
        reasons = sorted(set(re.findall(r"SKIP-REASON: ([^\"\n]+)", output)))
        pytest.skip(f"{skipped} of {total} ERT tests skipped: {'; '.join(reasons)} (comes with the trust-core branch)")
