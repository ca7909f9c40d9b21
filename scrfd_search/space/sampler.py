"""Budgeted sampling: distinct architectures inside a GFLOPs budget, prefiltered in closed form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scrfd_search.errors import UserError
from scrfd_search.flops.report import FlopsReport
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import SearchSpace

AcceptFn = Callable[[ArchSpec, FlopsReport], bool]
ProgressFn = Callable[["SamplingProgress"], None]
DRAWS_PER_CANDIDATE = 2000
MIN_DRAWS = 20000


@dataclass(frozen=True)
class Candidate:
    """An architecture accepted into the budget, with its FLOPs breakdown."""

    arch: ArchSpec
    flops: FlopsReport


@dataclass(frozen=True)
class SamplingProgress:
    """Where a sampling run stands: draws made, candidates accepted, fvcore confirmations."""

    draws: int
    in_budget: int
    accepted: int
    wanted: int
    confirmed_by_fvcore: int
    rejected_by_fvcore: int

    @property
    def acceptance_rate(self) -> float:
        """Fraction of draws that became candidates."""
        return self.accepted / self.draws if self.draws else 0.0


def reachable_gflops(space: SearchSpace) -> tuple[float, float]:
    """The cheapest and the most expensive detector the space can build, in GFLOPs."""
    from scrfd_search.flops.analytic import count_flops

    low, high = space.extreme_archs()
    return count_flops(low, space.input_shape).total_gflops, count_flops(high, space.input_shape).total_gflops


def sample_candidates(
    space: SearchSpace,
    n: int,
    seed: int,
    *,
    budget_gflops: float | None = None,
    accept: AcceptFn | None = None,
    confirm: bool = True,
    max_draws: int | None = None,
    progress: ProgressFn | None = None,
) -> list[Candidate]:
    """Draw n distinct architectures within the budget; closed-form prefilter, then fvcore confirmation."""
    from scrfd_search.flops.analytic import count_flops

    if n < 1:
        raise UserError(f"--n: {n} must be at least 1")
    low, high = space.budget_range(budget_gflops)
    check_feasible(space, low, high)
    rng = np.random.default_rng(seed)
    max_draws = max_draws or max(MIN_DRAWS, DRAWS_PER_CANDIDATE * n)
    seen: set[str] = set()
    found: list[Candidate] = []
    draws = in_budget = confirmed = rejected = 0
    while len(found) < n:
        if draws >= max_draws:
            raise UserError(_exhausted_message(space, low, high, draws, len(found), n, accept is not None))
        arch = space.sample_arch(rng)
        draws += 1
        key = arch.key()
        if key in seen:
            continue
        seen.add(key)
        estimate = count_flops(arch, space.input_shape)
        if not low <= estimate.total_gflops <= high:
            continue
        in_budget += 1
        if accept is not None and not accept(arch, estimate):
            continue
        report = estimate
        if confirm:
            report = _confirm(arch, space.input_shape)
            if not low <= report.total_gflops <= high:
                rejected += 1
                continue
            confirmed += 1
        found.append(Candidate(arch, report))
        if progress is not None:
            progress(SamplingProgress(draws, in_budget, len(found), n, confirmed, rejected))
    return found


def check_feasible(space: SearchSpace, low: float, high: float) -> None:
    """Fail at once when the budget lies outside what the space can reach."""
    cheapest, dearest = reachable_gflops(space)
    if high < cheapest or low > dearest:
        raise UserError(
            f"{space.source}: budget {low:.3f}-{high:.3f} GFLOPs is outside what this space can reach "
            f"({cheapest:.3f}-{dearest:.3f} GFLOPs at {space.input_shape[0]}x{space.input_shape[1]})"
        )


def _confirm(arch: ArchSpec, input_shape: tuple[int, int]) -> FlopsReport:
    """Measure the built detector with fvcore (the ground truth the closed form must match)."""
    from scrfd_search.flops.measure import measure_flops

    return measure_flops(arch, input_shape)


def _exhausted_message(
    space: SearchSpace, low: float, high: float, draws: int, found: int, n: int, constrained: bool
) -> str:
    """Explain an infeasible or nearly infeasible request."""
    cheapest, dearest = reachable_gflops(space)
    extra = " and the share constraint" if constrained else ""
    return (
        f"{space.source}: only {found} of {n} candidates found within {low:.3f}-{high:.3f} GFLOPs{extra} "
        f"after {draws} draws; the space reaches {cheapest:.3f}-{dearest:.3f} GFLOPs: "
        f"move the budget toward the middle of that range or narrow the ranges"
    )
