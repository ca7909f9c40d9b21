"""How far a leaderboard can be trusted: rank agreement with longer training, and seed noise.

Everything here is computed from stored APs (fractions): which finished trials to retrain (`pick_trials`),
Kendall's tau and Spearman's rho with seeded percentile-bootstrap 95 % intervals (scipy.stats), the
pooled seed standard deviation, the smallest AP difference that noise lets a leaderboard resolve, top-1
regret and the one verdict line `fidelity` and `status` print.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from scrfd_search.errors import UserError

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 4999
MAX_SUGGESTED_REPEATS = 16


def pick_trials(ranked_ids: Sequence[str], k: int, seed: int) -> list[str]:
    """k trial ids spread over a leaderboard (best first): the best, the worst, and one drawn (seeded) from
    each of k - 2 equal slices of the ranks between them; returned in leaderboard order."""
    n = len(ranked_ids)
    if not 3 <= k <= n:
        raise UserError(f"--sample: {k} must be between 3 and the {n} finished trials")
    rng = np.random.default_rng(seed)
    middle = [int(rng.choice(part)) for part in np.array_split(np.arange(1, n - 1), k - 2)]
    return [ranked_ids[i] for i in [0, *middle, n - 1]]


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b; a resample in which one side is constant has no order to agree with: 0."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        value = float(stats.kendalltau(x, y).statistic)
    return 0.0 if math.isnan(value) else value


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho; 0 for a resample in which one side is constant (as for tau)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        value = float(stats.spearmanr(x, y).statistic)
    return 0.0 if math.isnan(value) else value


@dataclass(frozen=True)
class Agreement:
    """Rank agreement of two AP lists over the same trials, with bootstrap intervals (over trials, paired)."""

    tau: float
    tau_low: float
    tau_high: float
    rho: float
    rho_low: float
    rho_high: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict for fidelity.json."""
        return asdict(self)

    def text(self) -> str:
        """'tau 0.60 (95 % CI 0.20 to 1.00), rho ...'."""
        return (
            f"tau {self.tau:.2f} (95 % CI {self.tau_low:.2f} to {self.tau_high:.2f}), "
            f"rho {self.rho:.2f} (95 % CI {self.rho_low:.2f} to {self.rho_high:.2f})"
        )


