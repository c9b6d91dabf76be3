"""Classification time per screen, per provider (it runs on every output burst of every agent).

Screens: every fixture in tests/fixtures/screens/ for the provider, grown to 200 lines by
putting scrollback above it (earlier turns of the same screen, as a long session has), plus
two adversarial 200-line screens (plain text with no structure, and 200 lines of the
provider's own busy line) that defeat early exits. Reports median, p99 and worst per provider
against the target (median under 1 ms), and answer extraction (once per turn) for reference.

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
    print(f"{'provider':12} {'screens':>7} {'median':>9} {'p99':>9} {'worst':>9}   {'extract median':>14}  {'status'}")
    failed = False
    everything: list[float] = []
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
        print(f"{name:12} {len(screens):7d} {median:8.3f}ms {p99:8.3f}ms {times[-1]:8.3f}ms   "
              f"{statistics.median(extract):12.3f}ms  {'ok' if ok else 'OVER TARGET'}")
    everything.sort()
    print(f"{'all':12} {'':7} {statistics.median(everything):8.3f}ms {everything[int(len(everything) * 0.99) - 1]:8.3f}ms "
          f"{everything[-1]:8.3f}ms")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
