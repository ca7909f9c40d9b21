"""The step-1 -> step-2 constraint: the range of each backbone stage's share of backbone FLOPs.

SCRFD's second step keeps only backbones whose computation is distributed over stem, C2..C5 the way
the best step-1 backbones distribute it. We estimate that distribution RegNet-style from the data:
take the top-K step-1 trials by hard AP, compute each one's per-stage share of backbone GFLOPs,
bootstrap the mean share (seeded resampling of the K trials with replacement) and keep, per stage,
the central `confidence` interval of the bootstrap means. Because an interval of means from a
handful of trials can be very narrow (a point for K = 1), each range is widened to at least
+-`min_relative_width` of its centre (10% by default, the tolerance the released SCRFD search tool
allows around its template's shares), and clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from scrfd_search.errors import UserError
from scrfd_search.flops.report import BACKBONE_COMPONENTS, FlopsReport
from scrfd_search.search.store import ExperimentStore, TrialRecord, ranked

DEFAULT_TOP_K = 5
DEFAULT_BOOTSTRAP = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_MIN_RELATIVE_WIDTH = 0.10


@dataclass(frozen=True)
class ShareConstraint:
    """Allowed [low, high] share of backbone GFLOPs for each of stem, c2, c3, c4, c5."""

    ranges: dict[str, tuple[float, float]]
    from_experiment: str
    top_k: int
    trial_ids: tuple[str, ...]
    bootstrap: int = DEFAULT_BOOTSTRAP
    confidence: float = DEFAULT_CONFIDENCE
    min_relative_width: float = DEFAULT_MIN_RELATIVE_WIDTH
    seed: int = 0

    def accepts(self, flops: FlopsReport) -> bool:
        """Whether a detector's backbone shares all fall inside the ranges."""
        shares = flops.backbone_shares()
        return all(lo <= shares[c] <= hi for c, (lo, hi) in self.ranges.items())

    def accept_fn(self, arch: Any, flops: FlopsReport) -> bool:
        """The `accept` filter signature of sample_candidates (the arch itself is not needed)."""
        return self.accepts(flops)

    def describe(self) -> str:
        """One line: each stage's range in percent."""
        parts = [f"{c} {100 * lo:.1f}-{100 * hi:.1f}%" for c, (lo, hi) in self.ranges.items()]
        return (
            f"backbone shares from the top {len(self.trial_ids)} of {self.from_experiment} "
            f"(bootstrap {self.bootstrap}, {100 * self.confidence:.0f}% interval, "
            f"at least +-{100 * self.min_relative_width:.0f}%): " + ", ".join(parts)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (constraint.json and experiment.json)."""
        return {
            "kind": "backbone_share",
            "ranges": {c: [lo, hi] for c, (lo, hi) in self.ranges.items()},
            "from_experiment": self.from_experiment,
            "top_k": self.top_k,
            "trial_ids": list(self.trial_ids),
            "bootstrap": self.bootstrap,
            "confidence": self.confidence,
            "min_relative_width": self.min_relative_width,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "constraint") -> ShareConstraint:
        """Inverse of to_dict."""
        try:
            ranges = {c: (float(data["ranges"][c][0]), float(data["ranges"][c][1])) for c in BACKBONE_COMPONENTS}
            return cls(
                ranges=ranges,
                from_experiment=str(data["from_experiment"]),
                top_k=int(data["top_k"]),
                trial_ids=tuple(data["trial_ids"]),
                bootstrap=int(data["bootstrap"]),
                confidence=float(data["confidence"]),
                min_relative_width=float(data["min_relative_width"]),
                seed=int(data["seed"]),
            )
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise UserError(f"{source}: not a backbone-share constraint (bad or missing {exc})") from None


def top_trials(trials: list[TrialRecord], top_k: int) -> list[TrialRecord]:
    """The best top_k finished trials by hard AP (fewer if fewer finished)."""
    finished = [t for t in trials if t.state == "TERMINATED"]
    return ranked(finished)[:top_k]


def bootstrap_mean_interval(
    values: np.ndarray, *, samples: int, confidence: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of values (rows = trials): point mean, and the central interval of bootstrap means."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(samples, len(values)))
    means = values[picks].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    return values.mean(axis=0), np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)


def derive_constraint(
    trials: list[TrialRecord],
    *,
    from_experiment: str,
    top_k: int = DEFAULT_TOP_K,
    seed: int = 0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    confidence: float = DEFAULT_CONFIDENCE,
    min_relative_width: float = DEFAULT_MIN_RELATIVE_WIDTH,
) -> ShareConstraint:
    """Share ranges of stem, c2..c5 from the best top_k finished trials of a step-1 search."""
    if top_k < 1:
        raise UserError(f"--top-k: {top_k} must be at least 1")
    best = top_trials(trials, top_k)
    if not best:
        raise UserError(
            f"--from {from_experiment}: no finished trial with a hard AP yet "
            f"({len(trials)} trials recorded); let step 1 finish some trials first"
        )
    shares = np.array([[t.flops.backbone_shares()[c] for c in BACKBONE_COMPONENTS] for t in best])
    centre, low, high = bootstrap_mean_interval(shares, samples=bootstrap, confidence=confidence, seed=seed)
    half = min_relative_width * centre
    low = np.clip(np.minimum(low, centre - half), 0.0, 1.0)
    high = np.clip(np.maximum(high, centre + half), 0.0, 1.0)
    return ShareConstraint(
        ranges={c: (float(lo), float(hi)) for c, lo, hi in zip(BACKBONE_COMPONENTS, low, high, strict=True)},
        from_experiment=from_experiment,
        top_k=top_k,
        trial_ids=tuple(t.trial_id for t in best),
        bootstrap=bootstrap,
        confidence=confidence,
        min_relative_width=min_relative_width,
        seed=seed,
    )


def constraint_from_store(store: ExperimentStore, name: str, top_k: int, seed: int) -> ShareConstraint:
    """Derive the constraint from a step-1 experiment folder, checking that it is a step-1 search."""
    step = store.read_experiment().step or 1
    if step != 1:
        raise UserError(f"--from {name}: experiment is step {step}, expected a step-1 search")
    return derive_constraint(store.read_trials(), from_experiment=name, top_k=top_k, seed=seed)
