"""Classification time per screen, per provider (it runs on every output burst of every agent).

Screens: every fixture in tests/fixtures/screens/ for the provider, grown to 200 lines by
putting scrollback above it (earlier turns of the same screen, as a long session has), plus
two adversarial 200-line screens (plain text with no structure, and 200 lines of the
provider's own busy line) that defeat early exits. Reports median, p99 and worst per provider
against the target (median under 1 ms), and answer extraction (once per turn) for reference.

Accuracy: each screen listed in tests/fixtures/screens/corpus.tsv (real captures across versions,
others' public captures, built traps) classified as is, against the status listed there:
screens, right, % per provider (target: at least 95%; tests/test_screen_corpus.py wants all).

    python3 bench/bench_classify.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cao_sidecar.providers import builtin_providers  # noqa: E402

SCREENS = ROOT / "tests" / "fixtures" / "screens"
LINES = 200
TARGET_MS = 1.0
TARGET_ACCURACY = 95.0


def corpus() -> dict[str, list[tuple[str, str]]]:
    """provider → [(screen text, expected status)] from corpus.tsv."""
    out: dict[str, list[tuple[str, str]]] = {}
    for line in (SCREENS / "corpus.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        file, cli, _version, _origin, status, _source = line.split("\t")
        out.setdefault(cli, []).append(((SCREENS / file).read_text(encoding="utf-8"), status))
    return out


def accuracy(provider, screens: list[tuple[str, str]]) -> tuple[int, int]:
    right = sum(provider.classify(text).value == status for text, status in screens)
    return len(screens), right


def grow(text: str, lines: int = LINES) -> str:
    rows = text.rstrip("\n").split("\n")
    if len(rows) >= lines:
        return "\n".join(rows[-lines:])
    history = [r for r in rows if r.strip()] or ["(history)"]
    filler: list[str] = []
    while len(filler) + len(rows) < lines:
        filler += history
    return "\n".join(filler[: lines - len(rows)] + rows)


def adversarial() -> list[str]:
    prose = "\n".join(f"line {i}: some ordinary output without any structure, 80 characters of text" for i in range(LINES))
    busy = "\n".join(["⠋ Thinking... (esc to cancel, 3s) • Working (3s • esc to interrupt) ✻ Cascading…"] * LINES)
    return [prose, busy]


def measure(fn, screen: str, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(screen)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    print(f"classification of {LINES}-line screens, {args.rounds} rounds each (target: median < {TARGET_MS} ms)")
    print(
        f"{'provider':12} {'screens':>7} {'median':>9} {'p99':>9} {'worst':>9}   {'extract median':>14}  "
        f"{'status':11} {'corpus':>6} {'right':>5} {'%':>6}"
    )
    failed = False
    everything: list[float] = []
    listed = corpus()
    total = [0, 0]
    for name, provider in sorted(builtin_providers().items()):
        fixtures = sorted(SCREENS.glob(f"{name}-*.txt"))
        if name == "mock":
            fixtures = sorted(SCREENS.glob("mock-*.txt"))
        screens = [grow(p.read_text(encoding="utf-8")) for p in fixtures] + adversarial()
        classify = getattr(provider, "classify_rule", provider.classify)
        for screen in screens[:3]:  # warm caches (regexes compile lazily)
            classify(screen)
        times: list[float] = []
        extract: list[float] = []
        for screen in screens:
            times += measure(classify, screen, args.rounds)
            extract += measure(provider.extract_answer, screen, max(1, args.rounds // 10))
        times.sort()
        everything += times
        median = statistics.median(times)
        p99 = times[int(len(times) * 0.99) - 1]
        ok = median < TARGET_MS
        failed |= not ok
        count, right = accuracy(provider, listed.get(name, []))
        total[0] += count
        total[1] += right
        if count:
            percent = 100.0 * right / count
            failed |= percent < TARGET_ACCURACY
            read = f"{count:6d} {right:5d} {percent:5.1f}%{'' if percent >= TARGET_ACCURACY else ' BELOW TARGET'}"
        else:
            read = f"{'-':>6} {'-':>5} {'-':>6}"
        print(
            f"{name:12} {len(screens):7d} {median:8.3f}ms {p99:8.3f}ms {times[-1]:8.3f}ms   "
            f"{statistics.median(extract):12.3f}ms  {'ok' if ok else 'OVER TARGET':11} {read}"
        )
    everything.sort()
    print(
        f"{'all':12} {'':7} {statistics.median(everything):8.3f}ms {everything[int(len(everything) * 0.99) - 1]:8.3f}ms "
        f"{everything[-1]:8.3f}ms   {'':14}  {'':11} {total[0]:6d} {total[1]:5d} {100.0 * total[1] / max(1, total[0]):5.1f}%"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
