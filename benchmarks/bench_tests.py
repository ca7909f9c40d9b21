"""Wall time of test files, this tree against a git revision, measured back to back in one run.

For each test file the revision's copy and this tree's run one after the other (alternating which
goes first from round to round), each in its own pytest process, so both see the same machine load.
The revision is extracted with `git archive` to a temporary folder (beside a link to ../shared) and
runs with its own package on PYTHONPATH; this tree runs with its own. Prints per file the seconds of
each side, the ratio, and the passed/failed/skipped counts (they should match unless tests moved).

    .venv/bin/python benchmarks/bench_tests.py --base REV tests/test_export.py [more files] [--rounds 1]
        [--marker "not slow"]

Timings on a shared machine are noisy: compare ratios from the same run, not figures between runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|error|errors|deselected)")


def extract(rev: str, into: Path) -> Path:
    """The tree of `rev` under into/repo, with into/shared linked to this checkout's ../shared."""
    archive = into / "tree.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(REPO), "archive", rev], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "repo", filter="data")
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (into / "shared").symlink_to(shared)
    return into / "repo"


def run_file(root: Path, test_file: str, marker: str | None) -> tuple[float, dict[str, int]]:
    """Seconds to run one test file in root (a fresh pytest process) and its outcome counts."""
    argv = [sys.executable, "-m", "pytest", test_file, "-q", "-p", "no:cacheprovider"]
    if marker:
        argv += ["-m", marker]
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {kind: int(n) for n, kind in SUMMARY.findall(last)}
    if proc.returncode not in (0, 5):
        print(f"  {root.name}/{test_file}: pytest exit {proc.returncode}: {last}", file=sys.stderr)
    return elapsed, counts


def main() -> int:
    """Time every file on both trees and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="test files, relative to the repository root")
    parser.add_argument("--base", required=True, help="the git revision to compare against (e.g. main)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each side per file (the minimum is kept)")
    parser.add_argument("--marker", default=None, help="a pytest -m expression for both sides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tests-") as tmp:
        base = extract(args.base, Path(tmp))
        sides = {"base": base, "this": REPO}
        print(f"{'file':42s} {'base s':>8s} {'this s':>8s} {'ratio':>6s}  counts base | this")
        totals = {"base": 0.0, "this": 0.0}
        for test_file in args.files:
            best: dict[str, float] = {}
            counts: dict[str, dict[str, int]] = {}
            for r in range(args.rounds):
                order = ("base", "this") if r % 2 == 0 else ("this", "base")
                for side in order:
                    if not (sides[side] / test_file).is_file():
                        best.setdefault(side, 0.0)
                        counts[side] = {}
                        continue
                    elapsed, counts[side] = run_file(sides[side], test_file, args.marker)
                    best[side] = min(best.get(side, elapsed), elapsed)
            for side in totals:
                totals[side] += best[side]
            ratio = best["this"] / best["base"] if best["base"] else float("nan")
            times = f"{best['base']:8.1f} {best['this']:8.1f} {ratio:6.2f}"
            print(f"{test_file:42s} {times}  {counts['base']} | {counts['this']}")
        ratio = totals["this"] / totals["base"] if totals["base"] else float("nan")
        print(f"{'total':42s} {totals['base']:8.1f} {totals['this']:8.1f} {ratio:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
