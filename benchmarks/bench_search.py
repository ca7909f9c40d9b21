"""A small CPU search end to end: wall time, per-trial training intervals, and their overlap.

Generates demo data, launches `scrfd-search launch` (random or optuna searcher) with N trials of one
core each on 128x128 images, and prints the total wall time, each trial's [start, end] (from its
trial_events.jsonl), how many seconds two trials trained at the same time, and the ratio of the
summed training time to the wall time of the training phase (about the number of trials at once).

    .venv/bin/python benchmarks/bench_search.py [--trials 2] [--epochs 2] [--searcher random|optuna]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.search.store import ExperimentStore
from scrfd_search.search.trial import read_events

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "scrfd_0.5gf_step1.yaml"


def runs_of(store: ExperimentStore) -> dict[str, tuple[float, float]]:
    """Each trial's (first start, last event) time."""
    out = {}
    for row in store.read_trials():
        times = [(e["event"], e["time"]) for e in read_events(store.path / row.extra["work_dir"])]
        out[row.trial_id] = (min(t for k, t in times if k == "start"), max(t for _, t in times))
    return out


def overlap_seconds(spans: list[tuple[float, float]]) -> float:
    """Seconds during which at least two spans were open."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    total, open_now, last = 0.0, 0, None
    for t, step in edges:
        if open_now >= 2 and last is not None:
            total += t - last
        open_now += step
        last = t
    return total


def main() -> int:
    """Run one search and print its timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--searcher", choices=("random", "optuna"), default="random")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        write_demo_dataset(data, DemoConfig(num_train=8, num_val=4, seed=0))
        cmd = [sys.executable, "-m", "scrfd_search.cli", "launch", "--space", str(SPACE), "--data", str(data)]
        cmd += ["--name", "bench", "--results-dir", tmp, "--trials", str(args.trials), "--epochs", str(args.epochs)]
        cmd += ["--searcher", args.searcher, "--img-size", "128", "--batch-size", "4", "--cpus-per-trial", "1"]
        start = time.time()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.time() - start
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        runs = runs_of(ExperimentStore(Path(tmp) / "bench"))
    first = min(a for a, _ in runs.values())
    print(f"{args.trials}-trial {args.searcher} CPU search, {args.epochs} epochs: {wall:.1f} s wall")
    for trial_id, (a, b) in sorted(runs.items(), key=lambda kv: kv[1]):
        print(f"  trial {trial_id}: trains from +{a - first:.1f} s to +{b - first:.1f} s ({b - a:.1f} s)")
    busy = sum(b - a for a, b in runs.values())
    phase = max(b for _, b in runs.values()) - first
    print(f"  two or more trials at once for {overlap_seconds(list(runs.values())):.1f} s")
    print(f"  summed training {busy:.1f} s over a {phase:.1f} s training phase: {busy / phase:.2f} trials at once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
