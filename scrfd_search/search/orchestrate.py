"""Launch and resume a search: checks, candidate drawing, the Ray Tune Tuner, and the experiment store.

Layout of results/NAME/ (the driver is its only writer; no absolute path inside, so it can be moved):
  experiment.json   the launch settings, the space, the budget and (step 2) the share constraint
  candidates.json   random searcher: the N candidates drawn at launch (trial KEY = c0000, c0001, ...)
  constraint.json   step 2 only: the share ranges derived from the step-1 search
  leaderboard.json  one row per trial KEY, rewritten atomically after every reported result
  optuna.db         the Optuna study (--searcher optuna), SQLite, for optuna-dashboard (KEY = o0000, ...)
  driver.json       the live driver's pid, host and heartbeat (driver.lock: its exclusive lock)
  ray/NAME*/        Ray Tune's own records of each driver run (launch, then one per resume)
  trials/KEY/       each trial's work folder: trial.json, mmengine logs, checkpoints, trial_events.jsonl,
                    result.json once trained to its end

Resume trusts the store, not Ray's experiment snapshot (which lags the trials by seconds, so a driver
killed in between would re-run a finished trial or lose an unfinished one): a trial is finished when
its row says so or its work folder holds the result of a run to its end; every other trial is run again
under its own key, so it continues from its own last checkpoint, in a fresh Tuner.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scrfd_search.config_builder import build_model
from scrfd_search.errors import UserError
from scrfd_search.evaluation.ground_truth import SUBSETS
from scrfd_search.flops.measure import measure_flops
from scrfd_search.io_utils import atomic_write_json, check_writable
from scrfd_search.recipe import Recipe, RecipeSpace, draw_recipes
from scrfd_search.sampling.sampler import Candidate, sample_candidates
from scrfd_search.search.checks import (
    check_address_reachable,
    check_data_contents,
    check_data_root,
    check_trial_resources,
    cluster_node_resources,
    default_max_concurrent,
    local_cpus,
    local_gpus,
)
from scrfd_search.search.constraint import ShareConstraint, constraint_from_store
from scrfd_search.search.driver import DriverLease, pid_alive
from scrfd_search.search.experiment import ExperimentRecord
from scrfd_search.search.settings import CONSTRAINT_FILE, SearchSettings, asha_grace_period
from scrfd_search.search.status_table import recipe_text
from scrfd_search.search.store import ExperimentStore, TrialRecord, record_from_config, store_path, with_checkpoint
from scrfd_search.search.trial import (
    TRIAL_FILE,
    data_workers,
    finished_result,
    read_events,
    run_trial,
    trial_settings,
)
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import DEFAULT_INPUT_SHAPE, SearchSpace, load_recipe_section

CANDIDATES_FILE = "candidates.json"
STALE_WORKER_WAIT_S = 60.0

INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class PreparedSearch:
    """Everything a search needs, validated before anything is written or any trial starts."""

    settings: SearchSettings
    space: SearchSpace | None  # None for a recipe-only search
    constraint: ShareConstraint | None
    candidates: list[Any] | None  # the sampler's Candidates (random searcher only)
    recipe_space: RecipeSpace | None = None
    recipe_from: str | None = None  # the step-1 search whose recipe settings a step-2 search inherited
    arch: ArchSpec | None = None  # the fixed architecture of a recipe-only search
    recipes: list[Recipe] | None = None  # one per candidate (random searcher with a recipe section)

    @property
    def base_recipe(self) -> Recipe:
        """The recipe of every trial (no section), or what the section leaves to the launch flags."""
        only = self.recipe_space.optimizers[0] if self.recipe_space and len(self.recipe_space.optimizers) == 1 else None
        return self.settings.recipe(only)

    @property
    def input_shape(self) -> tuple[int, int]:
        """(H, W) at which FLOPs are counted."""
        return self.space.input_shape if self.space is not None else DEFAULT_INPUT_SHAPE


def prepare(settings: SearchSettings) -> PreparedSearch:
    """Check the name, data, space (and recipe), step-2 source and local resources (candidates are drawn later)."""
    store = ExperimentStore(settings.path)
    if store.exists():
        raise UserError(
            f"--name {settings.name}: {settings.path} already holds a search "
            f"(continue it with `scrfd-search resume {settings.name}` or pick another name)"
        )
    check_writable(settings.results_dir, "--results-dir")
    check_data_root(settings.data_root)
    check_data_contents(settings.data_root)
    if settings.recipe_only:
        arch = ArchSpec.load(settings.arch_file)  # type: ignore[arg-type]
        recipe_space = load_recipe_section(settings.space_file)
        check_recipe_flags(settings, recipe_space, settings.space_file)
        prepared = PreparedSearch(settings, None, None, None, recipe_space, None, arch)
    else:
        space = SearchSpace.load(settings.space_file)
        constraint = step_constraint(settings, space)
        settings, recipe_space, recipe_from = inherited_recipe(settings, space)
        check_recipe_flags(settings, recipe_space, recipe_from or settings.space_file)
        prepared = PreparedSearch(settings, space, constraint, None, recipe_space, recipe_from)
    if settings.address is not None:
        check_address_reachable(settings.address)
    return replace(prepared, settings=with_resources_checked(settings))


RECIPE_FLAGS = (("optimizer", "--optimizer"), ("lr", "--lr"), ("weight_decay", "--weight-decay"))


def inherited_recipe(
    settings: SearchSettings, space: SearchSpace
) -> tuple[SearchSettings, RecipeSpace | None, str | None]:
    """A step-2 search without its own `recipe:` section takes step 1's section and recipe flags.

    Flags given to this launch still win over step 1's; a section in this search's YAML replaces all of step 1's.
    """
    if space.recipe is not None or settings.from_experiment is None:
        return settings, space.recipe, None
    source = ExperimentStore(store_path(settings.from_experiment, settings.results_dir))
    step1 = source.read_experiment()
    section = step1.recipe_space
    recipe_space = RecipeSpace.from_dict(section, f"{source.experiment_file}: recipe_space") if section else None
    flags = {k: getattr(step1.settings, k, None) for k in ("optimizer", "lr", "weight_decay", "momentum")}
    inherited = {k: v for k, v in flags.items() if v is not None and getattr(settings, k) is None}
    if not inherited and recipe_space is None:
        return settings, None, None
    return replace(settings, **inherited), recipe_space, settings.from_experiment


def check_recipe_flags(settings: SearchSettings, recipe_space: RecipeSpace | None, where: str) -> None:
    """Refuse a launch flag that the `recipe:` section also sets (one of the two would be ignored)."""
    if recipe_space is None:
        return
    searched = {"optimizer": True, "lr": bool(recipe_space.lr), "weight_decay": bool(recipe_space.weight_decay)}
    for key, flag in RECIPE_FLAGS:
        if getattr(settings, key) is None:
            continue
        if searched[key]:
            raise UserError(f"{flag}: the recipe: section of {where} sets {key} (drop the flag or the key)")
        if len(recipe_space.optimizers) > 1:
            raise UserError(
                f"{flag}: ambiguous with several optimizers in the recipe: section of {where} "
                f"(give {key} there, per optimizer)"
            )


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
    accept = constraint.accept_fn if constraint is not None else None
    # few uniform draws meet the share ranges: the sampler draws among those that do (see sample_candidates)
    shares = constraint.ranges if constraint is not None else None
    if settings.searcher == "random":
        return sample_candidates(space, settings.trials, settings.seed, accept=accept, shares=shares, progress=progress)
    sample_candidates(space, 1, settings.seed, accept=accept, shares=shares, confirm=False)
    return None


def with_candidates(prepared: PreparedSearch, progress: Any) -> PreparedSearch:
    """Draw what a search hands out before it starts: candidates (random searcher) and their recipes.

    Recipes come from a random stream of their own (recipe.draw_recipes), so a search with a `recipe:`
    section trains the same architectures as the same search without it. A recipe-only search repeats
    its one architecture (FLOPs measured once by fvcore) with each recipe.
    """
    s = prepared.settings
    if prepared.arch is not None:
        one = fixed_candidate(prepared.arch, prepared.input_shape)
        candidates: list[Any] | None = [one] * s.trials if s.searcher == "random" else [one]
    else:
        candidates = draw_candidates(s, prepared.space, prepared.constraint, progress)  # type: ignore[arg-type]
    recipes = None
    if prepared.recipe_space is not None and s.searcher == "random":
        recipes = draw_recipes(prepared.recipe_space, s.trials, s.seed, prepared.base_recipe)
    return replace(prepared, candidates=candidates, recipes=recipes)


def fixed_candidate(arch: ArchSpec, input_shape: tuple[int, int]) -> Candidate:
    """A recipe-only search's one architecture as a sampler Candidate, its FLOPs measured by fvcore."""
    return Candidate(arch, measure_flops(build_model(arch, init_weights=False), input_shape))


