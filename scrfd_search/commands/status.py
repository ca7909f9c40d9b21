"""Print a search's leaderboard and progress.

Trials are sorted by hard AP (ties: fewer GFLOPs first) with their GFLOPs, parameters, each
component's share of the detector's GFLOPs (stem, c2..c5, neck, head), easy/medium/hard AP, epochs
trained and state; above the table: trials done, running, failed and pending, the best so far, and
for a step-2 search the backbone-share constraint it samples under; the training recipe (fixed, or the
`recipe:` section searched, with each trial's optimizer, lr and weight decay in the table). --json prints
the same as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `scrfd-search status`."""
    parser.add_argument("name", help="experiment name given to `launch --name`")
    parser.add_argument("--results-dir", type=Path, help="where experiments live (default results/)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run(args: argparse.Namespace) -> int:
    """Read the experiment store and print it."""
    from scrfd_search.search.progress import status_json, status_text
    from scrfd_search.search.store import ExperimentStore, store_path

    store = ExperimentStore(store_path(args.name, args.results_dir)).require()
    experiment, trials = store.read_experiment(), store.read_trials()
    if args.json:
        print(json.dumps(status_json(experiment, trials), indent=2, sort_keys=True))
    else:
        print(status_text(experiment, trials))
    return 0
