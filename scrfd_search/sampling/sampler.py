"""Budgeted sampling: distinct architectures inside a GFLOPs budget, prefiltered in closed form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scrfd_search.builders import build_model
from scrfd_search.errors import UserError
from scrfd_search.flops.analytic import count_flops, recount_neck_head
from scrfd_search.flops.measure import measure_flops
from scrfd_search.flops.report import BACKBONE_COMPONENTS, FlopsReport
from scrfd_search.latency.budget import LatencyBudget, space_latency
from scrfd_search.sampling.share_guided import ShareGuide, ShareRanges
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import Backbone, NeckHead, SearchSpace

AcceptFn = Callable[[ArchSpec, FlopsReport], bool]
ProgressFn = Callable[["SamplingProgress"], None]
BackboneDraw = Callable[[np.random.Generator], Backbone | None]
DRAWS_PER_CANDIDATE = 2000
MIN_DRAWS = 20000
# share-guided draws all meet the ranges; some miss the budget or repeat an earlier candidate
GUIDED_DRAWS_PER_CANDIDATE = 200
GUIDED_MIN_DRAWS = 2000


@dataclass(frozen=True)
class Candidate:
    """An architecture accepted into the budget, with its FLOPs breakdown."""

    arch: ArchSpec
    flops: FlopsReport
    latency_ms: dict[str, float] | None = None  # predicted ms by component, when the space names a latency table
    latency_total_ms: float | None = None  # the prediction held against the ceiling (the components' sum may
    # differ from it in the last bit)


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
    low, high = space.extreme_archs()
    return count_flops(low, space.input_shape).total_gflops, count_flops(high, space.input_shape).total_gflops


def gflops_band(space: SearchSpace, budget_gflops: float | None = None) -> tuple[float, float]:
    """(low, high) GFLOPs a candidate must fall in: the budget's band, or, for a space with a latency ceiling
    and no budget, all the space reaches (widened by the tolerance fvcore and the closed form may differ by)."""
    if budget_gflops is not None or space.budget_gflops is not None:
        return space.budget_range(budget_gflops)
    cheapest, dearest = reachable_gflops(space)
    return cheapest * (1 - space.tolerance), dearest * (1 + space.tolerance)


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
    shares: ShareRanges | None = None,
) -> list[Candidate]:
    """Draw n distinct architectures within the budget; closed-form prefilter, then fvcore confirmation.

    Each draw takes a backbone uniformly from the space; the backbone is kept when `accept` (which must
    depend on the backbone alone, e.g. its stage shares) passes and at least one neck/head setting of the
    space brings the detector inside the budget; then one of those settings is chosen uniformly. Step-1
    spaces have a single neck/head setting, so this is plain rejection sampling there; in step 2 it
    avoids rejecting a good backbone for an unlucky neck/head draw. With `shares` (component -> [low, high]
    share of backbone GFLOPs) the backbones are share-guided (see _backbone_source). A space with a latency
    ceiling keeps only candidates its table predicts under it.
    """
    if n < 1:
        raise UserError(f"--n: {n} must be at least 1")
    low, high = gflops_band(space, budget_gflops)
    check_feasible(space, low, high)
    latency = space_latency(space)
    _check_latency_floor(space, latency)
    rng = np.random.default_rng(seed)
    options = space.neck_head_options()
    draw_backbone, check, default_draws = _backbone_source(space, shares, accept, options, low, high)
    max_draws = max_draws or max(default_draws[0], default_draws[1] * n)
    seen: set[str] = set()
    found: list[Candidate] = []
    draws = in_budget = confirmed = rejected = 0
    while len(found) < n:
        if draws >= max_draws:
            raise UserError(_exhausted_message(space, low, high, draws, len(found), n, check is not None, latency))
        backbone = draw_backbone(rng)
        draws += 1
        if backbone is None:
            continue
        fitting = _fitting_options(space, backbone, options, low, high, check, latency)
        if not fitting:
            continue
        in_budget += 1
        arch, estimate = fitting[int(rng.integers(len(fitting)))]
        if arch.key() in seen:
            continue
        seen.add(arch.key())
        report = _confirm(arch, space.input_shape) if confirm else estimate
        if confirm and not low <= report.total_gflops <= high:
            rejected += 1
            continue
        confirmed += confirm
        found.append(_candidate(arch, report, latency))
        if progress is not None:
            progress(SamplingProgress(draws, in_budget, len(found), n, confirmed, rejected))
    return found


def _candidate(arch: ArchSpec, report: FlopsReport, latency: LatencyBudget | None) -> Candidate:
    """An accepted arch with its FLOPs and, under a latency table, its predicted ms."""
    if latency is None:
        return Candidate(arch, report)
    return Candidate(arch, report, latency.table.predict_components(arch), latency.table.predict_ms(arch))


def _check_latency_floor(space: SearchSpace, latency: LatencyBudget | None) -> None:
    """Fail at once when even the space's smallest detector is predicted over the latency ceiling."""
    if latency is None or latency.max_ms is None:
        return
    smallest = space.extreme_archs()[0]  # the fewest blocks and tower units
    floor = latency.table.floor_ms(smallest)
    if floor > latency.max_ms:
        latency.predict(smallest)
        raise UserError(
            f"{space.source}: no detector of the space can be predicted under the ceiling (at least "
            f"{floor:.2f} ms); {latency.shortfall()}"
        )


