"""Share-guided backbone draws: the space's uniform draw conditioned on the share ranges, without the wait.

Step 2 keeps backbones whose stem, C2..C5 each take a share of backbone GFLOPs inside a given range.
With five ranges about +-10% wide only about one uniform draw in 400,000 qualifies, and plain
rejection with one count_flops call per draw takes minutes per handful of candidates. ShareGuide
gives the same distribution (the uniform draw of SearchSpace.sample_backbone, conditioned on the
ranges and on leaving room for a neck/head in the budget) in one of two exact ways, whichever is fast:

- rejection in bulk: uniform draws costed with numpy from per-stage cost tables (stage_costs), about a
  microsecond each, used when a fixed trial batch shows at least REJECT_MIN_RATE of draws qualify;
- enumeration, for tighter ranges: the qualifying backbones are listed stage by stage (branch and
  bound), keeping a prefix only while an interval for the backbone's total GFLOPs B stays non-empty:
  every known part k needs B in [F_k / hi_k, F_k / lo_k]; the later parts cost between the cheapest
  and dearest completion and take shares summing to [sum lo, sum hi] of B; and B must fit the window.
  These are necessary conditions and B is known at the last stage, so the leaves are exactly the
  qualifying backbones. Prefixes down to C4 are kept with the total weight of their C5 completions,
  the weight of a backbone being its probability under the uniform draw (stage_costs.sorted_draw_counts);
  a draw picks a prefix, then a C5 setting, in proportion to weight.

Rejection sampling from the uniform draw (what a general-purpose sampler would do) needs
thousands of draws per accepted backbone under tight share ranges; this walk needs one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scrfd_search.flops.report import BACKBONE_COMPONENTS
from scrfd_search.flops.stage_costs import (
    BackboneTables,
    StageTable,
    backbone_tables,
    backbones,
    sorted_draw_counts,
)
from scrfd_search.space.search_space import Backbone, SearchSpace

ShareRanges = Mapping[str, tuple[float, float]]
METHODS = ("auto", "enumerate", "reject")
# the interval arithmetic is a filter only (the exact check follows): never drop a boundary case for rounding
RELATIVE_SLACK = 1e-9
CHUNK_CELLS = 1_000_000  # (prefix, option) pairs evaluated at once: bounds the memory of one numpy step
MAX_PREFIXES = 2_000_000  # beyond this the ranges are loose enough for bulk rejection
REJECT_MIN_RATE = 1e-4  # at this rate bulk rejection needs ~10,000 table look-ups (~10 ms) per backbone
TRIAL_DRAWS = 200_000  # the fixed batch that measures the rate
TRIAL_SEED = 0  # the method chosen must not depend on the caller's seed: only the draws do
BATCH = 16_384
MAX_BATCHES_PER_DRAW = 100


@dataclass(frozen=True)
class Prefixes:
    """Backbone prefixes (stem and the first k stages) with the GFLOPs spent and the interval left for B."""

    stems: np.ndarray
    depths: np.ndarray  # (rows, k)
    widths: np.ndarray  # (rows, k)
    spent: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def states(self) -> np.ndarray:
        """What the next stage depends on: the stem width before C2, the previous stage's width after."""
        return self.widths[:, -1] if self.widths.shape[1] else self.stems

    def rows(self, rows: np.ndarray) -> Prefixes:
        """The given rows."""
        return Prefixes(*(getattr(self, f)[rows] for f in _PREFIX_FIELDS))


_PREFIX_FIELDS = ("stems", "depths", "widths", "spent", "low", "high")