def bootstrap_interval(x: Sequence[float], y: Sequence[float], statistic: Any, seed: int) -> tuple[float, float]:
    """Percentile-bootstrap 95 % interval of statistic(x, y), resampling the (x, y) pairs (scipy.stats.bootstrap).

    scipy resamples paired data by resampling the indices of the pairs; this does the same explicitly so
    that the statistic of each distinct multiset of pairs is computed once (a 6-trial sample has only 462).
    """
    a, b = np.asarray(x, float), np.asarray(y, float)
    cache: dict[tuple[int, ...], float] = {}

    def on_pairs(index: np.ndarray) -> float:
        key = tuple(sorted(int(i) for i in index))
        if key not in cache:
            cache[key] = statistic(a[list(key)], b[list(key)])
        return cache[key]

    result = stats.bootstrap(
        (np.arange(len(a)),),
        on_pairs,
        vectorized=False,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def rank_agreement(x: Sequence[float], y: Sequence[float], seed: int) -> Agreement:
    """Kendall's tau and Spearman's rho between x and y, each with its seeded bootstrap interval."""
    if len(x) != len(y) or len(x) < 3:
        raise UserError(f"rank agreement needs at least 3 paired values, got {len(x)} and {len(y)}")
    a, b = np.asarray(x, float), np.asarray(y, float)
    tau_low, tau_high = bootstrap_interval(a, b, _tau, seed)
    rho_low, rho_high = bootstrap_interval(a, b, _rho, seed)
    return Agreement(_tau(a, b), tau_low, tau_high, _rho(a, b), rho_low, rho_high)


def pooled_sd(samples: Sequence[Sequence[float]]) -> float | None:
    """Seed standard deviation pooled over candidates (root of the mean per-candidate variance); None
    when no candidate has two runs."""
    variances = [float(np.var(s, ddof=1)) for s in samples if len(s) >= 2]
    return math.sqrt(sum(variances) / len(variances)) if variances else None


def resolvable_difference(sd: float, runs: int = 1) -> float:
    """The smallest AP difference between two leaderboard entries (each the mean of `runs` seeds) that
    seed noise of this sd leaves significant at 95 %: z * sd * sqrt(2 / runs)."""
    return float(stats.norm.ppf(0.5 + CONFIDENCE / 2)) * sd * math.sqrt(2.0 / runs)


def repeats_to_resolve(sd: float, gap: float, runs: int) -> int:
    """How many seeds per candidate make `gap` resolvable at this sd (at least runs + 1)."""
    if gap <= 0:
        return MAX_SUGGESTED_REPEATS + 1
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
    return max(runs + 1, math.ceil(2.0 * (z * sd / gap) ** 2))


@dataclass(frozen=True)
class CandidateRuns:
    """One retrained candidate: the leaderboard's hard AP (the mean of its repeats), its own runs' APs,
    and the retrains' APs at the trial's length and at the long length (one per retrain seed)."""

    trial_id: str
    trial_hard: float
    trial_runs: tuple[float, ...]
    short: tuple[float, ...]
    long: tuple[float, ...]

    @property
    def long_mean(self) -> float:
        """Mean hard AP of the long runs."""
        return float(np.mean(self.long))


@dataclass(frozen=True)
class FidelityReport:
    """What fidelity.json holds besides the runs: agreement, noise, regret and the verdict."""

    ranking: Agreement  # trial hard AP vs mean long-run hard AP
    repeat: Agreement  # the trial's first run vs the first retrain at the trial's length
    sd_short: float
    sd_long: float | None
    resolvable: float
    regret: float
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for fidelity.json (APs as fractions)."""
        out = asdict(self)
        out.update(ranking=self.ranking.to_dict(), repeat=self.repeat.to_dict())
        return out


def fidelity_report(
    candidates: Sequence[CandidateRuns], repeats: int, trial_epochs: int, long_epochs: int, seed: int
) -> FidelityReport:
    """Agreement, seed noise, resolution, top-1 regret and the verdict for candidates listed best first."""
    trial = [c.trial_hard for c in candidates]
    ranking = rank_agreement(trial, [c.long_mean for c in candidates], seed)
    repeat = rank_agreement([c.trial_runs[0] for c in candidates], [c.short[0] for c in candidates], seed)
    sd_short = pooled_sd([(*c.trial_runs, *c.short) for c in candidates]) or 0.0
    sd_long = pooled_sd([c.long for c in candidates])
    resolvable = resolvable_difference(sd_short, repeats)
    best_long = max(c.long_mean for c in candidates)
    regret = best_long - candidates[0].long_mean
    spread = max(trial) - min(trial)
    if spread == 0:
        verdict = (
            f"nothing to rank: every picked trial reached the same hard AP ({100 * trial[0]:.2f}%) in "
            f"{trial_epochs} epochs; train trials longer"
        )
        return FidelityReport(ranking, repeat, sd_short, sd_long, resolvable, regret, verdict)
    verdict = _verdict(ranking, repeat, resolvable, regret, sd_short, spread, repeats, trial_epochs, long_epochs)
    return FidelityReport(ranking, repeat, sd_short, sd_long, resolvable, regret, verdict)


def _verdict(
    ranking: Agreement,
    repeat: Agreement,
    resolvable: float,
    regret: float,
    sd: float,
    spread: float,
    repeats: int,
    trial_epochs: int,
    long_epochs: int,
) -> str:
    """One line a user can act on: the ranking holds, or what to change (repeat trials, train longer)."""
    noise = f"trial AP differences under {100 * resolvable:.1f} points are seed noise"
    agree = f"tau {ranking.tau:.2f}, 95 % CI {ranking.tau_low:.2f} to {ranking.tau_high:.2f}"
    if ranking.tau_low > 0 and regret <= resolvable:
        return (
            f"ranking holds: {trial_epochs}-epoch trials order candidates as {long_epochs}-epoch training does "
            f"({agree}); {noise}"
        )
    if repeat.tau_low <= 0 or resolvable >= spread / 2:
        needed = repeats_to_resolve(sd, spread / 2, repeats)
        cure = (
            f"repeat every trial (`launch --repeats {needed}`) or train trials longer"
            if needed <= MAX_SUGGESTED_REPEATS
            else "train trials longer (repeating them would take more than 16 seeds)"
        )
        return (
            f"ranking is mostly noise: {noise} and the order repeats under another seed only with "
            f"tau {repeat.tau:.2f} (95 % CI {repeat.tau_low:.2f} to {repeat.tau_high:.2f}); {cure}"
        )
    return (
        f"ranking does not carry over: trials repeat under another seed but {long_epochs}-epoch training orders "
        f"them differently ({agree}; taking the leaderboard's best loses {100 * regret:.1f} points); "
        f"train trials longer than {trial_epochs} epochs"
    )
