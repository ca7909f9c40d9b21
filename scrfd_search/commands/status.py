"""Print a search's leaderboard and progress.

Trials are sorted by hard AP (ties: fewer GFLOPs first) with their GFLOPs, parameters, each
component's share of the detector's GFLOPs (stem, c2..c5, neck, head), easy/medium/hard AP, epochs
trained and state; above the table: trials done, running, failed and pending, the best so far, and
for a step-2 search the backbone-share constraint it samples under; the training recipe (fixed, or the
`recipe:` section searched, with each trial's optimizer, lr and weight decay in the table); each trial's
predicted latency where the space has a latency table, and for a multi-objective search (`launch
--objectives`) its non-dominated trials, marked * and listed above the table; with
`launch --repeats R` the APs are means over R seeds and sd% their spread; after `fidelity`, its verdict
line (can the ranking be trusted, or what to change). --json prints
the same as JSON. It also says whether a driver (`launch` or `resume`) is alive; when none is, the
search is not running whatever the rows say, and the line tells how to resume it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scrfd_search.search.driver import live_driver
from scrfd_search.search.status_table import status_json, status_text
from scrfd_search.search.store import ExperimentStore, store_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `scrfd-search status`."""
    parser.add_argument("name", help="experiment name given to `launch --name`")
    parser.add_argument("--results-dir", type=Path, help="where experiments live (default results/)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run(args: argparse.Namespace) -> int:
    """Read the experiment store and print it."""
    store = ExperimentStore(store_path(args.name, args.results_dir)).require()
    experiment, trials = store.read_experiment(), store.read_trials()
    driver = live_driver(store.path)
    unfinished = any(t.state in ("PENDING", "RUNNING") for t in trials) or len(trials) < (experiment.trials or 0)
    if driver is None:  # rows a dead driver left RUNNING are not running: show them as resume will treat them
        trials = [t.updated(state="PENDING") if t.state == "RUNNING" else t for t in trials]
    if driver is not None:
        line = f"driver: running, {driver.describe()}"
    elif unfinished:
        where = f" --results-dir {store.path.parent}" if args.results_dir else ""
        line = f"driver: not running (no live driver); continue it with `scrfd-search resume {store.path.name}{where}`"
    else:
        line = "driver: not running (search finished)"
    if args.json:
        info = {"alive": driver is not None, "line": line}
        if driver is not None:
            info.update(pid=driver.pid, host=driver.host, command=driver.command, heartbeat=driver.heartbeat)
        print(json.dumps(status_json(experiment, trials, info, store.path), indent=2, sort_keys=True))
    else:
        print(status_text(experiment, trials, line, store.path))
    return 0
