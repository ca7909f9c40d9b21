"""Launch a new search: prepare it, write its store, and run its Tuner to the end.

Layout of results/NAME/ (the driver is its only writer; no absolute path inside, so it can be moved):
  experiment.json   the launch settings, the space, the budget and (step 2) the share constraint
  candidates.json   random searcher: the N candidates drawn at launch (trial KEY = c0000, c0001, ...)
  constraint.json   step 2 only: the share ranges derived from the step-1 search
  trials.db         one row per trial KEY (SQLite, WAL): each event writes its row (search.trial_db)
  leaderboard.json  a snapshot of trials.db's rows for people and tools, rewritten atomically every few
                    seconds and when the driver stops
  optuna.db         the Optuna study (--searcher optuna), SQLite, for optuna-dashboard (KEY = o0000, ...)
  driver.json       the live driver's pid, host and heartbeat (driver.lock: its exclusive lock)
  ray/NAME*/        Ray Tune's own records of each driver run (launch, then one per resume)
  trials/KEY/       each trial's work folder: trial.json, mmengine logs, checkpoints, trial_events.jsonl,
                    result.json once trained to its end
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from typing import Any

from scrfd_search.io_utils import atomic_write_json
from scrfd_search.search.costs import latency_predictor, with_latency
from scrfd_search.search.driver import DriverLease
from scrfd_search.search.prepare import PreparedSearch, experiment_record, prepare, with_candidates
from scrfd_search.search.ray_session import init_ray, send_ray_auth_token, settings_for_cluster
from scrfd_search.search.settings import CONSTRAINT_FILE, SearchSettings
from scrfd_search.search.status_table import recipe_text
from scrfd_search.search.store import CANDIDATES_FILE, ExperimentStore
from scrfd_search.search.trial import data_workers
from scrfd_search.search.tuner import build_tuner, fit, say


def launch(settings: SearchSettings, *, quiet: bool = False, trainable: Any = None, reuse_actors: bool = False) -> int:
    """Run a new search to the end (or until interrupted); returns the exit status.

    trainable, reuse_actors: what each trial runs instead of training its candidate, in reused worker
    processes (benchmarks/bench_driver_scale.py measures the driver alone so).
    """
    if settings.address is not None:
        send_ray_auth_token()
    prepared = prepare(settings)
    if prepared.settings.address is not None:  # join first: a wrong address fails before any sampling
        init_ray(prepared.settings.address)
        prepared = replace(prepared, settings=settings_for_cluster(prepared.settings))
        from scrfd_search.search.shared_storage import check_search_storage  # ray

        check_search_storage(prepared.settings)
    prepared = with_candidates(prepared, None if quiet else _sampling_progress)
    s = prepared.settings
    store = ExperimentStore(s.path)
    created = not store.path.exists()
    with DriverLease(store.path, "launch"):
        try:
            init_ray(s.address)
            configs = _write_new_store(prepared, store)
            record = store.read_experiment()
        except BaseException:
            if created and not store.exists():  # failed before the search existed: leave nothing behind
                shutil.rmtree(store.path, ignore_errors=True)
            raise
        say(
            quiet,
            f"search {s.name}: {s.trials} trials ({s.searcher}, {s.scheduler}), up to {s.max_concurrent} at once "
            f"with {s.cpus_per_trial:g} CPUs ({data_workers(s.cpus_per_trial)} data-loader workers) and "
            f"{s.gpus_per_trial:g} GPUs each{' (mixed precision)' if s.amp else ''}; results in {s.path}",
        )
        say(quiet, "recipe: " + recipe_text(record))
        return fit(build_tuner(s, record, configs, s.trials, quiet, trainable, reuse_actors), s, store, quiet)


def _write_new_store(prepared: PreparedSearch, store: ExperimentStore) -> list[dict[str, Any]]:
    """Write candidates, constraint, leaderboard and (last: it marks the store as existing) experiment.json."""
    from scrfd_search.search.searchers import candidate_configs

    s = prepared.settings
    configs = candidate_configs(prepared.candidates, prepared.recipes) if prepared.candidates is not None else []
    configs = with_latency(configs, latency_predictor(prepared.space))
    if s.searcher == "random":
        atomic_write_json(store.path / CANDIDATES_FILE, {"candidates": configs})
    if prepared.constraint is not None:
        atomic_write_json(s.path / CONSTRAINT_FILE, prepared.constraint.to_dict())
    store.write_trials([])
    store.write_experiment(experiment_record(prepared))
    return configs


def _sampling_progress(p: Any) -> None:
    """A refreshed line while the candidates are drawn."""
    print(f"\r  drawing candidates: {p.accepted}/{p.wanted} after {p.draws} draws", end="", file=sys.stderr, flush=True)
    if p.accepted == p.wanted:
        print(file=sys.stderr)