def _backbone_source(
    space: SearchSpace,
    shares: ShareRanges | None,
    accept: AcceptFn | None,
    options: list[NeckHead],
    low: float,
    high: float,
) -> tuple[BackboneDraw, AcceptFn | None, tuple[int, int]]:
    """How backbones are drawn, the exact check on each, and (minimum draws, draws per candidate) for max_draws.

    With `shares` (e.g. ShareConstraint.ranges) the backbones come from share_guided.ShareGuide: about one
    uniform draw in 400,000 meets five +-10% ranges, so it draws among the qualifying backbones directly
    (enumerated, or by rejection in bulk with tabulated stage costs, whichever is fast), each with the
    probability the uniform draw gives it: the candidates follow exactly the distribution of plain
    rejection sampling, without its wait. Each is then checked like any draw (closed form: the ranges,
    `accept`, the budget); max_draws then counts these guided draws.
    """
    if shares is None:
        return space.sample_backbone, accept, (MIN_DRAWS, DRAWS_PER_CANDIDATE)
    guide = _share_guide(space, shares, options, low, high)
    return guide.draw, _within_shares(shares, accept), (GUIDED_MIN_DRAWS, GUIDED_DRAWS_PER_CANDIDATE)


def _fitting_options(
    space: SearchSpace,
    backbone: Backbone,
    options: list[NeckHead],
    low: float,
    high: float,
    accept: AcceptFn | None,
    latency: LatencyBudget | None = None,
) -> list[tuple[ArchSpec, FlopsReport]]:
    """The (arch, closed-form FLOPs) of every neck/head setting that puts this backbone in budget (and, with a
    latency ceiling, under it by prediction)."""
    cheapest = space.build(backbone, options[0])
    cheapest_flops = count_flops(cheapest, space.input_shape)
    if cheapest_flops.total_gflops > high:
        return []
    if accept is not None and not accept(cheapest, cheapest_flops):
        return []
    if len(options) > 1:
        dearest = space.build(backbone, options[-1])
        if recount_neck_head(cheapest_flops, dearest).total_gflops < low:
            return []
    fitting = []
    for option in options:
        arch = space.build(backbone, option)
        flops = cheapest_flops if option == options[0] else recount_neck_head(cheapest_flops, arch)
        if low <= flops.total_gflops <= high:
            fitting.append((arch, flops))
    if latency is not None and latency.max_ms is not None:
        return [(a, f) for a, f in fitting if latency.fits(a)]
    return fitting


