"""Step-2 sampling speed under the backbone-share constraint: share-guided draws against plain rejection.

For each regime and two constraints (the released SCRFD model's shares +-10%, and a constraint derived
as `launch --from` derives it, from the top 5 of 40 step-1 candidates with seeded random APs) it times
drawing N candidates with sample_candidates(..., shares=ranges) (closed form, no fvcore) and prints the
guided draws used and the method ShareGuide chose. Plain rejection (one uniform draw and count_flops
call each) is timed over --reject-draws draws and extrapolated to N candidates with the share of
uniform draws that qualify (printed as 'extrapolated': a lower bound, since it leaves out choosing the
neck/head of each qualifying backbone, which both ways pay; a real run of plain rejection took 290-430 s
for 20 candidates at 0.5 GF +-10%).

    .venv/bin/python benchmarks/bench_constrained_sampling.py [--n 20 320] [--regimes 0.5 2.5 10 34]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scrfd_search.flops.analytic import count_flops
from scrfd_search.sampling.sampler import backbone_window, sample_candidates
from scrfd_search.sampling.share_guided import ShareGuide
from scrfd_search.search.constraint import derive_constraint
from scrfd_search.search.store import TrialRecord
from scrfd_search.space.published import PUBLISHED
from scrfd_search.space.search_space import SearchSpace

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
PUBLISHED_BY_REGIME = {"0.5": "scrfd_500m", "2.5": "scrfd_2.5g", "10": "scrfd_10g", "34": "scrfd_34g"}


def published_ranges(regime: str) -> dict[str, tuple[float, float]]:
    """The released model's backbone shares +-10% (the SCRFD search tool's tolerance)."""
    shares = count_flops(PUBLISHED[PUBLISHED_BY_REGIME[regime]]).backbone_shares()
    return {c: (0.9 * s, 1.1 * s) for c, s in shares.items()}


def derived_ranges(regime: str, seed: int = 0) -> dict[str, tuple[float, float]]:
    """The constraint `launch --from` would derive from 40 finished step-1 trials with random APs."""
    space = SearchSpace.load(SPACES / f"scrfd_{regime}gf_step1.yaml")
    archs = [c.arch for c in sample_candidates(space, 40, seed, confirm=False)]
    hards = np.random.default_rng(seed).uniform(0.05, 0.6, size=len(archs))
    rows = [
        TrialRecord(f"t{i:02d}", a, count_flops(a, space.input_shape), "TERMINATED", hard=float(h))
        for i, (a, h) in enumerate(zip(archs, hards, strict=True))
    ]
    return derive_constraint(rows, from_experiment="step1", top_k=5, seed=seed).ranges


def qualifying_rate(space: SearchSpace, ranges: dict[str, tuple[float, float]]) -> float:
    """Share of the space's uniform backbone draws that meet the ranges (window ignored): exact where the
    guide enumerates, else measured on its 200,000-draw trial batch."""
    guide = ShareGuide(space, ranges, (0.0, np.inf))
    if guide.method == "reject":
        return guide.trial_rate()
    total = len(space.stem_width.values()) * np.prod([len(r.values()) for r in (*space.depth, *space.width)])
    return float(guide.cumulative[-1] / total) if len(guide.cumulative) else 0.0


def rejection_seconds_per_draw(space: SearchSpace, draws: int) -> float:
    """Seconds per plain rejection draw: one uniform backbone, built and counted in closed form."""
    rng = np.random.default_rng(0)
    option = space.neck_head_options()[0]
    start = time.perf_counter()
    for _ in range(draws):
        count_flops(space.build(space.sample_backbone(rng), option), space.input_shape)
    return (time.perf_counter() - start) / draws


def guided(space: SearchSpace, ranges: dict[str, tuple[float, float]], n: int) -> tuple[float, int, str]:
    """Seconds and guided draws for n candidates, and the method ShareGuide picks."""
    low, high = space.budget_range()
    method = ShareGuide(space, ranges, backbone_window(space, space.neck_head_options(), low, high)).method
    last = {}
    start = time.perf_counter()
    sample_candidates(space, n, 0, shares=ranges, confirm=False, progress=lambda p: last.update(p=p))
    return time.perf_counter() - start, last["p"].draws, method


def main() -> None:
    """Print one line per regime, constraint and N."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[20, 320])
    parser.add_argument("--regimes", nargs="+", default=list(PUBLISHED_BY_REGIME))
    parser.add_argument("--reject-draws", type=int, default=3000)
    args = parser.parse_args()
    for regime in args.regimes:
        space = SearchSpace.load(SPACES / f"scrfd_{regime}gf_step2.yaml")
        per_draw = rejection_seconds_per_draw(space, args.reject_draws)
        for label, ranges in (("published+-10%", published_ranges(regime)), ("derived top-5", derived_ranges(regime))):
            rate = qualifying_rate(space, ranges)
            for n in args.n:
                seconds, draws, method = guided(space, ranges, n)
                rejection = per_draw * n / rate if rate else float("inf")
                print(
                    f"{regime:>4} GF {label:15} n={n:4}: guided {seconds:6.2f} s ({draws} draws, {method}); "
                    f"plain rejection >= {rejection:8.1f} s extrapolated (1 in {1 / rate:,.0f} draws qualifies)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
