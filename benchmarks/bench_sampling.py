"""Budgeted sampling speed: closed-form prefilter + fvcore confirmation against fvcore-only rejection.

For each regime it times producing N budget-qualified candidates both ways in the same run, and the
closed-form counter's evaluations per second. fvcore-only sampling is slow (one model build and trace
per draw, at a ~2% acceptance rate): it runs until N candidates or --fvcore-seconds, and past that its
time for N is extrapolated from its own measured seconds per draw and the acceptance rate measured by
the closed-form run on the same space and seed (printed as 'extrapolated').

    .venv/bin/python benchmarks/bench_sampling.py [--n 64] [--fvcore-seconds 120] [--regimes 0.5 2.5 10 34]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scrfd_search.builders import build_model
from scrfd_search.flops.analytic import count_flops
from scrfd_search.flops.measure import measure_flops
from scrfd_search.sampling.sampler import sample_candidates
from scrfd_search.space.search_space import SearchSpace

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def closed_form_rate(space: SearchSpace, seconds: float = 2.0) -> float:
    """Closed-form FLOPs evaluations per second on freshly drawn architectures."""
    rng = np.random.default_rng(0)
    archs = [space.sample_arch(rng) for _ in range(2000)]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count_flops(archs[done % len(archs)], space.input_shape)
        done += 1
    return done / (time.perf_counter() - start)


def prefiltered(space: SearchSpace, n: int, seed: int) -> tuple[float, float]:
    """Seconds to get n candidates with prefilter + fvcore, and the draws' budget acceptance rate."""
    stats = {}
    start = time.perf_counter()
    sample_candidates(space, n, seed, confirm=True, progress=lambda p: stats.update(p=p))
    seconds = time.perf_counter() - start
    p = stats["p"]
    return seconds, p.in_budget / p.draws


def fvcore_only(space: SearchSpace, n: int, seed: int, cap: float, acceptance: float) -> tuple[float, bool]:
    """Seconds for n candidates by measuring every draw with fvcore (extrapolated past cap)."""
    rng = np.random.default_rng(seed)
    low, high = space.budget_range()
    seen: set[str] = set()
    found = draws = 0
    start = time.perf_counter()
    while found < n and time.perf_counter() - start < cap:
        arch = space.sample_arch(rng)
        if arch.key() in seen:
            continue
        seen.add(arch.key())
        draws += 1
        found += low <= measure_flops(build_model(arch, init_weights=False), space.input_shape).total_gflops <= high
    elapsed = time.perf_counter() - start
    if found >= n:
        return elapsed, False
    per_draw = elapsed / draws
    return per_draw * n / acceptance, True


def main() -> None:
    """Run every regime and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fvcore-seconds", type=float, default=120.0)
    parser.add_argument("--regimes", nargs="+", default=["0.5", "2.5", "10", "34"])
    parser.add_argument("--step", type=int, default=1, choices=(1, 2))
    args = parser.parse_args()
    print(f"{'regime':>7} {'prefilter+fvcore s':>19} {'fvcore-only s':>14} {'speed-up':>9} {'closed-form eval/s':>19}")
    for regime in args.regimes:
        space = SearchSpace.load(SPACES / f"scrfd_{regime}gf_step{args.step}.yaml")
        rate = closed_form_rate(space)
        fast, acceptance = prefiltered(space, args.n, args.seed)
        slow, extrapolated = fvcore_only(space, args.n, args.seed, args.fvcore_seconds, acceptance)
        note = " (extrapolated)" if extrapolated else ""
        print(f"{regime + 'GF':>7} {fast:19.1f} {slow:14.1f} {slow / fast:8.1f}x {rate:19.0f}{note}", flush=True)


if __name__ == "__main__":
    main()
