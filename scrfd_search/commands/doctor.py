"""Check that this machine (or the Ray cluster at --address) can run a search, and how long one takes.

Prints one table: torch and its CUDA build, every GPU with its memory, cuDNN, torchvision's NMS on
the CPU and on each GPU (what inference uses), mmcv and mmdet, the Ray resources of every node, the
data folder's layout and image counts, the free disk under the results folder, and, with --data, a
probe: --probe-iters training iterations of one candidate of --space, exactly as a trial trains it
(same pipeline, loader workers from --cpus-per-trial, GPU when there is one), giving images/s and
peak memory, turned into an estimate of a search's wall time for --trials and --epochs. Each row is
ok, warn or fail with its fix; the exit status is 1 when any row fails. Run it first on a new machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scrfd_search.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `scrfd-search doctor`."""
    parser.add_argument("--data", metavar="DIR", help="WIDER FACE (or demo-data) folder to check and probe")
    parser.add_argument("--address", metavar="HOST:PORT", help="Ray cluster to inspect (default: this machine)")
    parser.add_argument("--results-dir", type=Path, help="where searches are written (default results/)")
    parser.add_argument("--space", type=Path, help="search space of the probe (default scrfd_2.5gf_step1.yaml)")
    parser.add_argument("--trials", type=int, default=320, help="trials of the estimated search (default 320)")
    parser.add_argument("--epochs", type=int, default=80, help="epochs per trial of the estimate (default 80)")
    parser.add_argument("--img-size", type=int, default=640, help="probe's training size (default 640)")
    parser.add_argument("--batch-size", type=int, default=8, help="probe's batch size (default 8)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="cores per trial (default 1)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (default 1 with GPUs, else 0)")
    parser.add_argument("--probe-iters", type=int, default=20, help="timed probe iterations (default 20)")
    parser.add_argument("--no-probe", action="store_true", help="skip the training probe")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe's candidate and data (default 0)")


def run(args: argparse.Namespace) -> int:
    """Run every check, print the table, exit 1 when a row fails."""
    import os

    from scrfd_search.doctor import FAIL, DoctorOptions, format_table, run_checks  # torch, ray: keeps --help fast

    for flag in ("trials", "epochs", "probe_iters", "batch_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')}: {getattr(args, flag)} must be at least 1")
    results = args.results_dir or os.environ.get("SCRFD_SEARCH_RESULTS") or "results"
    options = DoctorOptions(
        data=args.data,
        address=args.address,
        results_dir=str(results),
        space=str(args.space) if args.space else None,
        trials=args.trials,
        epochs=args.epochs,
        img_size=args.img_size,
        batch_size=args.batch_size,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        probe_iters=args.probe_iters,
        seed=args.seed,
    )
    rows = run_checks(options, probe=not args.no_probe)
    print(format_table(rows))
    failed = [r.name for r in rows if r.status == FAIL]
    if failed:
        print(f"\n{len(failed)} check(s) failed: {', '.join(failed)}")
        return 1
    return 0
