"""The statistics of `fidelity`: the pick, rank agreement against scipy, seed noise, regret, the verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from search_helpers import scipy_rank_interval

from scrfd_search.errors import UserError
from scrfd_search.search.fidelity_stats import (
    CandidateRuns,
    fidelity_report,
    pick_trials,
    pooled_sd,
    rank_agreement,
    resolvable_difference,
)

RANKED = [f"t{i:02d}" for i in range(20)]  # a leaderboard, best first


def test_the_pick_is_seeded_holds_best_and_worst_and_spreads_over_the_ranks() -> None:
    pick = pick_trials(RANKED, 6, seed=3)
    assert pick == pick_trials(RANKED, 6, seed=3)
    assert pick[0] == "t00" and pick[-1] == "t19"
    ranks = [RANKED.index(t) for t in pick]
    assert ranks == sorted(ranks) and len(set(ranks)) == 6
    # one from each of four equal slices of ranks 1..18
    for rank, part in zip(ranks[1:-1], np.array_split(np.arange(1, 19), 4), strict=True):
        assert rank in part
    assert len({tuple(pick_trials(RANKED, 6, seed=s)) for s in range(10)}) > 1  # the seed matters


def test_a_pick_of_every_trial_is_the_whole_leaderboard() -> None:
    assert pick_trials(RANKED[:4], 4, seed=0) == RANKED[:4]


@pytest.mark.parametrize("k", [2, 21])
def test_a_pick_outside_three_to_n_is_refused(k: int) -> None:
    with pytest.raises(UserError, match=f"--sample: {k} must be between 3 and the 20"):
        pick_trials(RANKED, k, seed=0)


def test_rank_agreement_is_scipys_tau_rho_and_bootstrap_intervals() -> None:
    x = [0.61, 0.58, 0.55, 0.52, 0.49, 0.40]
    y = [0.70, 0.71, 0.60, 0.66, 0.50, 0.52]
    a = rank_agreement(x, y, seed=7)
    assert a.tau == pytest.approx(stats.kendalltau(x, y).statistic)
    assert a.rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert (a.tau_low, a.tau_high) == pytest.approx(scipy_rank_interval(x, y, "tau", 7))
    assert (a.rho_low, a.rho_high) == pytest.approx(scipy_rank_interval(x, y, "rho", 7))
    assert a.tau_low <= a.tau <= a.tau_high and a.rho_low <= a.rho <= a.rho_high
    assert rank_agreement(x, y, seed=7) == a  # seeded


def test_seed_noise_and_the_smallest_resolvable_difference() -> None:
    runs = [[0.50, 0.54], [0.30, 0.31, 0.29], [0.7]]  # the single run adds nothing
    expected = math.sqrt((np.var(runs[0], ddof=1) + np.var(runs[1], ddof=1)) / 2)
    assert pooled_sd(runs) == pytest.approx(expected)
    assert pooled_sd([[0.5], [0.6]]) is None
    assert resolvable_difference(0.02) == pytest.approx(1.959964 * 0.02 * math.sqrt(2), rel=1e-6)
    assert resolvable_difference(0.02, runs=4) == pytest.approx(resolvable_difference(0.02) / 2)


def runs(trial: list[float], short: list[list[float]], long: list[list[float]]) -> list[CandidateRuns]:
    """Candidates best first, one trial run each."""
    rows = zip(trial, short, long, strict=True)
    return [CandidateRuns(f"t{i}", t, (t,), tuple(s), tuple(g)) for i, (t, s, g) in enumerate(rows)]


def test_a_ranking_that_holds_says_so_with_its_noise() -> None:
    trial = [0.80, 0.70, 0.60, 0.50, 0.40, 0.30]
    short = [[t + 0.004, t - 0.003] for t in trial]
    long = [[t + 0.1, t + 0.105] for t in trial]
    report = fidelity_report(runs(trial, short, long), repeats=1, trial_epochs=20, long_epochs=80, seed=0)
    assert report.ranking.tau == pytest.approx(1.0) and report.regret == 0.0
    assert report.verdict.startswith("ranking holds: 20-epoch trials order candidates as 80-epoch training does")
    assert f"under {100 * report.resolvable:.1f} points are seed noise" in report.verdict
    assert report.sd_long == pytest.approx(pooled_sd(long))


def test_a_ranking_of_seed_noise_says_to_repeat_or_train_longer() -> None:
    trial = [0.60, 0.59, 0.58, 0.57, 0.56, 0.55]
    short = [[0.50, 0.62], [0.61, 0.53], [0.52, 0.60], [0.62, 0.51], [0.59, 0.54], [0.60, 0.52]]
    long = [[0.60, 0.66], [0.70, 0.64], [0.61, 0.69], [0.66, 0.62], [0.68, 0.63], [0.63, 0.67]]
    cands = runs(trial, short, long)
    report = fidelity_report(cands, repeats=1, trial_epochs=20, long_epochs=80, seed=0)
    assert report.verdict.startswith("ranking is mostly noise")
    assert "launch --repeats" in report.verdict or "train trials longer" in report.verdict
    means = [c.long_mean for c in cands]
    assert report.regret == pytest.approx(max(means) - means[0])  # the leaderboard's best is listed first


def test_trials_that_all_reached_the_same_ap_have_nothing_to_rank() -> None:
    flat = runs([0.0, 0.0, 0.0], [[0.0], [0.0], [0.0]], [[0.1], [0.0], [0.2]])
    report = fidelity_report(flat, repeats=1, trial_epochs=2, long_epochs=8, seed=0)
    assert report.verdict.startswith("nothing to rank: every picked trial reached the same hard AP (0.00%)")
    assert report.ranking.tau == 0.0 and report.regret == pytest.approx(0.1)  # the first listed vs the best long run
