"""Latency predictor accuracy and speed, per regime, against whole detectors measured in the same run.

For each regime (a step-2 search space) it builds a latency table on this machine (or reuses one from
--tables that matches this machine), draws --candidates architectures inside the space's FLOPs budget
with a seed other than the table's fit models, measures each whole detector (network alone, as
`scrfd-search latency` does, runs interleaved across candidates), and predicts each from the table.
It prints, per regime:
  within10   share of predictions within +-10% of the measurement (target: >= 90% at 1 thread, onnxruntime)
  mean_err   mean absolute error in %, and the mean signed error (bias)
  tau        Kendall tau of predicted against measured order (scipy.stats.kendalltau)
  flops_dis  share of candidate pairs that FLOPs order one way and measured latency the other
  pred_dis   the same for the predictor's order
  pred/s     predictions per second on fresh architectures (cold cache) (target: >= 1,000)
and writes every number to --out (JSON). Timings on a shared machine are noisy: the script prints the
machine's load average before and after, and the candidates' p10-p90 spread.

    .venv/bin/python benchmarks/bench_latency_predictor.py [--regimes 0.5 2.5 10 34] [--candidates 20]
        [--runs 10] [--threads 1] [--backend onnxruntime] [--tables DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from scrfd_search.flops.analytic import count_flops
from scrfd_search.io_utils import atomic_write_json
from scrfd_search.latency.budget import expected_fingerprint
from scrfd_search.latency.build import build_table
from scrfd_search.latency.measure import Timing, interleaved_samples
from scrfd_search.latency.table import LatencyTable, check_fingerprint, load_latency_table
from scrfd_search.latency_targets import Settings, Target, Timers
from scrfd_search.sampling.sampler import sample_candidates
from scrfd_search.space.search_space import SearchSpace

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
REGIMES = {"0.5": "scrfd_0.5gf_step2.yaml", "2.5": "scrfd_2.5gf_step2.yaml", "10": "scrfd_10gf_step2.yaml"}
REGIMES["34"] = "scrfd_34gf_step2.yaml"
CANDIDATE_SEED_OFFSET = 1000  # the table's fit models use the seed itself
CHUNK = 4  # candidates whose sessions are alive (and interleaved) at once


def table_for(space: SearchSpace, args: argparse.Namespace) -> LatencyTable:
    """A table of this space on this machine: reused from --tables when its fingerprint matches, else built."""
    path = args.tables / f"{space.name}-{args.backend}-{args.threads}t.json"
    if path.is_file():
        table = load_latency_table(path)
        try:
            check_fingerprint(table, expected_fingerprint(table, space.input_shape) | {"threads": args.threads}, "")
            print(f"  reusing {path}")
            return table
        except Exception as exc:  # a table from elsewhere: measure a new one
            print(f"  not reusing {path}: {exc}")
    # Built in a child process: a process that has just timed hundreds of parts times whole detectors about
    # 10 % slower (docs/latency.md), and the candidates must be timed as a fresh `latency` process times them.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(build_and_save, space, args, path).result()
    print()
    return load_latency_table(path)


def build_and_save(space: SearchSpace, args: argparse.Namespace, path: Path) -> None:
    """Measure the space's table with its fit models on this machine and write it to path."""
    from scrfd_search.latency_targets import whole_model_timer

    settings = Settings(args.backend, "cpu", args.threads, 1, space.input_shape)
    fit = [c.arch for c in sample_candidates(space, args.fit_models, args.seed, confirm=False)]
    table = build_table(
        [space],
        args.backend,
        "cpu",
        args.threads,
        1,
        space.input_shape,
        grid_points=args.grid_points,
        runs=args.table_runs,
        fit_archs=fit,
        time_whole=whole_model_timer(settings, args.table_runs, 2),
        progress=lambda m: print(f"\r  {m:<90}", end="", flush=True),
    )
    atomic_write_json(path, table.to_dict())


def measure(archs: list, space: SearchSpace, args: argparse.Namespace) -> list[Timing]:
    """Network-alone timings of archs, interleaved within chunks of CHUNK."""
    settings = Settings(args.backend, "cpu", args.threads, 1, space.input_shape)
    timings: list[Timing] = []
    for start in range(0, len(archs), CHUNK):
        timers = [Timers(Target("c", arch=a), settings, end_to_end=False) for a in archs[start : start + CHUNK]]
        try:
            timings += [Timing.of(s) for s in interleaved_samples([t.network for t in timers], args.runs, 2)]
        finally:
            for t in timers:
                t.close()
        print(f"\r  measured {len(timings)}/{len(archs)}", end="", flush=True)
    print()
    return timings