def _share_guide(
    space: SearchSpace, shares: ShareRanges, options: list[NeckHead], low: float, high: float
) -> ShareGuide:
    """The guided backbone draw for these ranges; fails at once when no backbone of the space meets them."""
    guide = ShareGuide(space, shares, backbone_window(space, options, low, high))
    if guide.empty:
        ranges = ", ".join(f"{c} {100 * lo:.1f}-{100 * hi:.1f}%" for c, (lo, hi) in shares.items())
        raise UserError(
            f"{space.source}: no backbone of this space has its GFLOPs shares inside the constraint ({ranges}) "
            f"and room for a neck/head within {low:.3f}-{high:.3f} GFLOPs: widen the share ranges or change the budget"
        )
    return guide


def backbone_window(space: SearchSpace, options: list[NeckHead], low: float, high: float) -> tuple[float, float]:
    """Backbone GFLOPs that leave room for some neck/head setting to land the detector in [low, high]."""
    # the neck's laterals grow with the backbone's output channels: bound them with the narrowest and widest
    narrowest, widest = (
        Backbone(space.stem_width.min, tuple(r.min for r in space.depth), w) for w in _width_extremes(space)
    )
    cheapest = min(_neck_head_gflops(space, narrowest, o) for o in options)
    dearest = max(_neck_head_gflops(space, widest, o) for o in options)
    return low - dearest, high - cheapest


def _width_extremes(space: SearchSpace) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The smallest and the largest sorted stage widths of the space."""
    return tuple(sorted(r.min for r in space.width)), tuple(sorted(r.max for r in space.width))


def _neck_head_gflops(space: SearchSpace, backbone: Backbone, option: NeckHead) -> float:
    """GFLOPs of the neck and head of one setting on this backbone."""
    report = count_flops(space.build(backbone, option), space.input_shape)
    return report.gflops["neck"] + report.gflops["head"]


def _within_shares(shares: ShareRanges, accept: AcceptFn | None) -> AcceptFn:
    """The exact check behind a share-guided draw: every backbone share in its range, then `accept`."""
    unknown = set(shares) - set(BACKBONE_COMPONENTS)
    if unknown:
        raise ValueError(
            f"shares: unknown backbone part {sorted(unknown)[0]!r} (expected {', '.join(BACKBONE_COMPONENTS)})"
        )

    def check(arch: ArchSpec, flops: FlopsReport) -> bool:
        """Whether the shares fall in their ranges and accept (if any) passes."""
        got = flops.backbone_shares()
        if not all(lo <= got[c] <= hi for c, (lo, hi) in shares.items()):
            return False
        return accept is None or accept(arch, flops)

    return check


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
    return measure_flops(build_model(arch, init_weights=False), input_shape)


def _exhausted_message(
    space: SearchSpace,
    low: float,
    high: float,
    draws: int,
    found: int,
    n: int,
    constrained: bool,
    latency: LatencyBudget | None = None,
) -> str:
    """Explain an infeasible or nearly infeasible request."""
    if latency is not None and latency.max_ms is not None:
        return (
            f"{space.source}: only {found} of {n} candidates within {low:.3f}-{high:.3f} GFLOPs and under "
            f"{latency.max_ms:g} ms after {draws} draws; {latency.shortfall()}"
        )
    cheapest, dearest = reachable_gflops(space)
    extra = " and the share constraint" if constrained else ""
    advice = ", ask for fewer candidates or widen the share ranges" if constrained else " or narrow the ranges"
    return (
        f"{space.source}: only {found} of {n} candidates found within {low:.3f}-{high:.3f} GFLOPs{extra} "
        f"after {draws} draws; the space reaches {cheapest:.3f}-{dearest:.3f} GFLOPs: "
        f"move the budget toward the middle of that range{advice}"
    )
