"""Launch and resume a search: checks, candidate drawing, the Ray Tune Tuner, and the experiment store.

Layout of results/NAME/ (the driver is its only writer):
  experiment.json   the launch settings, the space, the budget and (step 2) the share constraint
  constraint.json   step 2 only: the share ranges derived from the step-1 search
  leaderboard.json  one row per trial, rewritten atomically after every reported result
  optuna.db         the Optuna study (--searcher optuna), SQLite, for optuna-dashboard
  ray/NAME/         the Ray Tune experiment (what `resume` restores)
  trials/TRIAL_ID/  each trial's work folder: mmengine logs, checkpoints, trial_events.jsonl
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.io_utils import atomic_write_json
from scrfd_search.search.checks import (
    check_address_reachable,
    check_data_root,
    check_trial_resources,
    cluster_node_resources,
    default_max_concurrent,
    local_cpus,
    local_gpus,
)
from scrfd_search.search.constraint import ShareConstraint, constraint_from_store
from scrfd_search.search.settings import CONSTRAINT_FILE, SearchSettings, asha_grace_period
from scrfd_search.search.store import ExperimentStore, store_path
from scrfd_search.search.trial import data_workers
from scrfd_search.space.search_space import SearchSpace

INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class PreparedSearch:
    """Everything a search needs, validated before anything is written or any trial starts."""

    settings: SearchSettings
    space: SearchSpace
    constraint: ShareConstraint | None
    candidates: list[Any] | None  # the sampler's Candidates (random searcher only)


def prepare(settings: SearchSettings) -> PreparedSearch:
    """Check the name, data, space, step-2 source and local resources (candidates are drawn later)."""
    store = ExperimentStore(settings.path)
    if store.exists():
        raise UserError(
            f"--name {settings.name}: {settings.path} already holds a search "
            f"(continue it with `scrfd-search resume {settings.name}` or pick another name)"
        )
    check_data_root(settings.data_root)
    space = SearchSpace.load(settings.space_file)
    constraint = step_constraint(settings, space)
    if settings.address is not None:
        check_address_reachable(settings.address)
    return PreparedSearch(with_resources_checked(settings), space, constraint, None)


def step_constraint(settings: SearchSettings, space: SearchSpace) -> ShareConstraint | None:
    """The step-2 share constraint derived from --from, or None for a step-1 search."""
    if settings.from_experiment is None:
        if space.step == 2:
            raise UserError(
                f"--space {settings.space_file}: a step-2 space needs --from STEP1_NAME "
                "(the step-1 search whose best backbones constrain this one)"
            )
        return None
    if space.step != 2:
        raise UserError(f"--from: given with {settings.space_file}, a step-{space.step} space (expected step 2)")
    source = ExperimentStore(store_path(settings.from_experiment, settings.results_dir))
    if not source.exists():
        raise UserError(f"--from {settings.from_experiment}: no experiment at {source.path}")
    top_k = settings.top_k if settings.top_k is not None else 5
    return constraint_from_store(source, settings.from_experiment, top_k, settings.seed)


def with_resources_checked(settings: SearchSettings) -> SearchSettings:
    """Check one trial fits the local machine and fill in defaults (a cluster is checked after joining)."""
    if settings.address is not None:
        return settings
    return resolved_resources(settings, local_cpus(), local_gpus(), local_cpus(), local_gpus())


def resolved_resources(
    settings: SearchSettings, node_cpus: float, node_gpus: float, total_cpus: float, total_gpus: float
) -> SearchSettings:
    """Default GPUs per trial and concurrency from what is there, after checking one trial fits a node."""
    settings = settings.with_resources(node_gpus)
    check_trial_resources(settings.cpus_per_trial, settings.gpus_per_trial or 0.0, node_cpus, node_gpus)
    fits = default_max_concurrent(total_cpus, total_gpus, settings.cpus_per_trial, settings.gpus_per_trial or 0.0)
    return settings.with_resources(node_gpus, min(fits, settings.trials))


def draw_candidates(
    settings: SearchSettings, space: SearchSpace, constraint: ShareConstraint | None, progress: Any
) -> list[Any] | None:
    """The N candidates of a random search; for Optuna, a one-candidate check that the budget is feasible."""
    from scrfd_search.space.sampler import sample_candidates

    accept = constraint.accept_fn if constraint is not None else None
    # few uniform draws meet the share ranges: the sampler draws among those that do (see sample_candidates)
    shares = constraint.ranges if constraint is not None else None
    if settings.searcher == "random":
        return sample_candidates(space, settings.trials, settings.seed, accept=accept, shares=shares, progress=progress)
    sample_candidates(space, 1, settings.seed, accept=accept, shares=shares, confirm=False)
    return None


def experiment_record(prepared: PreparedSearch) -> dict[str, Any]:
    """What experiment.json holds: the settings plus the space, budget, constraint and where things lie."""
    s, space = prepared.settings, prepared.space
    return {
        **s.to_dict(),
        "step": space.step,
        "space": space.to_dict(),
        "budget_gflops": space.budget_gflops,
        "tolerance": space.tolerance,
        "input_shape": list(space.input_shape),
        "constraint": prepared.constraint.to_dict() if prepared.constraint else None,
        "ray_experiment": str(s.ray_experiment),
        "optuna_storage": s.optuna_url if s.searcher == "optuna" else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def init_ray(address: str | None) -> None:
    """Start a local Ray (all local cores, no dashboard, quiet) or join the cluster at address."""
    import ray

    if ray.is_initialized():
        return
    if address is None:
        # "local": a new Ray of our own. Without it ray.init() joins whatever Ray was started last on
        # this machine (another user's, a test cluster) and then refuses num_cpus/num_gpus.
        ray.init(
            address="local",
            num_cpus=local_cpus(),
            num_gpus=local_gpus(),
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
        return
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--address {address}: cannot join a Ray cluster there ({reason})") from None


def send_ray_auth_token() -> None:
    """Make this driver present Ray's auth token, when one exists and no auth mode was chosen.

    Ray reads the mode when it is imported: call this before the first `import ray`.

    Since Ray 2.59 `ray start --head` turns token authentication on by itself when a token exists
    (~/.ray/auth_token), but ray.init(address=...) sends it only with RAY_AUTH_MODE=token: without it
    joining such a cluster fails with InvalidAuthToken. Measured with Ray 2.60: token mode also joins a
    cluster started with RAY_AUTH_MODE=disabled, so turning it on is safe.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def settings_for_cluster(settings: SearchSettings) -> SearchSettings:
    """After joining a cluster: check one trial fits its largest node and fill in the defaults."""
    import ray

    node_cpus, node_gpus = cluster_node_resources()
    total = ray.cluster_resources()
    return resolved_resources(settings, node_cpus, node_gpus, total.get("CPU", 0.0), total.get("GPU", 0.0))


