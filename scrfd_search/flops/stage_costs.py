"""Tabulated closed-form GFLOPs of every backbone stage choice a space allows, for vectorised sampling.

A stage's cost depends only on its input channels (the stem's width for C2, the previous stage's output
after), its own depth and width, and the fixed input size. So each stage's cost is computed once (with
the closed-form counter) for every (input, depth, width) the space allows, and any number of backbones
can then be costed, stage by stage, with numpy indexing instead of one count_flops call each.

Stage options use every width any stage range allows (SearchSpace.sample_backbone sorts the per-stage
width draws, so with per-stage ranges a stage can receive another stage's value); sorted_draw_counts
says how many per-stage draws give a sorted tuple (zero for one no draw gives).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from scrfd_search.flops import analytic
from scrfd_search.space.arch import BOTTLENECK_EXPANSION
from scrfd_search.space.search_space import Backbone, IntRange, SearchSpace


@dataclass(frozen=True)
class StageTable:
    """One stage's (depth, width) options and their GFLOPs for every input state."""

    depths: np.ndarray  # (options,)
    widths: np.ndarray  # (options,)
    states: np.ndarray  # (states,) ascending: stem widths for C2, the previous stage's width after
    gflops: np.ndarray  # (states, options)
    allowed: np.ndarray  # (states, options): widths never decrease and the later stages can follow
    tail_low: np.ndarray  # (options,): GFLOPs of the cheapest way to finish the backbone after this option
    tail_high: np.ndarray  # (options,): ... and of the dearest

    def option_index(self, depths: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """Column of each (depth, width) pair."""
        depth_values = np.unique(self.depths)
        return np.searchsorted(np.unique(self.widths), widths) * len(depth_values) + np.searchsorted(
            depth_values, depths
        )

    def state_index(self, states: np.ndarray) -> np.ndarray:
        """Row of each input state."""
        return np.searchsorted(self.states, states)

    def bounds(self, state: int) -> tuple[float, float]:
        """Cheapest and dearest GFLOPs of this stage and the later ones from a state (inf, inf if none)."""
        row = int(self.state_index(np.array([state]))[0])
        allowed = self.allowed[row]
        if not allowed.any():
            return np.inf, np.inf
        costs = self.gflops[row][allowed]
        return float((costs + self.tail_low[allowed]).min()), float((costs + self.tail_high[allowed]).max())


@dataclass(frozen=True)
class BackboneTables:
    """Stem and stage cost tables of a space, and the space's uniform backbone draw in vectorised form."""

    stems: np.ndarray
    stem_gflops: np.ndarray
    stages: tuple[StageTable, ...]
    depth_ranges: tuple[IntRange, ...]
    width_ranges: tuple[IntRange, ...]

    def uniform(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`size` backbones (stems, depths, widths) drawn as SearchSpace.sample_backbone draws one."""
        stems = self.stems[rng.integers(len(self.stems), size=size)]
        depths = np.column_stack([_draw(r, rng, size) for r in self.depth_ranges])
        widths = np.sort(np.column_stack([_draw(r, rng, size) for r in self.width_ranges]), axis=1)
        return stems, depths, widths

    def gflops(self, stems: np.ndarray, depths: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """GFLOPs of stem, C2..C5 (columns) of each backbone (rows)."""
        parts = [self.stem_gflops[np.searchsorted(self.stems, stems)]]
        states = stems
        for j, table in enumerate(self.stages):
            parts.append(table.gflops[table.state_index(states), table.option_index(depths[:, j], widths[:, j])])
            states = widths[:, j]
        return np.column_stack(parts)


def _draw(r: IntRange, rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` values drawn uniformly from an IntRange."""
    return r.min + r.step * rng.integers(0, (r.max - r.min) // r.step + 1, size=size)


def backbones(stems: np.ndarray, depths: np.ndarray, widths: np.ndarray) -> list[Backbone]:
    """Rows of (stem, depths, widths) arrays as Backbones of plain ints."""
    return [
        Backbone(int(s), tuple(int(x) for x in d), tuple(int(x) for x in w))  # type: ignore[arg-type]
        for s, d, w in zip(stems, depths, widths, strict=True)
    ]


def backbone_tables(space: SearchSpace) -> BackboneTables:
    """Cost tables for every stem and stage choice of the space."""
    size = (int(space.input_shape[0]), int(space.input_shape[1]))
    stems = np.array(space.stem_width.values())
    stem_flops = np.array([analytic.stem_cost(space.block, size, int(w))[0] for w in stems], dtype=float) / 1e9
    size = analytic.stem_cost(space.block, size, int(stems[0]))[2]
    widths = sorted({w for r in space.width for w in r.values()})
    costs = []
    states = [int(s) for s in stems]
    for j in range(4):
        costs.append(_stage_costs(space, j, size, states, widths))
        size = costs[-1][-1]
        states = widths
    tables: list[StageTable] = []
    for j in reversed(range(4)):
        depths, option_widths, gflops, state_values, _ = costs[j]
        tail_low, tail_high = _tails(tables[0] if tables else None, option_widths)
        # C2's width is not tied to the stem's; later widths never decrease
        floor = state_values[:, None] if j > 0 else np.zeros((len(state_values), 1), dtype=int)
        allowed = np.isfinite(tail_low)[None, :] & (option_widths[None, :] >= floor)
        tables.insert(0, StageTable(depths, option_widths, state_values, gflops, allowed, tail_low, tail_high))
    return BackboneTables(stems, stem_flops, tuple(tables), tuple(space.depth), tuple(space.width))


def _tails(following: StageTable | None, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per option width: the cheapest and dearest GFLOPs of the stages after it (0 after C5)."""
    if following is None:
        return np.zeros(len(widths)), np.zeros(len(widths))
    bounds = {int(w): following.bounds(int(w)) for w in np.unique(widths)}
    return np.array([bounds[int(w)][0] for w in widths]), np.array([bounds[int(w)][1] for w in widths])


def _stage_costs(
    space: SearchSpace, j: int, size: analytic.Size, states: list[int], widths: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, analytic.Size]:
    """Stage j's options (width outer, depth inner), their GFLOPs per input state, and its output size."""
    block, stride = space.block, analytic.stage_stride(space.block, j)
    depth_values = space.depth[j].values()
    pairs = [(d, w) for w in widths for d in depth_values]
    factor = BOTTLENECK_EXPANSION if block == "bottleneck" and j > 0 else 1  # the stem's width is its output
    gflops = np.zeros((len(states), len(pairs)))
    out_size = size
    for row, state in enumerate(states):
        per_width = {}
        for w in widths:
            one, _, out_size = analytic.stage(block, size, state * factor, w, 1, stride)
            two = analytic.stage(block, size, state * factor, w, 2, stride)[0]
            per_width[w] = (one, two - one)  # the first block, and each later one (same size, same channels)
        gflops[row] = [per_width[w][0] + (d - 1) * per_width[w][1] for d, w in pairs]
    depths = np.array([d for d, _ in pairs])
    option_widths = np.array([w for _, w in pairs])
    return depths, option_widths, gflops / 1e9, np.array(states), out_size


def sorted_draw_counts(widths: np.ndarray, ranges: tuple[IntRange, ...]) -> np.ndarray:
    """For rows of non-decreasing widths: how many per-stage draws (stage i from ranges[i]) sort to each."""
    # a sorted tuple with value multiplicities m arises from (valid orderings of its positions) / prod(m!) draws
    repeats = np.ones(len(widths))
    run = np.ones(len(widths))
    for i in range(1, widths.shape[1]):
        run = np.where(widths[:, i] == widths[:, i - 1], run + 1, 1)
        repeats *= run  # multiplying 1, 2, .., m along a run of m equal values gives m!
    if all(r == ranges[0] for r in ranges):
        return math.factorial(widths.shape[1]) / repeats
    valid = np.zeros(len(widths))
    for order in itertools.permutations(range(widths.shape[1])):
        fits = np.ones(len(widths), dtype=bool)
        for stage, column in enumerate(order):
            r, v = ranges[stage], widths[:, column]
            fits &= (v >= r.min) & (v <= r.max) & ((v - r.min) % r.step == 0)
        valid += fits
    return valid / repeats
