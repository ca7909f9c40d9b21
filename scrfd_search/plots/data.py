"""What the figures plot: experiment stores read once, failed trials set aside, shares and Pareto fronts."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scrfd_search.data.pipelines import GT_SUBDIR
from scrfd_search.errors import UserError
from scrfd_search.evaluation.official import WIDER_VAL_TEXT, ValidationSet, read_validation_set
from scrfd_search.flops.report import BACKBONE_COMPONENTS, COMPONENTS
from scrfd_search.search.experiment import ExperimentRecord
from scrfd_search.search.store import ExperimentStore, TrialRecord, ranked, store_path

BEST_FRACTION = 0.1  # "best models" = the top 10% by hard AP (at least one), as highlighted in the paper
SHALLOW_COMPONENTS = ("stem", "c2", "c3")
DETECTOR_PARTS = ("backbone", "neck", "head")


@dataclass(frozen=True)
class StoreView:
    """One experiment as the figures see it: settings, usable trials best first, and the failed count."""

    name: str
    settings: ExperimentRecord
    trials: tuple[TrialRecord, ...]
    failed: int
    validation: ValidationSet | None = None  # what its trials were validated on; None: not recorded

    @property
    def budget_gflops(self) -> float | None:
        """The search's GFLOPs budget (None when experiment.json does not say)."""
        return self.settings.budget_gflops

    @property
    def budget_label(self) -> str:
        """'2.5 GFLOPs', or a latency-only search's ceiling ('12 ms'), or 'unknown GFLOPs'."""
        ceiling = (self.settings.space or {}).get("max_latency_ms")
        if self.budget_gflops is None and ceiling is not None:
            return f"{ceiling:g} ms"
        return budget_text(self.budget_gflops)

    @property
    def step(self) -> int | None:
        """1 (backbone only) or 2 (whole detector), None when unknown."""
        return self.settings.step

    @property
    def searcher(self) -> str | None:
        """How candidates were proposed (random, optuna, ...), when experiment.json records it."""
        return self.settings.searcher or None

    @property
    def recipe_only(self) -> bool:
        """Whether the search kept one architecture and searched only its recipe."""
        return bool(self.settings.settings and self.settings.settings.recipe_only)

    @property
    def label(self) -> str:
        """Short name for legends: budget, step, searcher and experiment name."""
        searcher = f", {self.searcher}" if self.searcher else ""
        if self.recipe_only:
            return f"recipe only{searcher} ({self.name})"
        return f"{self.budget_label}, step {self.step or '?'}{searcher} ({self.name})"

    @property
    def title(self) -> str:
        """Figure title: experiment name, budget, step and searcher."""
        searcher = f" ({self.searcher})" if self.searcher else ""
        if self.recipe_only:
            return f"{self.name}: recipe only{searcher}"
        return f"{self.name}: {self.budget_label} budget, step {self.step or '?'}{searcher}"

    @property
    def best(self) -> tuple[TrialRecord, ...]:
        """The highlighted best models."""
        return self.trials[: best_count(len(self.trials))]


def budget_text(budget: float | None) -> str:
    """'2.5 GFLOPs', or 'unknown GFLOPs' when the budget is not recorded."""
    return f"{budget:g} GFLOPs" if budget is not None else "unknown GFLOPs"


def is_usable(trial: TrialRecord) -> bool:
    """A trial is plotted when it did not fail and has a hard AP."""
    return trial.state != "ERROR" and trial.hard is not None


def best_count(n: int, fraction: float = BEST_FRACTION) -> int:
    """How many of n ranked trials count as 'best' (at least one when n > 0)."""
    return min(n, max(1, math.ceil(fraction * n))) if n else 0


def load_view(name: str, results_dir: str | os.PathLike | None = None) -> StoreView:
    """Read one experiment store into a StoreView (UserError when it does not exist)."""
    store = ExperimentStore(store_path(name, results_dir))
    settings = store.read_experiment()
    trials = store.read_trials()
    usable = ranked([t for t in trials if is_usable(t)])
    data_root = settings.settings.data_root if settings.settings is not None else None
    validation = read_validation_set(Path(data_root) / GT_SUBDIR) if data_root else None
    return StoreView(name, settings, tuple(usable), len(trials) - len(usable), validation)


def published_comparable(views: Sequence[StoreView]) -> str | None:
    """None when every store with trials was validated on WIDER FACE val (published APs compare with
    its APs); else why not, naming the first store that was not."""
    for view in views:
        if not view.trials:
            continue
        if view.validation is None:
            return f"{view.name} does not record its validation data, so it cannot be compared with {WIDER_VAL_TEXT}"
        if not view.validation.is_wider_val:
            return f"{view.name} was validated on {view.validation.describe()}, not {WIDER_VAL_TEXT}"
    return None


def load_views(names: Sequence[str], results_dir: str | os.PathLike | None = None) -> list[StoreView]:
    """Read every named store; fail before drawing anything if one is missing or has nothing to plot."""
    if len(set(names)) != len(names):
        raise UserError(f"experiment names: {', '.join(names)} repeat a name (expected each once)")
    views = [load_view(n, results_dir) for n in names]
    if not any(v.trials for v in views):
        raise UserError(
            f"{', '.join(names)}: no trial with a hard AP yet (nothing to plot; failed or running trials are left out)"
        )
    return views


def backbone_shares(trial: TrialRecord) -> dict[str, float]:
    """stem, c2..c5 as fractions of the backbone's GFLOPs."""
    return trial.flops.backbone_shares()


def shallow_share(trial: TrialRecord) -> float:
    """(stem + C2 + C3) / backbone GFLOPs."""
    shares = trial.flops.backbone_shares()
    return sum(shares[c] for c in SHALLOW_COMPONENTS)


def detector_shares(trial: TrialRecord) -> dict[str, float]:
    """backbone, neck, head as fractions of the whole detector's GFLOPs."""
    return trial.flops.detector_shares()


def component_shares(trial: TrialRecord) -> dict[str, float]:
    """stem, c2..c5, neck, head as fractions of the whole detector's GFLOPs."""
    total = trial.flops.total_gflops
    return {c: trial.flops.gflops[c] / total for c in COMPONENTS}


def mean_shares(trials: Sequence[TrialRecord], of: str) -> dict[str, float]:
    """Mean shares over trials, of 'backbone' (stem..c5 of backbone) or 'detector' (stem..head of total)."""
    pick = backbone_shares if of == "backbone" else component_shares
    keys = BACKBONE_COMPONENTS if of == "backbone" else COMPONENTS
    rows = [pick(t) for t in trials]
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (cost, score) points: True where no other point is as cheap and as good, and better in one."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    on_front = [False] * len(points)
    best: tuple[float, float] = (math.inf, -math.inf)
    for i in order:
        if points[i][1] > best[1] or tuple(points[i]) == best:  # an exact duplicate of a front point is on it
            on_front[i] = True
            best = (points[i][0], points[i][1])
    return on_front


def edf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Empirical distribution function: sorted values and the fraction of values <= each."""
    xs = sorted(values)
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]
