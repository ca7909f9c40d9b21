"""Hand-built experiment stores for the search tests: real ArchSpecs, closed-form FLOPs, chosen APs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scrfd_search.flops.analytic import count_flops
from scrfd_search.search.experiment import ExperimentRecord
from scrfd_search.search.settings import SearchSettings
from scrfd_search.search.store import ExperimentStore, TrialRecord
from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec
from scrfd_search.space.search_space import SearchSpace

REPO = Path(__file__).resolve().parents[1]
# A tiny detector that trains an epoch on a few demo images in seconds (tests that run training).
TINY_ARCH = ArchSpec(
    block="basic",
    stem_width=8,
    stages=tuple(StageSpec(1, w) for w in (8, 16, 16, 32)),
    neck=NeckSpec(16),
    head=HeadSpec(num_convs=1, width=16, norm="gn", gn_groups=4),
)
STEP1_SPACE = REPO / "search_spaces" / "scrfd_0.5gf_step1.yaml"
STEP2_SPACE = REPO / "search_spaces" / "scrfd_0.5gf_step2.yaml"


def in_budget_archs(space: SearchSpace, n: int, seed: int) -> list:
    """n distinct architectures of the space inside its budget (closed-form FLOPs, no fvcore)."""
    from scrfd_search.sampling.sampler import sample_candidates

    return [c.arch for c in sample_candidates(space, n, seed, confirm=False)]


def make_record(trial_id: str, arch, space: SearchSpace, hard: float | None, state: str = "TERMINATED") -> TrialRecord:
    """A leaderboard row with APs derived from hard (easy > medium > hard, as on WIDER FACE)."""
    flops = count_flops(arch, space.input_shape)
    aps = {} if hard is None else {"easy": min(1.0, hard + 0.2), "medium": min(1.0, hard + 0.1), "hard": hard}
    return TrialRecord(
        trial_id=trial_id,
        arch=arch,
        flops=flops,
        state=state,
        epochs_run=0 if hard is None else 2,
        error="ValueError: loss is nan" if state == "ERROR" else None,
        **aps,
    )


RECORD_RECIPE_FIELDS = ("recipe", "recipe_space", "recipe_from", "arch", "input_shape")


def make_store(
    root: Path,
    name: str,
    rows: list[TrialRecord],
    *,
    step: int = 1,
    trials: int | None = None,
    constraint: dict | None = None,
    from_experiment: str | None = None,
    **options: Any,
) -> ExperimentStore:
    """An experiment folder with experiment.json and leaderboard.json as `launch` writes them
    (options: other SearchSettings fields, e.g. cpus_per_trial, or the record's recipe fields)."""
    recipe = {k: options.pop(k) for k in RECORD_RECIPE_FIELDS if k in options}
    space_file = STEP1_SPACE if step == 1 else STEP2_SPACE
    space = SearchSpace.load(space_file)
    settings = SearchSettings(
        name=name,
        results_dir=str(root),
        space_file=str(space_file),
        data_root=str(root / "no-data"),
        trials=trials if trials is not None else len(rows),
        epochs=2,
        from_experiment=from_experiment,
        **options,
    )
    store = ExperimentStore(root / name)
    store.write_experiment(
        ExperimentRecord.for_launch(
            settings, space.to_dict(), step, space.budget_gflops, space.tolerance, constraint, **recipe
        )
    )
    store.write_trials(rows)
    return store


def step1_rows(n: int = 8, seed: int = 0) -> tuple[SearchSpace, list[TrialRecord]]:
    """n finished step-1 trials with distinct hard APs (trial t00 worst ... last best)."""
    space = SearchSpace.load(STEP1_SPACE)
    archs = in_budget_archs(space, n, seed)
    rng = np.random.default_rng(seed)
    hards = np.sort(rng.uniform(0.05, 0.6, size=n))
    return space, [
        make_record(f"t{i:02d}", a, space, float(h)) for i, (a, h) in enumerate(zip(archs, hards, strict=True))
    ]
