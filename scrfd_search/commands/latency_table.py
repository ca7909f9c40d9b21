"""Measure a latency table on this machine for the blocks that search spaces can produce.

As FBNet and Once-for-All do: every part a space's detectors are made of (the stem, each stage's
first and further blocks, the neck's laterals and body, the head's tower units and predictors) is
timed on this device, on a grid of --grid-points channel counts per axis (between grid points the
prediction interpolates). Then --fit-models detectors per space, drawn inside its FLOPs budget, are
timed whole (network alone, as `latency` times them) and a scale and offset per block type are fitted
(Theil-Sen) for what the sum of isolated blocks misses. The table records the machine's fingerprint
(CPU, device, backend and version, threads, batch, input shape); `latency --table` and the spaces'
`max_latency_ms` refuse it elsewhere. Runs are interleaved and medians kept, so that other processes'
load spreads over all parts (see docs/latency.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from scrfd_search.commands.latency import add_device_arguments, input_shape_of
from scrfd_search.errors import UserError, check_seed
from scrfd_search.io_utils import atomic_write_json, check_writable
from scrfd_search.latency.build import build_table
from scrfd_search.latency.measure import check_settings
from scrfd_search.sampling.sampler import sample_candidates
from scrfd_search.space.search_space import SearchSpace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `scrfd-search latency-table`."""
    parser.add_argument("--space", type=Path, nargs="+", required=True, help="search space YAML file(s)")
    parser.add_argument("--out", type=Path, required=True, help="the table to write (JSON)")
    add_device_arguments(parser)
    parser.add_argument("--grid-points", type=int, default=5, help="measured values per channel axis (default 5)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per part and per fit model (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--passes", type=int, default=2, help="sweeps the runs are split over (default 2)")
    parser.add_argument("--fit-models", type=int, default=8, help="whole detectors per space for the fit (8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fit models' draw (default 0)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    """Check everything, measure, fit, write the table atomically, print a summary."""
    from scrfd_search.latency_targets import Settings, whole_model_timer  # torch, onnxruntime

    # A space's own ceiling and table are for sampling with one; the table is what is being measured here.
    spaces = [replace(SearchSpace.load(p), max_latency_ms=None, latency_table=None) for p in args.space]
    shapes = {s.input_shape for s in spaces}
    if args.input_shape is None and len(shapes) > 1:
        raise UserError(f"--space: the spaces' input shapes differ ({sorted(shapes)}); pick one with --input-shape")
    shape = input_shape_of(args, next(iter(shapes)))
    check_settings(args.backend, args.device, args.threads, args.batch, shape)
    check_seed(args.seed)
    if args.fit_models < 0:
        raise UserError(f"--fit-models: {args.fit_models} must be 0 or more")
    if args.runs < 1 or args.warmup < 0:
        raise UserError(f"--runs {args.runs} / --warmup {args.warmup}: need at least 1 run and no negative warm-up")
    if args.out.exists() and (args.out.is_dir() or not args.force):
        raise UserError(f"--out {args.out}: exists (use --force to replace a table)")
    check_writable(args.out.parent, "--out")
    fit_archs = []
    for space in spaces:
        if args.fit_models:
            drawn = sample_candidates(space, args.fit_models, args.seed, confirm=False)
            fit_archs += [c.arch for c in drawn]
    settings = Settings(args.backend, args.device, args.threads, args.batch, shape)

    def progress(message: str) -> None:
        print(f"\r  {message:<100}", end="", file=sys.stderr, flush=True)

    table = build_table(
        spaces,
        args.backend,
        args.device,
        args.threads,
        args.batch,
        shape,
        grid_points=args.grid_points,
        runs=args.runs,
        warmup=args.warmup,
        passes=args.passes,
        fit_archs=fit_archs,
        time_whole=whole_model_timer(settings, args.runs, args.warmup),
        progress=progress,
    )
    print(file=sys.stderr)
    atomic_write_json(args.out, table.to_dict())
    if table.meta.get("load_warning"):
        print(table.meta["load_warning"], file=sys.stderr)
    parts = sum(len(g.ms) for g in table.grids.values())
    print(f"{args.out}: {parts} parts of {len(table.grids)} kinds, {table.meta['build_seconds']} s")
    for block, c in sorted(table.correction.items()):
        rows = [r for r in table.fit if r["block"] == block]
        errors = [abs(r["predicted_ms"] / r["measured_ms"] - 1) for r in rows]
        print(
            f"  {block}: measured = {c.scale:.3f} x summed + {c.offset_ms:.2f} ms on {len(rows)} models; "
            f"fit error mean {100 * sum(errors) / len(errors):.1f}%, max {100 * max(errors):.1f}%"
        )
    return 0