def discordant(a: list[float], b: list[float]) -> float:
    """Share of pairs ordered one way by a and the other by b (ties in either count as agreeing)."""
    pairs = list(combinations(range(len(a)), 2))
    return sum((a[i] - a[j]) * (b[i] - b[j]) < 0 for i, j in pairs) / len(pairs)


def predictions_per_second(table: LatencyTable, space: SearchSpace, seconds: float = 2.0) -> float:
    """Predictions per second on fresh architectures, each on a freshly loaded table (nothing cached)."""
    rng = np.random.default_rng(0)
    archs = [space.sample_arch(rng) for _ in range(5000)]
    fresh = replace(table)  # a new instance: an empty part cache
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds and done < len(archs):
        fresh.predict_ms(archs[done])
        done += 1
    return done / (time.perf_counter() - start)


def regime(name: str, args: argparse.Namespace) -> dict:
    """Build or load the table, measure and predict the candidates, compute the figures."""
    space = replace(SearchSpace.load(SPACES / REGIMES[name]), max_latency_ms=None, latency_table=None)
    print(f"[{name} GF] {space.name}")
    table = table_for(space, args)
    archs = [c.arch for c in sample_candidates(space, args.candidates, args.seed + CANDIDATE_SEED_OFFSET)]
    timings = measure(archs, space, args)
    measured = [t.median_ms for t in timings]
    predicted = [table.predict_ms(a) for a in archs]
    gflops = [count_flops(a, space.input_shape).total_gflops for a in archs]
    errors = [p / m - 1 for p, m in zip(predicted, measured, strict=True)]
    spread = [(t.p90_ms - t.p10_ms) / t.median_ms for t in timings]
    return {
        "regime": name,
        "space": space.name,
        "candidates": len(archs),
        "within10": float(np.mean([abs(e) <= 0.10 for e in errors])),
        "mean_abs_error": float(np.mean(np.abs(errors))),
        "mean_signed_error": float(np.mean(errors)),
        "kendall_tau": float(kendalltau(predicted, measured).statistic),
        "flops_latency_discordant": discordant(gflops, measured),
        "predicted_latency_discordant": discordant(predicted, measured),
        "predictions_per_s": predictions_per_second(table, space),
        "median_p10_p90_spread": float(np.median(spread)),
        "table_build_seconds": table.meta.get("build_seconds"),
        "rows": [
            {"arch": a.to_dict(), "gflops": g, "measured": t.to_dict(), "predicted_ms": p}
            for a, g, t, p in zip(archs, gflops, timings, predicted, strict=True)
        ],
    }


def main() -> None:
    """Run every regime and print the summary table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per candidate")
    parser.add_argument("--table-runs", type=int, default=20, help="timed runs per table part and fit model")
    parser.add_argument("--grid-points", type=int, default=5)
    parser.add_argument("--fit-models", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tables", type=Path, default=Path("results/latency_tables"), help="tables to reuse/keep")
    parser.add_argument("--out", type=Path, default=Path("results/bench_latency_predictor.json"))
    args = parser.parse_args()
    args.tables.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    start = time.time()
    results = [regime(name, args) for name in args.regimes]
    load_after = os.getloadavg()
    print(f"\n{args.backend}, {args.threads} thread(s), {args.candidates} candidates per regime, {args.runs} runs each")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (on {os.cpu_count()} CPUs)")
    header = f"{'regime':>7} {'within10':>9} {'mean_err':>9} {'bias':>7} {'tau':>6} {'flops_dis':>9} {'pred_dis':>9}"
    print(header + f" {'pred/s':>9} {'p10-p90':>8}")
    for r in results:
        print(
            f"{r['regime'] + ' GF':>7} {100 * r['within10']:8.0f}% {100 * r['mean_abs_error']:8.1f}% "
            f"{100 * r['mean_signed_error']:+6.1f}% {r['kendall_tau']:6.2f} "
            f"{100 * r['flops_latency_discordant']:8.1f}% "
            f"{100 * r['predicted_latency_discordant']:8.1f}% {r['predictions_per_s']:9.0f} "
            f"{100 * r['median_p10_p90_spread']:7.1f}%"
        )
    summary = {
        "backend": args.backend,
        "threads": args.threads,
        "load_average_before_after": [load_before[0], load_after[0]],
        "seconds": round(time.time() - start, 1),
        "regimes": results,
    }
    atomic_write_json(args.out, summary)
    print(f"wrote {args.out} ({summary['seconds']} s)")


if __name__ == "__main__":
    main()
