"""Fit a proposed architecture into the GFLOPs budget by changing only its neck and head.

Used by the Optuna searcher in step 2: the backbone's stage shares (the step-2 constraint) do not
depend on the neck and head, so a proposal whose backbone passes is kept, and among the neck/head
settings the space allows, the one nearest the proposal (in steps of each range) that lands the
whole detector inside the budget is taken. Without this, a TPE proposal meets both the share ranges
and the +-2% budget about once in 20,000 draws at 0.5 GF; with it, about once in a few hundred.
In step 1 the neck and head are fixed, and this reduces to a plain budget check.
"""

from __future__ import annotations

from collections.abc import Callable

from scrfd_search.flops.analytic import count_flops
from scrfd_search.flops.report import FlopsReport
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import IntRange, NeckHead, SearchSpace


def _position(r: IntRange, value: int) -> float:
    """Where value lies in the range, in units of the range's step."""
    return (value - r.min) / r.step


def nearest_neck_heads(space: SearchSpace, arch: ArchSpec) -> list[NeckHead]:
    """Every neck/head setting of the space (SearchSpace.neck_head_options), nearest to arch's first."""
    ranges = (space.neck_channels, space.head_num_convs, space.head_width)
    current = (arch.neck.channels, arch.head.num_convs, arch.head.width)
    options = space.neck_head_options()

    def distance(option: NeckHead) -> tuple[float, NeckHead]:
        """Manhattan distance in range steps, then the values themselves."""
        steps = sum(abs(_position(r, o) - _position(r, c)) for r, o, c in zip(ranges, option, current, strict=True))
        return steps, option

    return sorted(options, key=distance)


def fit_neck_head(
    space: SearchSpace,
    arch: ArchSpec,
    accept: Callable[[FlopsReport], bool],
    taken: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[ArchSpec, FlopsReport] | None:
    """The nearest variant of arch (same backbone) that accept() takes and is not taken, or None."""
    for option in nearest_neck_heads(space, arch):
        candidate = space.with_neck_head(arch, option)
        if candidate.key() in taken:
            continue
        flops = count_flops(candidate, space.input_shape)
        if accept(flops):
            return candidate, flops
    return None
