"""The Ray Tune side of `fidelity`: retrains run as trials of the search's own trainable, placed as its trials were."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from scrfd_search.search.checks import check_trial_resources, local_cpus, local_gpus
from scrfd_search.search.ray_session import init_ray, send_ray_auth_token, settings_for_cluster
from scrfd_search.search.searchers import CandidateSearcher
from scrfd_search.search.settings import RAY_DIR, SearchSettings
from scrfd_search.search.shared_storage import check_search_storage
from scrfd_search.search.trial import TrialSettings, finished_result, run_trial
from scrfd_search.search.tuner import trial_name


def run_fidelity_trial(config: dict[str, Any], by_length: dict[str, TrialSettings]) -> None:
    """One retrain: the search's trial function with the settings of its length and its own seed (one run,
    whatever --repeats the search trained its trials with)."""
    run_trial(config, replace(by_length[config["length"]], seed=int(config["seed"]), repeats=1))


class FidelityProgress(Callback):
    """One line per finished or failed retrain on the driver's console."""

    def __init__(self, runs_root: Path, total: int, quiet: bool) -> None:
        self.runs_root = runs_root
        self.total = total
        self.quiet = quiet
        self.done = 0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A retrain trained to its end."""
        self.done += 1
        result = finished_result(self.runs_root / trial.config["trial_key"]) or {}
        hard = f"{100 * result['hard']:.2f}%" if "hard" in result else "-"
        self._say(f"run {trial.config['trial_key']} finished, hard AP {hard} ({self.done}/{self.total} this run)")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A retrain failed; the others go on, and the next `fidelity` trains it again."""
        self._say(f"run {trial.config['trial_key']} failed (see {self.runs_root / trial.config['trial_key']})")

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(f"[scrfd-search] {message}", file=sys.stderr, flush=True)


def joined_settings(settings: SearchSettings) -> SearchSettings:
    """Join the search's Ray (local or its --address cluster) and check one run fits a node, as a resume does."""
    if settings.address is not None:
        send_ray_auth_token()
        init_ray(settings.address)
        joined = settings_for_cluster(settings)
        check_search_storage(joined)
        return joined
    check_trial_resources(settings.cpus_per_trial, settings.gpus_per_trial or 0.0, local_cpus(), local_gpus())
    init_ray(None)
    return settings


def run_fidelity_tuner(
    settings: SearchSettings, by_length: dict[str, TrialSettings], todo: list[dict[str, Any]], folder: Path, quiet: bool
) -> None:
    """Train the given runs with the search's resources per trial and concurrency, one fresh Tuner per call."""
    s = joined_settings(settings)
    ray_dir = (folder / RAY_DIR).resolve()
    previous = sorted(p.name for p in ray_dir.iterdir()) if ray_dir.is_dir() else []
    resources = {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial or 0.0}
    trainable = tune.with_resources(tune.with_parameters(run_fidelity_trial, by_length=by_length), resources)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(CandidateSearcher(todo), max_concurrent=s.max_concurrent or 1),
            scheduler=FIFOScheduler(),
            num_samples=len(todo),
            reuse_actors=False,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"fidelity{len(previous)}",
            storage_path=str(ray_dir),
            callbacks=[FidelityProgress(Path(by_length["short"].trials_root), len(todo), quiet)],
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            verbose=0,
        ),
    )
    tuner.fit()
