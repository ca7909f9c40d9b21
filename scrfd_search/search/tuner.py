"""The Ray Tune side of a search: the trainable, searcher, scheduler and Tuner, and running it."""

from __future__ import annotations

import sys
from typing import Any

from scrfd_search.recipe import Recipe, RecipeSpace
from scrfd_search.search.constraint import ShareConstraint
from scrfd_search.search.experiment import ExperimentRecord
from scrfd_search.search.prepare import fixed_candidate
from scrfd_search.search.settings import SearchSettings, asha_grace_period
from scrfd_search.search.store import ExperimentStore
from scrfd_search.search.trial import run_trial, trial_settings
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import DEFAULT_INPUT_SHAPE, SearchSpace

INTERRUPTED_EXIT = 130


def build_trainable(settings: SearchSettings) -> Any:
    """run_trial bound to the search's trial settings, with the per-trial resources."""
    from ray import tune

    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial or 0.0}
    return tune.with_resources(tune.with_parameters(run_trial, settings=trial_settings(settings)), resources)


def recipe_space_of(record: ExperimentRecord) -> RecipeSpace | None:
    """The searched `recipe:` section a search was launched with (None without one)."""
    return RecipeSpace.from_dict(record.recipe_space, "experiment.json: recipe_space") if record.recipe_space else None


def base_recipe_of(record: ExperimentRecord, settings: SearchSettings) -> Recipe:
    """The recipe of trials that carry none: the launch's, as recorded."""
    return Recipe.from_dict(record.recipe, "experiment.json: recipe") if record.recipe else settings.recipe()


def build_searcher(settings: SearchSettings, record: ExperimentRecord, configs: list[dict[str, Any]]) -> Any:
    """The search algorithm, wrapped in a ConcurrencyLimiter.

    configs: random searcher, the candidates still to train; Optuna, the unfinished trials to hand out
    again before TPE proposes new ones.

    Ray keeps only one trial pending for a searcher that is not wrapped in a ConcurrencyLimiter,
    so trials start one after another, each waiting for the previous one's worker to come up
    (measured: 1.7 s apart with a fake 6 s trial; part of the slowness of ray issue 46965). With
    the limiter, max_concurrent trials are pending at once and start together.
    """
    from ray.tune.search import ConcurrencyLimiter

    from scrfd_search.search.searchers import (  # ray/optuna
        BudgetedOptunaSearch,
        CandidateSearcher,
        RecipeOptunaSearch,
    )

    s = settings
    if s.searcher == "random":
        searcher = CandidateSearcher(configs)
    elif record.space is None:  # recipe-only: TPE over the recipe of one architecture
        input_shape = record.input_shape or DEFAULT_INPUT_SHAPE
        searcher = RecipeOptunaSearch(
            recipe_space_of(record),  # type: ignore[arg-type]
            fixed_candidate(ArchSpec.from_dict(record.arch, str(ExperimentStore(s.path).experiment_file)), input_shape),
            base=base_recipe_of(record, s),
            storage_url=s.optuna_url,
            study_name=record.study_name or s.name,
            seed=s.seed,
        )
    else:
        constraint = ShareConstraint.from_dict(record.constraint) if record.constraint else None
        searcher = BudgetedOptunaSearch(
            SearchSpace.from_dict(record.space, str(ExperimentStore(s.path).experiment_file)),
            storage_url=s.optuna_url,
            study_name=record.study_name or s.name,
            seed=s.seed,
            constraint=constraint,
            replay=configs,
            recipe_space=recipe_space_of(record),
            base_recipe=base_recipe_of(record, s),
            objectives=s.objective_list,
        )
    return ConcurrencyLimiter(searcher, max_concurrent=s.max_concurrent or 1)


def build_scheduler(settings: SearchSettings) -> Any:
    """FIFO (every trial trains all epochs) or ASHA on hard AP, by epoch, with max_t = epochs.

    ASHA ranks by hard AP alone whatever the objectives: a trial's cost (latency, GFLOPs) does not
    change while it trains, so only its AP can tell ASHA's rungs anything.
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if settings.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="epoch",
        metric="hard",
        mode="max",
        max_t=settings.epochs,
        grace_period=asha_grace_period(settings.epochs),
        reduction_factor=3,
    )


def trial_name(trial: Any) -> str:
    """Short trial (and trial folder) names: trial_<id> instead of Ray's config dump."""
    return f"trial_{trial.trial_id}"


def build_tuner(
    settings: SearchSettings, record: ExperimentRecord, configs: list[dict[str, Any]], samples: int, quiet: bool
) -> Any:
    """A fresh Tuner for `samples` trials: a new Ray run folder under results/NAME/ray, the leaderboard callback."""
    from ray import tune

    from scrfd_search.search.ray_callback import LeaderboardCallback  # ray

    s = settings
    ray_dir = s.ray_dir.resolve()
    runs = sorted(p.name for p in ray_dir.iterdir()) if ray_dir.is_dir() else []
    run_name = s.name if not runs else f"{s.name}.resume{len(runs)}"
    callback = LeaderboardCallback(s.path.resolve(), s.trials, quiet=quiet)
    return tune.Tuner(
        build_trainable(s),
        tune_config=tune.TuneConfig(
            search_alg=build_searcher(s, record, configs),
            scheduler=build_scheduler(s),
            num_samples=samples,
            reuse_actors=False,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=str(ray_dir),
            callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            verbose=0,  # the leaderboard callback prints one line per finished trial instead
        ),
    )


def fit(tuner: Any, settings: SearchSettings, store: ExperimentStore, quiet: bool) -> int:
    """Run the Tuner; afterwards mark trials cut off by an interruption as PENDING again."""
    try:
        tuner.fit()
    finally:
        finished = mark_unfinished_pending(store)
    if finished < settings.trials:
        say(
            False,
            f"search {settings.name} stopped with {finished} of {settings.trials} trials finished; "
            f"continue it with `scrfd-search resume {settings.name}`",
        )
        return INTERRUPTED_EXIT
    failed = sum(r.state == "ERROR" for r in store.read_trials())
    say(
        quiet,
        f"search {settings.name} finished: {finished - failed} trials trained, {failed} failed; "
        f"see `scrfd-search status {settings.name}`",
    )
    return 0


def mark_unfinished_pending(store: ExperimentStore) -> int:
    """Rows still RUNNING when the driver stops will rerun on resume: show them PENDING. Returns finished."""
    rows = store.read_trials()
    changed = [
        r.updated(state="PENDING", extra={**r.extra, "interrupted": True}) if r.state == "RUNNING" else r for r in rows
    ]
    if changed != rows:
        store.write_trials(changed)
    return sum(r.finished for r in changed)


def say(quiet: bool, message: str) -> None:
    """A line on stderr unless quiet."""
    if not quiet:
        print(f"[scrfd-search] {message}", file=sys.stderr, flush=True)