def experiment_record(prepared: PreparedSearch) -> ExperimentRecord:
    """What experiment.json holds: the settings, the space, budget, constraint and recipe (no store paths)."""
    s, space = prepared.settings, prepared.space
    recipe = dict(
        recipe=prepared.base_recipe.to_dict(),
        recipe_space=prepared.recipe_space.to_dict() if prepared.recipe_space else None,
        recipe_from=prepared.recipe_from,
        input_shape=tuple(prepared.input_shape),
    )
    if space is None:  # recipe-only
        arch = prepared.arch.to_dict() if prepared.arch else None
        return ExperimentRecord.for_launch(s, None, None, None, None, None, arch=arch, **recipe)
    constraint = prepared.constraint.to_dict() if prepared.constraint else None
    return ExperimentRecord.for_launch(
        s, space.to_dict(), space.step, space.budget_gflops, space.tolerance, constraint, **recipe
    )


def init_ray(address: str | None) -> None:
    """Start a local Ray (all local cores, no dashboard, quiet) or join the cluster at address."""
    import ray

    if ray.is_initialized():
        return
    if address is None:
        # "local": a new Ray of our own. Without it ray.init() joins whatever Ray was started last on
        # this machine (another user's, a test cluster) and then refuses num_cpus/num_gpus.
        ray.init(
            # "local": always a private instance. Without it ray.init joins any cluster another user
            # started on this machine with `ray start --head` (and then refuses num_cpus)
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


def launch(settings: SearchSettings, *, quiet: bool = False) -> int:
    """Run a new search to the end (or until interrupted); returns the exit status."""
    if settings.address is not None:
        send_ray_auth_token()
    prepared = prepare(settings)
    if prepared.settings.address is not None:  # join first: a wrong address fails before any sampling
        init_ray(prepared.settings.address)
        prepared = replace(prepared, settings=settings_for_cluster(prepared.settings))
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
        _say(
            quiet,
            f"search {s.name}: {s.trials} trials ({s.searcher}, {s.scheduler}), up to {s.max_concurrent} at once "
            f"with {s.cpus_per_trial:g} CPUs ({data_workers(s.cpus_per_trial)} data-loader workers) and "
            f"{s.gpus_per_trial:g} GPUs each{' (mixed precision)' if s.amp else ''}; results in {s.path}",
        )
        _say(quiet, "recipe: " + recipe_text(record))
        return _fit(build_tuner(s, record, configs, s.trials, quiet), s, store, quiet)


def _write_new_store(prepared: PreparedSearch, store: ExperimentStore) -> list[dict[str, Any]]:
    """Write candidates, constraint, leaderboard and (last: it marks the store as existing) experiment.json."""
    from scrfd_search.search.searchers import candidate_configs

    s = prepared.settings
    configs = candidate_configs(prepared.candidates, prepared.recipes) if prepared.candidates is not None else []
    if s.searcher == "random":
        atomic_write_json(store.path / CANDIDATES_FILE, {"candidates": configs})
    if prepared.constraint is not None:
        atomic_write_json(s.path / CONSTRAINT_FILE, prepared.constraint.to_dict())
    store.write_trials([])
    store.write_experiment(experiment_record(prepared))
    return configs


def resume(
    name: str,
    results_dir: str | None = None,
    *,
    data_root: str | None = None,
    rebuild_leaderboard: bool = False,
    quiet: bool = False,
) -> int:
    """Continue a stopped search: finished and errored trials are kept, every other candidate is trained.

    The store is checked first and nothing is changed when it is broken.
    """
    store = ExperimentStore(store_path(name, results_dir)).require()
    record = store.read_experiment()
    settings = record.require_settings(str(store.experiment_file))
    if data_root is not None:
        settings = replace(settings, data_root=str(Path(data_root).expanduser().resolve()))
    rows = rebuilt_rows(store) if rebuild_leaderboard else _readable_rows(store, name)
    configs = _stored_candidates(store) if settings.searcher == "random" else None
    try:
        check_data_root(settings.data_root)
    except UserError as exc:
        raise UserError(f"{exc}; a moved store points at its data with `resume {name} --data PATH`") from None
    check_data_contents(settings.data_root)
    if settings.address is not None:
        send_ray_auth_token()
    else:
        check_trial_resources(settings.cpus_per_trial, settings.gpus_per_trial or 0.0, local_cpus(), local_gpus())
    with DriverLease(store.path, "resume"):
        if rebuild_leaderboard:
            store.write_trials(rows)
        rows = reconcile(store, rows)
        finished = {r.trial_id for r in rows if r.state in ("TERMINATED", "ERROR")}
        unfinished = [r for r in rows if r.trial_id not in finished]
        if configs is not None:
            todo = [c for c in configs if c["trial_key"] not in finished]
            samples = len(todo)
        else:
            todo = [_replay_config(r) for r in unfinished]
            samples = max(0, settings.trials - len(finished))
        if samples == 0:
            _say(quiet, f"search {name}: all {settings.trials} trials already finished; nothing to resume")
            return 0
        _wait_for_stale_workers(store, [r for r in unfinished if r.trial_id in {c["trial_key"] for c in todo}])
        init_ray(settings.address)
        if settings.address is not None:
            settings_for_cluster(settings)
        _say(
            quiet,
            f"resuming search {name}: {len(finished)} of {settings.trials} trials finished, "
            f"{len(unfinished)} continue from their checkpoints, {samples - len(unfinished)} not started yet",
        )
        return _fit(build_tuner(settings, record, todo, samples, quiet), settings, store, quiet)


def _readable_rows(store: ExperimentStore, name: str) -> list[TrialRecord]:
    """The leaderboard's rows; a broken leaderboard is a UserError that says how to rebuild it."""
    try:
        return store.read_trials()
    except UserError as exc:
        raise UserError(
            f"{exc}; nothing was changed. Rebuild it from the trials' own result.json files with "
            f"`scrfd-search resume {name} --rebuild-leaderboard`"
        ) from None


def _stored_candidates(store: ExperimentStore) -> list[dict[str, Any]]:
    """The candidates the launch drew (candidates.json), checked."""
    path = store.path / CANDIDATES_FILE
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
        configs = data["candidates"]
        if not isinstance(configs, list) or not all(isinstance(c, dict) and "trial_key" in c for c in configs):
            raise TypeError
    except FileNotFoundError:
        raise UserError(f"{path}: missing (the random searcher's candidates); launch the search again") from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        raise UserError(f"{path}: not the candidates list `launch` writes; launch the search again") from None
    return configs


def rebuilt_rows(store: ExperimentStore) -> list[TrialRecord]:
    """Leaderboard rows from every trial folder's trial.json (and result.json when it trained to its end)."""
    rows = []
    root = store.path / "trials"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            config = json.loads((folder / TRIAL_FILE).read_text())["config"]
            row = record_from_config(folder.name, config)
        except (OSError, ValueError, KeyError, TypeError, UserError):
            continue  # a folder a trial never got to describe: its candidate is simply trained again
        rows.append(_finished_row(row, store) or row.updated(state="PENDING"))
    return rows


def _finished_row(row: TrialRecord, store: ExperimentStore) -> TrialRecord | None:
    """The row marked TERMINATED with its APs, when its work folder holds the result of a run to its end."""
    result = finished_result(store.path / row.extra.get("work_dir", f"trials/{row.trial_id}"))
    if result is None:
        return None
    aps = {k: float(result[k]) for k in SUBSETS}
    done = row.updated(state="TERMINATED", error=None, epochs_run=int(result.get("epochs_run", 0)), **aps)
    return with_checkpoint(done, store.path)


def reconcile(store: ExperimentStore, rows: list[TrialRecord]) -> list[TrialRecord]:
    """Rows of a dead driver made true: trained-to-the-end trials TERMINATED, other unfinished ones PENDING."""
    fixed = []
    for row in rows:
        if row.state in ("TERMINATED", "ERROR"):
            fixed.append(row)
            continue
        done = _finished_row(row, store)
        fixed.append(done or row.updated(state="PENDING", extra={**row.extra, "interrupted": True}))
    if fixed != rows:
        store.write_trials(fixed)
    return fixed


def _replay_config(row: TrialRecord) -> dict[str, Any]:
    """The config an unfinished Optuna trial is handed out with again (same key, arch and study number)."""
    return {
        "trial_key": row.trial_id,
        "arch": row.arch.to_dict(),
        "flops": row.flops.to_dict(),
        "optuna_number": row.extra.get("optuna_number"),
    }


def _wait_for_stale_workers(store: ExperimentStore, rows: list[TrialRecord]) -> None:
    """Wait until the workers of a killed driver's trials are gone (they must not share a folder with new ones)."""
    host = socket.gethostname()
    deadline = time.time() + STALE_WORKER_WAIT_S
    for row in rows:
        events = read_events(store.path / row.extra.get("work_dir", f"trials/{row.trial_id}"))
        starts = [e for e in events if e.get("event") == "start" and e.get("host") == host]
        pid = starts[-1].get("pid") if starts else None
        if not isinstance(pid, int) or pid == os.getpid():
            continue
        while pid_alive(pid) and _is_trial_worker(pid):
            if time.time() > deadline:
                raise UserError(
                    f"{store.path / row.extra.get('work_dir', '')}: trial {row.trial_id} is still being trained by "
                    f"process {pid} of an earlier driver; stop it (kill {pid}) and resume again"
                )
            time.sleep(0.5)


def _is_trial_worker(pid: int) -> bool:
    """Whether pid is (still) a Ray worker process ("ray::..."), not an unrelated one that reused the id."""
    try:
        return "ray::" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


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
