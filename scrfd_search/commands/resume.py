"""Continue an interrupted search (Ctrl-C, a killed driver, a lost node).

Restores the Ray Tune experiment in results/NAME/ray/NAME: trials that finished (or failed) are kept
as they are and never re-run; trials cut off mid-training start again (from their last mmengine
checkpoint when there is one); the searcher continues where it stopped, up to the launched --trials.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scrfd_search.search.orchestrate import resume


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `scrfd-search resume`."""
    parser.add_argument("name", help="experiment name given to `launch --name`")
    parser.add_argument("--results-dir", type=Path, help="where experiments live (default results/)")
    parser.add_argument("--quiet", action="store_true", help="print only errors and the final line")


def run(args: argparse.Namespace) -> int:
    """Restore the Tuner and run it to the end."""
    return resume(args.name, args.results_dir, quiet=args.quiet)
