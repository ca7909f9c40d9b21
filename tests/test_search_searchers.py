"""The two searchers outside Ray: fixed candidates in order, and budget-keeping TPE with a SQLite study."""

from __future__ import annotations

import optuna
from search_helpers import STEP1_SPACE, STEP2_SPACE, step1_rows

from scrfd_search.flops.analytic import count_flops
from scrfd_search.sampling.budget_fit import fit_neck_head
from scrfd_search.sampling.sampler import sample_candidates
from scrfd_search.search.constraint import derive_constraint
from scrfd_search.search.searchers import BudgetedOptunaSearch, CandidateSearcher, candidate_configs
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import SearchSpace


def test_candidate_searcher_hands_out_candidate_i_to_trial_i_and_resumes(tmp_path):
    space = SearchSpace.load(STEP1_SPACE)
    configs = candidate_configs(sample_candidates(space, 3, 5, confirm=False))
    first = CandidateSearcher(configs)
    assert first.suggest("a")["candidate"] == 0
    first.save(str(tmp_path / "state.pkl"))
    again = CandidateSearcher([])
    again.restore(str(tmp_path / "state.pkl"))
    assert [again.suggest(t)["candidate"] for t in "bc"] == [1, 2]
    assert again.suggest("d") == CandidateSearcher.FINISHED
    assert ArchSpec.from_dict(configs[2]["arch"]) == sample_candidates(space, 3, 5, confirm=False)[2].arch


def optuna_searcher(tmp_path, name: str, space: SearchSpace, **kwargs) -> BudgetedOptunaSearch:
    """A searcher with its study in tmp_path/name.db, closed-form FLOPs (no fvcore) for speed."""
    return BudgetedOptunaSearch(
        space, storage_url=f"sqlite:///{tmp_path / name}.db", study_name=name, seed=7, confirm=False, **kwargs
    )


def test_optuna_suggestions_are_distinct_in_budget_seeded_and_stored(tmp_path):
    space = SearchSpace.load(STEP1_SPACE)
    low, high = space.budget_range()
    a, b = optuna_searcher(tmp_path, "a", space), optuna_searcher(tmp_path, "b", space)
    archs_a = [ArchSpec.from_dict(a.suggest(f"t{i}")["arch"]) for i in range(4)]
    archs_b = [ArchSpec.from_dict(b.suggest(f"t{i}")["arch"]) for i in range(4)]
    assert archs_a == archs_b  # same seed, same proposals
    assert len({x.key() for x in archs_a}) == 4
    assert all(low <= count_flops(x, space.input_shape).total_gflops <= high for x in archs_a)
    a.on_trial_complete("t0", {"hard": 0.3, "training_iteration": 1})
    a.on_trial_complete("t1", {"hard": 0.2, "training_iteration": 1}, error=True)
    study = optuna.load_study(study_name="a", storage=f"sqlite:///{tmp_path / 'a'}.db")
    states = [t.state for t in study.trials]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert study.trials[0].value == 0.3 and len(study.trials) == 4  # only the handed-out trials
    assert [t.user_attrs["ray_trial_id"] for t in study.trials] == ["t0", "t1", "t2", "t3"]


def test_optuna_searcher_state_survives_save_and_restore(tmp_path):
    space = SearchSpace.load(STEP1_SPACE)
    first = optuna_searcher(tmp_path, "r", space)
    seen = [first.suggest("t0")["arch"]]
    first.on_trial_complete("t0", {"hard": 0.1, "training_iteration": 1})
    first.save(str(tmp_path / "searcher.pkl"))
    restored = optuna_searcher(tmp_path, "r", space)
    restored.restore(str(tmp_path / "searcher.pkl"))
    seen.append(restored.suggest("t1")["arch"])
    assert seen[0] != seen[1]
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path / 'r'}.db")
    assert len(study.trials) == 2


def test_step2_optuna_keeps_the_share_constraint_and_varies_neck_and_head(tmp_path):
    _, rows = step1_rows(6)
    constraint = derive_constraint(rows, from_experiment="s1", top_k=2)
    space = SearchSpace.load(STEP2_SPACE)
    low, high = space.budget_range()
    searcher = optuna_searcher(tmp_path, "s2", space, constraint=constraint)
    archs = [ArchSpec.from_dict(searcher.suggest(f"t{i}")["arch"]) for i in range(4)]
    flops = [count_flops(x, space.input_shape) for x in archs]
    assert all(constraint.accepts(f) and low <= f.total_gflops <= high for f in flops)
    assert len({(x.neck.channels, x.head.num_convs, x.head.width) for x in archs}) > 1


def test_budget_fit_moves_only_neck_and_head_to_the_nearest_fit():
    space = SearchSpace.load(STEP2_SPACE)
    low, high = space.budget_range()
    arch = sample_candidates(space, 1, 2, confirm=False)[0].arch
    in_budget = lambda f: low <= f.total_gflops <= high  # noqa: E731
    assert fit_neck_head(space, arch, in_budget)[0] == arch  # already fits: unchanged
    heavier = arch.__class__(arch.block, arch.stem_width, arch.stages, arch.neck, arch.head.__class__(
        num_convs=space.head_num_convs.max, width=space.head_width.max, norm=arch.head.norm,
        gn_groups=arch.head.gn_groups, shared=arch.head.shared, depthwise=arch.head.depthwise,
    ))  # fmt: skip
    fitted, report = fit_neck_head(space, heavier, in_budget)
    assert low <= report.total_gflops <= high and fitted.stages == arch.stages and fitted.stem_width == arch.stem_width
    assert fit_neck_head(space, arch, lambda f: False) is None


def test_optuna_resume_replays_unfinished_trials_and_fails_orphans(tmp_path):
    space = SearchSpace.from_dict(SearchSpace.load(STEP1_SPACE).to_dict())  # as resume reads it back
    first = optuna_searcher(tmp_path, "k", space)
    configs = [first.suggest(f"t{i}") for i in range(3)]  # a driver dies with three study trials RUNNING
    first.on_trial_complete("t0", {"hard": 0.4, "training_iteration": 1})
    assert [c["trial_key"] for c in configs] == ["o0000", "o0001", "o0002"]
    # resume: t1 has a leaderboard row and is handed out again; t2 never got one (an orphan)
    resumed = optuna_searcher(tmp_path, "k", space, replay=[configs[1]])
    again = resumed.suggest("new1")
    assert again == configs[1]
    fresh = resumed.suggest("new2")
    assert fresh["optuna_number"] == 3 and fresh["arch"] not in [c["arch"] for c in configs]
    resumed.on_trial_result("new1", {"hard": 0.2, "training_iteration": 1})  # not Optuna's to see
    resumed.on_trial_complete("new1", {"hard": 0.25, "training_iteration": 1})
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{tmp_path / 'k'}.db")
    by_number = {t.number: t for t in study.trials}
    assert by_number[1].state == optuna.trial.TrialState.COMPLETE and by_number[1].value == 0.25
    assert by_number[2].state == optuna.trial.TrialState.FAIL
    assert by_number[0].value == 0.4 and by_number[3].state == optuna.trial.TrialState.RUNNING