class ShareGuide:
    """Draws backbones of a space whose stage shares fall in the ranges, as uniform draws conditioned on them."""

    def __init__(
        self,
        space: SearchSpace,
        ranges: ShareRanges,
        backbone_window: tuple[float, float],
        method: str = "auto",
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
        bounds = [ranges.get(c, (0.0, 1.0)) for c in BACKBONE_COMPONENTS]
        self.share_low = np.array([b[0] for b in bounds], dtype=float)
        self.share_high = np.array([b[1] for b in bounds], dtype=float)
        with np.errstate(divide="ignore"):
            self.inv_low, self.inv_high = 1.0 / self.share_low, 1.0 / self.share_high
        self.rest_low = [_tail_factor(self.share_low[k + 1 :].sum()) for k in range(5)]
        self.rest_high = [_tail_factor(self.share_high[k + 1 :].sum()) for k in range(5)]
        self.window = backbone_window
        self.tables: BackboneTables = backbone_tables(space)
        self.pending: deque[Backbone] = deque()
        self.prefixes: Prefixes | None = None
        self.cumulative = np.zeros(0)
        self.completion_cache: dict[int, np.ndarray] = {}  # prefix row -> running weights of its C5 settings
        if method == "auto":
            method = "reject" if self.trial_rate() >= REJECT_MIN_RATE else "enumerate"
        if method == "enumerate":
            self.prefixes = self._first_four()
            if self.prefixes is not None:
                self.cumulative = np.cumsum(self._completion_weights(self.prefixes))
        self.method = "enumerate" if self.prefixes is not None else "reject"

    @property
    def empty(self) -> bool:
        """Whether enumeration found no backbone meeting the ranges within the window (False when rejecting)."""
        return self.method == "enumerate" and (len(self.cumulative) == 0 or self.cumulative[-1] <= 0)

    def draw(self, rng: np.random.Generator) -> Backbone | None:
        """One backbone meeting the ranges, or None (nothing qualifies, or bulk rejection found none in time)."""
        if self.method == "reject":
            return self._next_hit(rng)
        if self.empty:
            return None
        return self._enumerated_draw(rng)

    def trial_rate(self) -> float:
        """Share of a fixed batch of uniform draws that meets the ranges and the window."""
        return float(self.qualifying(*self.tables.uniform(np.random.default_rng(TRIAL_SEED), TRIAL_DRAWS)).mean())

    def qualifying(self, stems: np.ndarray, depths: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """Which backbones (rows) have every share in range and backbone GFLOPs in the window."""
        gflops = self.tables.gflops(stems, depths, widths)
        total = gflops.sum(axis=1)
        shares = gflops / total[:, None]
        slack = 1 + RELATIVE_SLACK
        fits = (shares * slack >= self.share_low) & (shares <= self.share_high * slack)
        low, high = self.window
        return fits.all(axis=1) & (total * slack >= low) & (total <= high * slack)

    def support(self) -> list[tuple[Backbone, float]]:
        """Every enumerated backbone with its weight (draws per sorted width tuple), for checks and reports."""
        if self.prefixes is None:
            raise ValueError("support() needs the enumeration method")
        found = []
        last = self.tables.stages[-1]
        for row in range(len(self.prefixes.stems)):
            one = self.prefixes.rows(np.array([row]))
            ok, weights = self._completions(one, int(last.state_index(one.states())[0]))
            for pick in np.flatnonzero(ok[0] & (weights[0] > 0)):
                found.append((_completed(one, last.depths[pick], last.widths[pick]), float(weights[0, pick])))
        return found

    def _next_hit(self, rng: np.random.Generator) -> Backbone | None:
        """The next qualifying backbone of bulk uniform draws (None after MAX_BATCHES_PER_DRAW batches)."""
        for _ in range(MAX_BATCHES_PER_DRAW):
            if self.pending:
                return self.pending.popleft()
            stems, depths, widths = self.tables.uniform(rng, BATCH)
            keep = np.flatnonzero(self.qualifying(stems, depths, widths))
            self.pending.extend(backbones(stems[keep], depths[keep], widths[keep]))
        return self.pending.popleft() if self.pending else None

    def _enumerated_draw(self, rng: np.random.Generator) -> Backbone:
        """A stem..C4 prefix in proportion to its completions' weight, then its C5 likewise."""
        assert self.prefixes is not None
        last = self.tables.stages[-1]
        row = _weighted_index(rng, self.cumulative)
        one = self.prefixes.rows(np.array([row]))
        if row not in self.completion_cache:
            ok, weights = self._completions(one, int(last.state_index(one.states())[0]))
            self.completion_cache[row] = np.cumsum(np.where(ok[0], weights[0], 0.0))
        pick = _weighted_index(rng, self.completion_cache[row])
        return _completed(one, last.depths[pick], last.widths[pick])

    def _first_four(self) -> Prefixes | None:
        """Every stem, C2, C3, C4 choice that can still meet the ranges (None past MAX_PREFIXES)."""
        stems = self.tables.stems
        bounds = np.array([self.tables.stages[0].bounds(int(s)) for s in stems])
        count = len(stems)
        none = np.zeros((count, 0), dtype=int)
        start = Prefixes(
            stems, none, none, np.zeros(count), np.full(count, self.window[0]), np.full(count, self.window[1])
        )
        # one "option" per row: each stem with its own cost and completions
        spent, low, high, ok = self._narrow(0, start, self.tables.stem_gflops[:, None], bounds[:, :1], bounds[:, 1:])
        keep = np.flatnonzero(ok[:, 0] & np.isfinite(bounds[:, 0]))
        prefixes: Prefixes | None = Prefixes(
            stems[keep], none[keep], none[keep], spent[keep, 0], low[keep, 0], high[keep, 0]
        )
        for j in range(3):
            prefixes = self._extend(prefixes, j) if prefixes is not None else None
        return prefixes

    def _extend(self, prefixes: Prefixes, j: int) -> Prefixes | None:
        """The prefixes one stage (C2 + j) longer that can still meet the ranges (None past MAX_PREFIXES)."""
        table = self.tables.stages[j]
        parts, rows_so_far = [], 0
        for state, rows in _grouped(prefixes, table):
            for chunk in _chunks(rows, len(table.widths)):
                group = prefixes.rows(chunk)
                spent, low, high, ok = self._narrow(
                    j + 1, group, table.gflops[state][None, :], table.tail_low, table.tail_high
                )
                r, o = np.nonzero(ok & table.allowed[state][None, :])
                rows_so_far += len(r)
                if rows_so_far > MAX_PREFIXES:
                    return None
                depths = np.column_stack([group.depths[r], table.depths[o]])
                widths = np.column_stack([group.widths[r], table.widths[o]])
                parts.append(Prefixes(group.stems[r], depths, widths, spent[r, o], low[r, o], high[r, o]))
        return _concatenated(parts, prefixes.depths.shape[1] + 1)

    def _completion_weights(self, prefixes: Prefixes) -> np.ndarray:
        """Per prefix, the total weight of the C5 settings that complete it within the ranges."""
        last = self.tables.stages[-1]
        totals = np.zeros(len(prefixes.stems))
        for state, rows in _grouped(prefixes, last):
            for chunk in _chunks(rows, len(last.widths)):
                ok, weights = self._completions(prefixes.rows(chunk), state)
                totals[chunk] = np.where(ok, weights, 0.0).sum(axis=1)
        return totals

    def _completions(self, group: Prefixes, row: int) -> tuple[np.ndarray, np.ndarray]:
        """For prefixes whose state is C5's table row `row`: which C5 settings meet the ranges, and the weights."""
        last = self.tables.stages[-1]
        _, _, _, ok = self._narrow(4, group, last.gflops[row][None, :], last.tail_low, last.tail_high)
        ok &= last.allowed[row][None, :]
        r, o = np.nonzero(ok)
        weights = np.zeros(ok.shape)
        weights[r, o] = sorted_draw_counts(np.column_stack([group.widths[r], last.widths[o]]), self.tables.width_ranges)
        return ok, weights

    def _narrow(
        self, part: int, group: Prefixes, gflops: np.ndarray, tail_low: np.ndarray, tail_high: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each (prefix, choice of part `part`, 0 = stem): GFLOPs spent, the interval left for B, non-empty."""
        total = group.spent[:, None] + gflops
        low = np.maximum(np.maximum(group.low[:, None], gflops * self.inv_high[part]), total + tail_low)
        low = np.maximum(low, total * self.rest_low[part])
        high = np.minimum(np.minimum(group.high[:, None], gflops * self.inv_low[part]), total + tail_high)
        high = np.minimum(high, total * self.rest_high[part])
        return total, low, high, low <= high * (1 + RELATIVE_SLACK)


def _completed(prefix: Prefixes, depth: int, width: int) -> Backbone:
    """A one-row stem..C4 prefix finished with a C5 setting."""
    return backbones(
        prefix.stems, np.column_stack([prefix.depths, [[depth]]]), np.column_stack([prefix.widths, [[width]]])
    )[0]


def _weighted_index(rng: np.random.Generator, cumulative: np.ndarray) -> int:
    """An index drawn in proportion to the weights whose running sum is `cumulative` (total > 0)."""
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    if index < len(cumulative):
        return index
    return int(np.flatnonzero(np.diff(cumulative, prepend=0.0) > 0)[-1])  # rounding at the very top


def _tail_factor(share_sum: float) -> float:
    """B = spent / (1 - share of the later parts): 1 / (1 - share_sum), infinite when the shares leave nothing."""
    return 1.0 / (1.0 - share_sum) if share_sum < 1.0 else np.inf


def _grouped(prefixes: Prefixes, table: StageTable) -> list[tuple[int, np.ndarray]]:
    """Row indices of the prefixes by the table row of their state, ascending."""
    index = table.state_index(prefixes.states())
    return [(int(s), np.flatnonzero(index == s)) for s in np.unique(index)]


def _chunks(rows: np.ndarray, options: int) -> list[np.ndarray]:
    """Rows split so that rows x options stays under CHUNK_CELLS."""
    size = max(1, CHUNK_CELLS // max(1, options))
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _concatenated(parts: list[Prefixes], stages: int) -> Prefixes:
    """Prefixes stacked (an empty set when there are none)."""
    if not parts:
        empty = np.zeros((0, stages), dtype=int)
        return Prefixes(np.zeros(0, dtype=int), empty, empty, np.zeros(0), np.zeros(0), np.zeros(0))
    return Prefixes(*(np.concatenate([getattr(p, f) for p in parts]) for f in _PREFIX_FIELDS))
