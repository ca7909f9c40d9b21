"""Launch a budgeted architecture search with Ray Tune.

Each trial gets one architecture inside the GFLOPs budget of --space, trains it on --data for
--epochs, and reports easy/medium/hard AP after every validation (trials are ranked by hard AP).
--searcher random (the paper's search) draws the N distinct candidates up front from --seed;
--cpus-per-trial C gives each trial C - 1 data-loader worker processes (one core drives training).
--searcher optuna uses TPE (seeded) over the same ranges, keeping every proposal inside the budget,
with its study in results/NAME/optuna.db. --scheduler asha stops weak trials early on hard AP.
--objectives hard,latency (or hard,gflops) searches for the trade-off instead: the Optuna study gets
hard AP and the predicted latency (the space's latency_table) or GFLOPs as objectives; both searchers
record each trial's costs, and `status`, `export --pareto` and `plot` show the non-dominated trials
(docs/pareto.md). ASHA still ranks by hard AP alone.
A step-2 search (--space of step 2, --from STEP1_NAME) keeps only backbones whose stage shares of
backbone FLOPs fall in the ranges derived from the best --top-k step-1 trials (bootstrap).
The training recipe is --optimizer (sgd, sgdp, adamw, adaboundw, sam) with --lr, --weight-decay and
--momentum, each defaulting to the optimizer's published value; a `recipe:` section in --space
(optimizer choices, log-uniform lr and weight_decay ranges) is sampled with the architecture instead,
seeded like it. A step-2 search without a section of its own inherits step 1's recipe (section and
flags). --recipe-only --arch ARCH.json keeps one architecture and searches only the recipe section of --space.
--repeats R trains every candidate R times (seeds --seed .. --seed + R - 1, one after another inside its
trial) and ranks it by the mean hard AP, keeping every run's AP (`status` shows their sd): the cure when
`fidelity` finds seed noise larger than the leaderboard's differences.
Everything lands in results/NAME/ (or --results-dir/NAME): experiment.json, leaderboard.json, the
Ray experiment (ray/), the trials' work folders (trials/); see `status`, `resume`. Nothing starts
before every check passed: the results dir is writable, both splits' annotations parse and every
listed image decodes (an unreadable one is refused, named), the space and resources fit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scrfd_search.commands.recipe_flags import add_recipe_arguments
from scrfd_search.search.launch import launch
from scrfd_search.search.objectives import ACCEPTED, DEFAULT_OBJECTIVES, parse_objectives
from scrfd_search.search.settings import SearchSettings
from scrfd_search.search.store import store_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `scrfd-search launch`."""
    parser.add_argument("--space", required=True, type=Path, help="search space YAML (see search_spaces/)")
    parser.add_argument("--data", required=True, type=Path, help="WIDER FACE (or demo-data) folder")
    parser.add_argument("--name", required=True, help="experiment name (folder under the results dir)")
    parser.add_argument("--trials", type=int, default=320, help="number of trials (default 320, the paper's)")
    parser.add_argument("--epochs", type=int, default=80, help="epochs per trial (default 80, the paper's)")
    parser.add_argument("--searcher", choices=("random", "optuna"), default="random", help="default random")
    parser.add_argument(
        "--scheduler",
        choices=("fifo", "asha"),
        default="fifo",
        help="default fifo; asha stops trials early by hard AP alone, whatever --objectives",
    )
    parser.add_argument(
        "--objectives",
        default=DEFAULT_OBJECTIVES,
        metavar="LIST",
        help=f"what the search optimises: {', '.join(ACCEPTED)} (default {DEFAULT_OBJECTIVES}); latency is "
        "predicted by the space's latency_table; the Optuna study becomes multi-objective and the "
        "leaderboard marks the non-dominated trials (ASHA still ranks by hard AP alone)",
    )
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (default 1 when GPUs are present, else 0)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPU cores per trial (default 1)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the resources hold)")
    parser.add_argument("--address", help="Ray cluster address to join (default: start a local Ray)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and training (default 0)")
    parser.add_argument("--img-size", type=int, default=640, help="training image size (default 640)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    add_recipe_arguments(parser, lr_note="; a recipe: section in --space may search it instead")
    parser.add_argument(
        "--val-interval", type=int, help="epochs between validations (default: ASHA's first rung, else the end)"
    )
    parser.add_argument("--results-dir", type=Path, help="where experiments live (default results/)")
    parser.add_argument("--from", dest="from_experiment", metavar="STEP1_NAME", help="step-1 search (step 2)")
    parser.add_argument("--top-k", type=int, help="step-1 trials the constraint is derived from (default 5)")
    parser.add_argument(
        "--amp", action="store_true", help="mixed-precision training on the GPUs (bf16 where supported, else fp16)"
    )
    parser.add_argument(
        "--recipe-only",
        action="store_true",
        help="keep the architecture of --arch and search only the recipe: section of --space",
    )
    parser.add_argument("--arch", type=Path, metavar="ARCH.json", help="the fixed architecture of --recipe-only")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="train every candidate this many times (seeds --seed, --seed + 1, ...) and rank by the mean (default 1)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only errors and the final line")


def run(args: argparse.Namespace) -> int:
    """Validate everything, then run the search to its end."""
    path = store_path(args.name, args.results_dir)
    settings = SearchSettings(
        name=args.name,
        results_dir=str(path.parent.resolve()),
        space_file=str(args.space.resolve()),
        data_root=str(args.data.expanduser().resolve()),
        trials=args.trials,
        epochs=args.epochs,
        searcher=args.searcher,
        scheduler=args.scheduler,
        seed=args.seed,
        img_size=args.img_size,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        val_interval=args.val_interval,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        address=args.address,
        from_experiment=args.from_experiment,
        top_k=args.top_k,
        amp=args.amp,
        recipe_only=args.recipe_only,
        arch_file=str(args.arch.resolve()) if args.arch is not None else None,
        repeats=args.repeats,
        objectives=",".join(o.name for o in parse_objectives(args.objectives)),
    )
    return launch(settings, quiet=args.quiet)
