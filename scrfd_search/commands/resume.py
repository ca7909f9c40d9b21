"""Continue an interrupted search (Ctrl-C, a killed driver, a lost node).

The experiment store is the record: trials that finished (or failed) are kept as they are and never
re-run, including one whose driver died after it trained to its end but before it was recorded (its
result.json is read); trials cut off mid-training continue from their own last checkpoint (one cut off
between its last checkpoint and its report is validated from that checkpoint); the candidates not
started yet follow, up to the launched --trials. A search killed before its first trial simply starts.
The store is checked before anything changes: a broken leaderboard.json is reported, and
--rebuild-leaderboard rebuilds it from the trials' own folders (trial.json, result.json). A store
copied elsewhere resumes in its new place; --data points it at the data folder there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scrfd_search.search.resume import resume


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `scrfd-search resume`."""
    parser.add_argument("name", help="experiment name given to `launch --name`")
    parser.add_argument("--results-dir", type=Path, help="where experiments live (default results/)")
    parser.add_argument("--data", type=Path, help="the data folder, when it moved since the launch")
    parser.add_argument(
        "--rebuild-leaderboard",
        action="store_true",
        help="rebuild leaderboard.json from the trials' folders (when it is damaged), then resume",
    )
    parser.add_argument("--quiet", action="store_true", help="print only errors and the final line")


def run(args: argparse.Namespace) -> int:
    """Check the store, then run the unfinished trials to the end."""
    return resume(
        args.name,
        args.results_dir,
        data_root=str(args.data) if args.data else None,
        rebuild_leaderboard=args.rebuild_leaderboard,
        quiet=args.quiet,
    )