def build_trainable(settings: SearchSettings) -> Any:
    """run_trial bound to the search's trial settings, with the per-trial resources."""
    from ray import tune

    from scrfd_search.search.trial import TrialSettings, run_trial

    trial_settings = TrialSettings(
        data_root=settings.data_root,
        img_size=settings.img_size,
        batch_size=settings.batch_size,
        epochs=settings.epochs,
        lr=settings.lr,
        val_interval=settings.validation_every,
        seed=settings.seed,
        trials_root=str(settings.trials_root),
        device=settings.device,
        threads=max(1, int(settings.cpus_per_trial)),
        amp=settings.amp,
    )
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial or 0.0}
    return tune.with_resources(tune.with_parameters(run_trial, settings=trial_settings), resources)


def build_searcher(prepared: PreparedSearch) -> Any:
    """The search algorithm, wrapped in a ConcurrencyLimiter.

    Ray keeps only one trial pending for a searcher that is not wrapped in a ConcurrencyLimiter,
    so trials start one after another, each waiting for the previous one's worker to come up
    (measured: 1.7 s apart with a fake 6 s trial; part of the slowness of ray issue 46965). With
    the limiter, max_concurrent trials are pending at once and start together.
    """
    from ray.tune.search import ConcurrencyLimiter

    from scrfd_search.search.searchers import BudgetedOptunaSearch, CandidateSearcher, candidate_configs

    s = prepared.settings
    if s.searcher == "random":
        searcher = CandidateSearcher(candidate_configs(prepared.candidates or []))
    else:
        searcher = BudgetedOptunaSearch(
            prepared.space,
            storage_url=s.optuna_url,
            study_name=s.name,
            seed=s.seed,
            constraint=prepared.constraint,
        )
    return ConcurrencyLimiter(searcher, max_concurrent=s.max_concurrent or 1)


def build_scheduler(settings: SearchSettings) -> Any:
    """FIFO (every trial trains all epochs) or ASHA on hard AP, by epoch, with max_t = epochs."""
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


