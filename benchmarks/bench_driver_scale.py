"""The driver's cost per event as a search grows (issue 19): 100 trials against N, in one run.

Runs the real driver, `launch` itself (candidates drawn and checked, the store written, the Tuner with
the random searcher, ASHA and the store's callback), over trials that report their epochs at once
instead of training, in reused worker processes (a trial's process start would otherwise be most of
what is timed): every trial start, report and end is an event the driver handles. For a
100-trial search and an N-trial search it prints the events, the driver's wall milliseconds per event
(first event to last), its CPU milliseconds per event (the driver process: Ray Tune's loop and the
callback), the store callback's own milliseconds per event, and the N/100 ratios; then how long
`status` takes on the finished N-trial store.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_driver_scale.py --trials 1000

Targets: the per-event cost at 10,000 trials at most 3x that at 100; `status` under 2 s at 10,000.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from scrfd_search.cli import main as cli_main
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.search.launch import launch
from scrfd_search.search.ray_callback import LeaderboardCallback
from scrfd_search.search.ray_session import init_ray
from scrfd_search.search.settings import SearchSettings

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "scrfd_0.5gf_step1.yaml"
EPOCHS = 3  # ASHA stops some trials after the first epoch, as in a real search
CPUS_PER_TRIAL = 0.25
EVENTS = ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error")


@dataclass
class Clock:
    """What the instrumented callback saw: events, time inside it, and the first and last event."""

    events: int = 0
    inside_s: float = 0.0
    first: tuple[float, float] | None = None  # (wall, driver CPU) at the first event
    last: tuple[float, float] = (0.0, 0.0)
    marks: list[str] = field(default_factory=list)


CLOCK = Clock()


def timed(hook):
    """The real callback hook, timed."""

    @functools.wraps(hook)
    def wrapper(self, *args, **kwargs):
        start = (time.perf_counter(), time.process_time())
        CLOCK.first = CLOCK.first or start
        try:
            return hook(self, *args, **kwargs)
        finally:
            CLOCK.events += 1
            CLOCK.last = (time.perf_counter(), time.process_time())
            CLOCK.inside_s += CLOCK.last[0] - start[0]

    return wrapper


for _name in EVENTS:
    setattr(LeaderboardCallback, _name, timed(getattr(LeaderboardCallback, _name)))


def instant_trial(config: dict) -> None:
    """A trial that reports every epoch at once (its APs seeded by its candidate index)."""
    from ray import tune

    hard = random.Random(config.get("candidate", 0)).uniform(0.1, 0.5)
    for epoch in range(1, EPOCHS + 1):
        ap = hard * epoch / EPOCHS
        tune.report({"epoch": epoch, "easy": min(1.0, ap + 0.2), "medium": min(1.0, ap + 0.1), "hard": ap})


@dataclass(frozen=True)
class Measure:
    """One search's figures."""

    trials: int
    events: int
    wall_ms: float  # per event
    cpu_ms: float  # per event
    callback_ms: float  # per event
    first_event_s: float  # launch call to the first event


def run_search(trials: int, root: Path, data: Path, max_concurrent: int, seed: int) -> Measure:
    """Launch an N-trial search of instant trials and measure it."""
    from ray import tune

    global CLOCK
    CLOCK = Clock()
    settings = SearchSettings(
        name=f"scale{trials}",
        results_dir=str(root),
        space_file=str(SPACE),
        data_root=str(data),
        trials=trials,
        epochs=EPOCHS,
        scheduler="asha",
        seed=seed,
        cpus_per_trial=CPUS_PER_TRIAL,
        gpus_per_trial=0,
        max_concurrent=max_concurrent,
    )
    trainable = tune.with_resources(instant_trial, {"cpu": CPUS_PER_TRIAL, "gpu": 0})
    started = time.perf_counter()
    code = launch(settings, quiet=True, trainable=trainable, reuse_actors=True)
    if code != 0 or CLOCK.first is None:
        raise SystemExit(f"the {trials}-trial search ended with exit status {code}")
    events = CLOCK.events
    wall = CLOCK.last[0] - CLOCK.first[0]
    cpu = CLOCK.last[1] - CLOCK.first[1]
    return Measure(
        trials, events, 1e3 * wall / events, 1e3 * cpu / events, 1e3 * CLOCK.inside_s / events, CLOCK.first[0] - started
    )


def status_seconds(name: str, root: Path) -> float:
    """Wall time of `scrfd-search status NAME` (in-process, output discarded)."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["status", name, "--results-dir", str(root)])
    if code != 0:
        raise SystemExit(f"status {name} failed with exit status {code}")
    return time.perf_counter() - start


def main() -> int:
    """Run the 100-trial baseline and the N-trial search, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials of the large search (default 1000)")
    parser.add_argument("--baseline", type=int, default=100, help="trials of the baseline search (default 100)")
    parser.add_argument("--max-concurrent", type=int, default=8, help="trials at once (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, help="where the stores go (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-driver-") as tmp:
        root = args.results_dir or Path(tmp) / "results"
        data = Path(tmp) / "demo"
        write_demo_dataset(data, DemoConfig(num_train=2, num_val=1, seed=args.seed, min_width=96, max_width=128))
        init_ray(None)
        print(f"{'trials':>7} {'events':>7} {'wall ms/event':>14} {'CPU ms/event':>13} {'callback ms/event':>18}")
        measures = []
        for n in (args.baseline, args.trials):
            m = run_search(n, root, data, args.max_concurrent, args.seed)
            measures.append(m)
            row = f"{m.trials:>7} {m.events:>7} {m.wall_ms:>14.2f} {m.cpu_ms:>13.2f} {m.callback_ms:>18.3f}"
            print(row, flush=True)
        base, big = measures
        print(
            f"ratio {args.trials}/{args.baseline}: wall {big.wall_ms / base.wall_ms:.2f}x, CPU "
            f"{big.cpu_ms / base.cpu_ms:.2f}x, callback {big.callback_ms / base.callback_ms:.2f}x (target: at most 3x)"
        )
        print(f"launch to first trial event: {base.first_event_s:.1f} s ({args.baseline}), {big.first_event_s:.1f} s")
        status_s = status_seconds(f"scale{args.trials}", root)
        print(f"status on the {args.trials}-trial store: {status_s:.2f} s (target: under 2 s at 10,000 trials)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
