"""Sample N distinct architectures inside a GFLOPs budget.

Each candidate is drawn uniformly from the search space's ranges, prefiltered by the closed-form
FLOPs counter, and confirmed by fvcore on the built detector. Writes DIR/arch_NNNN.json (one
ArchSpec each, usable with `flops` and `train`) and DIR/candidates.json (all of them with their
FLOPs and parameters by component). The same seed gives the same files, byte for byte.

A space that names a `latency_table` (from `scrfd-search latency-table`) also gets each candidate's
predicted milliseconds by component; with `max_latency_ms` it keeps only candidates predicted under
that ceiling (and inside the FLOPs band). See docs/latency.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrfd_search.errors import UserError, check_seed
from scrfd_search.flops.report import COMPONENTS
from scrfd_search.io_utils import atomic_write_json, atomic_write_text, check_writable, staged_folder
from scrfd_search.latency.budget import space_latency
from scrfd_search.sampling.sampler import gflops_band, sample_candidates
from scrfd_search.space.search_space import SearchSpace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `scrfd-search sample`."""
    parser.add_argument("--space", required=True, type=Path, help="search space YAML (see search_spaces/)")
    parser.add_argument("--n", type=int, default=16, help="number of distinct candidates (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, help="folder to write the candidates to (omit to only print)")
    parser.add_argument("--budget", type=float, help="GFLOPs budget (default: the space's budget_gflops)")
    parser.add_argument("--no-confirm", action="store_true", help="skip the fvcore confirmation (faster)")
    parser.add_argument("--force", action="store_true", help="replace --out if it already holds files")


def run(args: argparse.Namespace) -> int:
    """Sample, print the table, and write the folder atomically."""
    space = SearchSpace.load(args.space)
    if args.budget is not None and args.budget <= 0:
        raise UserError(f"--budget: {args.budget} must be a positive number of GFLOPs")
    check_seed(args.seed)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out: {args.out} is a file, expected a folder")
    if args.out is not None:
        check_writable(args.out.parent, "--out")
    if args.out is not None and args.out.exists() and any(args.out.iterdir()) and not args.force:
        raise UserError(f"--out: {args.out} already holds files (use --force to replace them)")
    space_latency(space)  # a latency table that is missing, not one, or from another machine: fail before sampling
    budget = space.budget_gflops if args.budget is None else args.budget
    low, high = gflops_band(space, budget)
    print(
        f"sampling {args.n} candidates from {space.name} ({space.block} blocks) within "
        f"{low:.3f}-{high:.3f} GFLOPs at {space.input_shape[0]}x{space.input_shape[1]}, seed {args.seed}",
        file=sys.stderr,
    )
    candidates = sample_candidates(
        space, args.n, args.seed, budget_gflops=budget, confirm=not args.no_confirm, progress=_print_progress
    )
    print(file=sys.stderr)
    print(format_table(candidates))
    if space.latency_table is not None:
        print(format_latency(candidates, space))
    if args.out is not None:
        write_candidates(candidates, args.out, space, budget, args.seed)
        print(f"wrote {len(candidates)} candidates to {args.out}", file=sys.stderr)
    return 0


def _print_progress(p) -> None:
    """One refreshed status line on stderr."""
    print(
        f"\r  draws {p.draws}  in budget {p.in_budget}  accepted {p.accepted}/{p.wanted}  "
        f"acceptance {100 * p.acceptance_rate:.2f}%  fvcore rejected {p.rejected_by_fvcore}",
        end="",
        file=sys.stderr,
        flush=True,
    )


def format_table(candidates) -> str:
    """A text table: one row per candidate with depths, widths, GFLOPs by component and params."""
    head = f"{'#':>4} {'stem':>4} {'depths':>12} {'widths':>16} {'neck':>4} {'head':>7} " + " ".join(
        f"{c:>6}" for c in COMPONENTS
    )
    lines = [head + f" {'GFLOPs':>7} {'params(M)':>9}"]
    for i, c in enumerate(candidates):
        a = c.arch
        depths = ",".join(str(d) for d in a.depths)
        widths = ",".join(str(w) for w in a.widths)
        comp = " ".join(f"{c.flops.gflops[k]:6.3f}" for k in COMPONENTS)
        lines.append(
            f"{i:>4} {a.stem_width:>4} {depths:>12} {widths:>16} {a.neck.channels:>4} "
            f"{a.head.num_convs}x{a.head.width:<4} {comp} {c.flops.total_gflops:7.3f} {c.flops.params_m:9.3f}"
        )
    return "\n".join(lines)


def format_latency(candidates, space) -> str:
    """Predicted milliseconds by component, one row per candidate, from the space's latency table."""
    ceiling = f", ceiling {space.max_latency_ms:g} ms" if space.max_latency_ms is not None else ""
    lines = [
        f"predicted ms (network alone) from {space.latency_table}{ceiling}",
        f"{'#':>4} " + " ".join(f"{c:>6}" for c in COMPONENTS) + f" {'total':>8}",
    ]
    for i, c in enumerate(candidates):
        parts = " ".join(f"{c.latency_ms[k]:6.2f}" for k in COMPONENTS)
        lines.append(f"{i:>4} {parts} {c.latency_total_ms:8.2f}")
    return "\n".join(lines)


def write_candidates(candidates, out: Path, space, budget: float, seed: int) -> None:
    """Write every candidate into a temporary folder, then move it into place as a whole."""
    with staged_folder(out) as tmp:
        rows = []
        for i, c in enumerate(candidates):
            name = f"arch_{i:04d}.json"
            atomic_write_text(tmp / name, c.arch.to_json())
            row = {"id": i, "file": name, "arch": c.arch.to_dict(), "flops": c.flops.to_dict()}
            if c.latency_ms is not None:
                row["predicted_latency_ms"] = {**c.latency_ms, "total": c.latency_total_ms}
            rows.append(row)
        summary = {"space": space.to_dict(), "budget_gflops": budget, "seed": seed, "candidates": rows}
        atomic_write_json(tmp / "candidates.json", summary)
