"""Seconds from `launch` to the first trial's start (issue 19), on generated demo data.

Runs `scrfd-search launch` as a new user would (a subprocess, its own session) and watches the store
for the first trial's "start" event (trials/*/trial_events.jsonl), and its "flops_check" event where
the trial confirms its candidate with fvcore; then stops the search (the whole session: driver, Ray
and trials). It reads only files every version of the store writes, so it measures an older checkout
as well (run it with that checkout first on PYTHONPATH).

    PYTHONPATH=. python benchmarks/bench_first_trial.py --space search_spaces/scrfd_34gf_step1.yaml --trials 320
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scrfd_search.data.demo import DemoConfig, write_demo_dataset


def first_event(trials_root: Path, kind: str) -> bool:
    """Whether any trial logged an event of this kind."""
    for path in trials_root.glob("*/trial_events.jsonl"):
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    if json.loads(line).get("event") == kind:
                        return True
    return False


def kill_session(sid: int) -> None:
    """SIGKILL every process of the session (the driver, the Ray it started and its trials)."""
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[3]) == sid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def main() -> int:
    """Launch, time the first start, stop."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", type=Path, required=True, help="search space YAML")
    parser.add_argument("--trials", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-first-") as tmp:
        data = Path(tmp) / "demo"
        write_demo_dataset(data, DemoConfig(num_train=8, num_val=4, seed=args.seed))
        results = Path(tmp) / "results"
        argv = [sys.executable, "-m", "scrfd_search.cli", "launch", "--space", str(args.space), "--data", str(data)]
        argv += ["--name", "first", "--trials", str(args.trials), "--epochs", "1", "--results-dir", str(results)]
        argv += ["--img-size", "64", "--batch-size", "2", "--cpus-per-trial", "1", "--gpus-per-trial", "0"]
        argv += ["--seed", str(args.seed)]
        log = Path(tmp) / "launch.log"
        started = time.perf_counter()
        with log.open("wb") as sink:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=sink, start_new_session=True)
        times: dict[str, float] = {}
        try:
            while "flops_check" not in times and time.perf_counter() - started < args.timeout:
                if proc.poll() is not None:
                    break
                for kind in ("start", "flops_check"):
                    if kind not in times and first_event(results / "first" / "trials", kind):
                        times[kind] = time.perf_counter() - started
                if "start" in times and time.perf_counter() - started > times["start"] + 120:
                    break  # an older version confirms in the driver: there is no flops_check event to wait for
                time.sleep(0.1)
        finally:
            kill_session(proc.pid)
            proc.wait()
            time.sleep(2)
            kill_session(proc.pid)  # stragglers Ray started while the first kill went round
        err = log.read_text(errors="replace")
        if "start" not in times:
            drawn = [line for line in err.replace("\r", "\n").splitlines() if "drawing candidates" in line]
            where = f"; the driver was still {drawn[-1].strip()}" if drawn else ""
            print(err[-2000:], file=sys.stderr)
            raise SystemExit(f"no trial started within {time.perf_counter() - started:.0f} s{where}")
        print(f"{args.space.name}, {args.trials} trials: launch to the first trial's start {times['start']:.1f} s")
        if "flops_check" in times:
            print(f"  to its fvcore confirmation (done in the trial): {times['flops_check']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
