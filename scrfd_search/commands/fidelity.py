"""Measure how far a search's leaderboard can be trusted: retrain a spread of its trials under new seeds.

Picks --sample K trials trained to the end (the best and the worst always, the others one from each of
K - 2 equal slices of the ranks between them, drawn from --seed) and trains each again exactly as its
trial did (architecture, recipe, data, schedule, resources) under --seeds S new seeds: at the trial's
length (how far a trial repeats: the noise floor) and for --epochs E (default 4x the trial's, standing in
for full training). The runs go through Ray Tune as the search's trials did (same resources per trial,
same Ray: local or the search's --address cluster) into results/NAME/fidelity/; run the same command
again after an interruption and it continues, keeping every run trained to its end. It prints and writes
to results/NAME/fidelity/fidelity.json: Kendall's tau and Spearman's rho between the trials' hard AP and
the long runs' mean hard AP, and between two seeds at the trial's length, each with a seeded bootstrap
95 % interval; the seed sd of hard AP at both lengths; the smallest AP difference the leaderboard
resolves; top-1 regret; and a verdict line (also shown by `status`). See docs/fidelity.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scrfd_search.search.fidelity_store import DEFAULT_SEEDS, LONGER, FidelityRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `scrfd-search fidelity`."""
    parser.add_argument("name", help="experiment name given to `launch --name`")
    parser.add_argument("--sample", type=int, required=True, help="trials to retrain (at least 3)")
    parser.add_argument("--epochs", type=int, help=f"epochs of the long runs (default {LONGER}x the trial's)")
    parser.add_argument(
        "--seeds", type=int, default=DEFAULT_SEEDS, help=f"seeds per trial and length (default {DEFAULT_SEEDS})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the pick and of the bootstrap (default 0)")
    parser.add_argument("--results-dir", type=Path, help="where experiments live (default results/)")
    parser.add_argument("--data", type=Path, help="the data folder, when it moved since the launch")
    parser.add_argument("--quiet", action="store_true", help="print only errors and the report")


def run(args: argparse.Namespace) -> int:
    """Check the request against the store, then train the runs still missing and report."""
    from scrfd_search.search.fidelity import fidelity  # scipy: keeps --help fast

    request = FidelityRequest(sample=args.sample, epochs=args.epochs, seeds=args.seeds, seed=args.seed)
    return fidelity(
        args.name,
        request,
        str(args.results_dir) if args.results_dir else None,
        data_root=str(args.data) if args.data else None,
        quiet=args.quiet,
    )
