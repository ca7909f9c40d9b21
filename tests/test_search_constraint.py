"""The step-1 -> step-2 share constraint, derived from hand-built step-1 leaderboards."""

from __future__ import annotations

import numpy as np
import pytest
from search_helpers import STEP2_SPACE, make_store, step1_rows

from scrfd_search.errors import UserError
from scrfd_search.flops.report import BACKBONE_COMPONENTS
from scrfd_search.sampling.sampler import sample_candidates
from scrfd_search.search.constraint import ShareConstraint, constraint_from_store, derive_constraint
from scrfd_search.space.search_space import SearchSpace


def shares(record) -> np.ndarray:
    """Backbone shares of one row, in BACKBONE_COMPONENTS order."""
    s = record.flops.backbone_shares()
    return np.array([s[c] for c in BACKBONE_COMPONENTS])


def test_constraint_comes_from_the_best_k_finished_trials_and_covers_their_mean():
    space, rows = step1_rows(8)
    # the best trial by hard AP failed late: it must not count
    rows[-1] = rows[-1].updated(state="ERROR")
    c = derive_constraint(rows, from_experiment="s1", top_k=3, seed=0)
    best3 = sorted((r for r in rows if r.state == "TERMINATED"), key=lambda r: -r.hard)[:3]
    assert c.trial_ids == tuple(r.trial_id for r in best3)
    mean = np.mean([shares(r) for r in best3], axis=0)
    for i, comp in enumerate(BACKBONE_COMPONENTS):
        lo, hi = c.ranges[comp]
        assert 0.0 <= lo < mean[i] < hi <= 1.0
        # at least +-10% of the centre, as documented
        assert lo <= mean[i] * 0.9 + 1e-12 and hi >= mean[i] * 1.1 - 1e-12


def test_single_trial_gives_the_minimum_width_around_its_shares():
    space, rows = step1_rows(4)
    c = derive_constraint(rows, from_experiment="s1", top_k=1, seed=0)
    s = shares(rows[-1])
    for i, comp in enumerate(BACKBONE_COMPONENTS):
        assert c.ranges[comp] == pytest.approx((s[i] * 0.9, s[i] * 1.1))
    assert c.accepts(rows[-1].flops)


def test_bootstrap_is_seeded_and_spread_trials_give_wider_ranges():
    space, rows = step1_rows(8)
    a = derive_constraint(rows, from_experiment="s1", top_k=8, seed=3, min_relative_width=0.0)
    b = derive_constraint(rows, from_experiment="s1", top_k=8, seed=3, min_relative_width=0.0)
    assert a == b
    # the interval of bootstrap means lies inside the range of the trials' own shares
    all_shares = np.array([shares(r) for r in rows])
    for i, comp in enumerate(BACKBONE_COMPONENTS):
        lo, hi = a.ranges[comp]
        assert all_shares[:, i].min() <= lo < hi <= all_shares[:, i].max()


def test_fewer_trials_than_k_uses_all_and_none_finished_is_an_error():
    space, rows = step1_rows(3)
    assert len(derive_constraint(rows, from_experiment="s1", top_k=5).trial_ids) == 3
    unfinished = [rows[0].updated(state="ERROR"), rows[1].updated(state="RUNNING", hard=None)]
    with pytest.raises(UserError, match="s1: no finished trial"):
        derive_constraint(unfinished, from_experiment="s1", top_k=5)


def test_constraint_round_trips_and_reads_from_a_store(tmp_path):
    space, rows = step1_rows(6)
    store = make_store(tmp_path, "s1", rows)
    c = constraint_from_store(store, "s1", top_k=2, seed=0)
    assert ShareConstraint.from_dict(c.to_dict()) == c
    assert "c2" in c.describe() and "top 2 of s1" in c.describe()
    make_store(tmp_path, "s2", rows, step=2)
    with pytest.raises(UserError, match="step 2, expected a step-1"):
        constraint_from_store(make_store(tmp_path, "s2", rows, step=2), "s2", top_k=2, seed=0)


def test_step2_sampling_under_the_constraint_keeps_backbone_shares_and_varies_neck_and_head():
    space1, rows = step1_rows(6)
    c = derive_constraint(rows, from_experiment="s1", top_k=3, seed=0)
    space2 = SearchSpace.load(STEP2_SPACE)
    found = sample_candidates(space2, 4, 0, accept=c.accept_fn, confirm=False, max_draws=400_000)
    for cand in found:
        assert c.accepts(cand.flops)
        s = cand.flops.backbone_shares()
        assert all(c.ranges[k][0] <= s[k] <= c.ranges[k][1] for k in BACKBONE_COMPONENTS)
    assert len({(x.arch.neck.channels, x.arch.head.num_convs, x.arch.head.width) for x in found}) > 1
    # and the filter does reject: most unconstrained in-budget step-2 candidates fall outside
    free = sample_candidates(space2, 20, 1, confirm=False)
    assert sum(not c.accepts(x.flops) for x in free) >= 10