def build_tuner(prepared: PreparedSearch, quiet: bool) -> Any:
    """A fresh Tuner: storage under results/NAME/ray, the leaderboard callback, no retries on error."""
    from ray import tune

    from scrfd_search.search.leaderboard import LeaderboardCallback

    s = prepared.settings
    callback = LeaderboardCallback(s.path, s.trials_root, s.trials, quiet=quiet)
    return tune.Tuner(
        build_trainable(s),
        tune_config=tune.TuneConfig(
            search_alg=build_searcher(prepared),
            scheduler=build_scheduler(s),
            num_samples=s.trials,
            reuse_actors=False,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=s.name,
            storage_path=str(s.ray_dir),
            callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            verbose=0,  # the leaderboard callback prints one line per finished trial instead
        ),
    )


def launch(settings: SearchSettings, *, quiet: bool = False) -> int:
    """Run a new search to the end (or until interrupted); returns the exit status."""
    if settings.address is not None:
        send_ray_auth_token()
    prepared = prepare(settings)
    if prepared.settings.address is not None:  # join first: a wrong address fails before any sampling
        init_ray(prepared.settings.address)
        prepared = replace(prepared, settings=settings_for_cluster(prepared.settings))
    progress = None if quiet else _sampling_progress
    candidates = draw_candidates(prepared.settings, prepared.space, prepared.constraint, progress)
    prepared = replace(prepared, candidates=candidates)
    init_ray(prepared.settings.address)
    s = prepared.settings
    store = ExperimentStore(s.path)
    if prepared.constraint is not None:
        atomic_write_json(s.path / CONSTRAINT_FILE, prepared.constraint.to_dict())
    store.write_experiment(experiment_record(prepared))
    store.write_trials([])
    _say(
        quiet,
        f"search {s.name}: {s.trials} trials ({s.searcher}, {s.scheduler}), up to {s.max_concurrent} at once "
        f"with {s.cpus_per_trial:g} CPUs ({data_workers(s.cpus_per_trial)} data-loader workers) and "
        f"{s.gpus_per_trial:g} GPUs each{' (mixed precision)' if s.amp else ''}; results in {s.path}",
    )
    return _fit(build_tuner(prepared, quiet), s, store, quiet)


def resume(name: str, results_dir: str | None = None, *, quiet: bool = False) -> int:
    """Continue an interrupted search: finished and errored trials are kept, unfinished ones continue."""
    store = ExperimentStore(store_path(name, results_dir)).require()
    settings = SearchSettings.from_dict(store.read_experiment(), str(store.experiment_file))
    if settings.address is not None:
        send_ray_auth_token()
    from ray import tune

    check_data_root(settings.data_root)
    if not settings.ray_experiment.is_dir() or not tune.Tuner.can_restore(str(settings.ray_experiment)):
        raise UserError(
            f"{name}: no Ray Tune experiment to restore at {settings.ray_experiment} (the launch stopped "
            f"before its first trial: remove {store.path} and launch again)"
        )
    if settings.address is None:
        check_trial_resources(settings.cpus_per_trial, settings.gpus_per_trial or 0.0, local_cpus(), local_gpus())
    init_ray(settings.address)
    if settings.address is not None:
        settings_for_cluster(settings)
    tuner = tune.Tuner.restore(
        str(settings.ray_experiment),
        trainable=build_trainable(settings),
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
    )
    _say(quiet, f"resuming search {name} from {settings.ray_experiment}")
    return _fit(tuner, settings, store, quiet)


def _fit(tuner: Any, settings: SearchSettings, store: ExperimentStore, quiet: bool) -> int:
    """Run the Tuner; afterwards mark trials cut off by an interruption as PENDING again."""
    try:
        tuner.fit()
    finally:
        finished = mark_unfinished_pending(store)
    if finished < settings.trials:
        _say(
            False,
            f"search {settings.name} stopped with {finished} of {settings.trials} trials finished; "
            f"continue it with `scrfd-search resume {settings.name}`",
        )
        return INTERRUPTED_EXIT
    failed = sum(r.state == "ERROR" for r in store.read_trials())
    _say(
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
    return sum(r.state in ("TERMINATED", "ERROR") for r in changed)


def _sampling_progress(p: Any) -> None:
    """A refreshed line while the candidates are drawn."""
    print(f"\r  drawing candidates: {p.accepted}/{p.wanted} after {p.draws} draws", end="", file=sys.stderr, flush=True)
    if p.accepted == p.wanted:
        print(file=sys.stderr)


def _say(quiet: bool, message: str) -> None:
    """A line on stderr unless quiet."""
    if not quiet:
        print(f"[scrfd-search] {message}", file=sys.stderr, flush=True)
