"""Resume a stopped search from its store.

Resume trusts the store, not Ray's experiment snapshot (which lags the trials by seconds, so a driver
killed in between would re-run a finished trial or lose an unfinished one): a trial is finished when
its row says so or its work folder holds the result of a run to its end; every other trial is run again
under its own key, so it continues from its own last checkpoint, in a fresh Tuner.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.evaluation.ground_truth import SUBSETS
from scrfd_search.io_utils import read_json_file
from scrfd_search.search.checks import (
    check_data_contents,
    check_data_root,
    check_trial_resources,
    local_cpus,
    local_gpus,
)
from scrfd_search.search.driver import DriverLease, pid_alive
from scrfd_search.search.ray_session import init_ray, send_ray_auth_token, settings_for_cluster
from scrfd_search.search.settings import SearchSettings
from scrfd_search.search.store import (
    CANDIDATES_FILE,
    ExperimentStore,
    TrialRecord,
    record_from_config,
    store_path,
    with_checkpoint,
)
from scrfd_search.search.trial import TRIAL_FILE, finished_result, read_events
from scrfd_search.search.tuner import build_tuner, fit, say

STALE_WORKER_WAIT_S = 60.0


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
    _check_before_resume(settings, name)
    with DriverLease(store.path, "resume"):
        _write_rows_or_migrate(store, rows, rebuild_leaderboard, name)
        rows = reconcile(store, rows)
        finished = {r.trial_id for r in rows if r.finished}
        unfinished = [r for r in rows if r.trial_id not in finished]
        if configs is not None:
            todo = [c for c in configs if c["trial_key"] not in finished]
            samples = len(todo)
        else:
            todo = [_replay_config(r) for r in unfinished]
            samples = max(0, settings.trials - len(finished))
        if samples == 0:
            say(quiet, f"search {name}: all {settings.trials} trials already finished; nothing to resume")
            return 0
        _wait_for_stale_workers(store, [r for r in unfinished if r.trial_id in {c["trial_key"] for c in todo}])
        init_ray(settings.address)
        if settings.address is not None:
            from scrfd_search.search.shared_storage import check_search_storage  # ray

            settings_for_cluster(settings)
            check_search_storage(settings)
        say(
            quiet,
            f"resuming search {name}: {len(finished)} of {settings.trials} trials finished, "
            f"{len(unfinished)} continue from their checkpoints, {samples - len(unfinished)} not started yet",
        )
        return fit(build_tuner(settings, record, todo, samples, quiet), settings, store, quiet)


def _check_before_resume(settings: SearchSettings, name: str) -> None:
    """The data is where the store says (or --data says) and a trial still fits this machine."""
    try:
        check_data_root(settings.data_root)
    except UserError as exc:
        raise UserError(f"{exc}; a moved store points at its data with `resume {name} --data PATH`") from None
    check_data_contents(settings.data_root)
    if settings.address is not None:
        send_ray_auth_token()
    else:
        check_trial_resources(settings.cpus_per_trial, settings.gpus_per_trial or 0.0, local_cpus(), local_gpus())


def _write_rows_or_migrate(store: ExperimentStore, rows: list[TrialRecord], rebuilt: bool, name: str) -> None:
    """Store rebuilt rows; or move an old store's rows from leaderboard.json into the database, once."""
    if rebuilt:
        store.write_trials(rows)
    elif store.needs_migration():
        moved = store.migrate()
        say(
            False,
            f"search {name}: moved {moved} trial rows from {store.leaderboard_file.name} into "
            f"{store.database_file.name} (once; leaderboard.json stays as a snapshot)",
        )


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
    expected = "the candidates list `launch` writes; launch the search again"
    data = read_json_file(path, expected, missing="missing (the random searcher's candidates)")
    configs = data.get("candidates") if isinstance(data, dict) else None
    if not isinstance(configs, list) or not all(isinstance(c, dict) and "trial_key" in c for c in configs):
        raise UserError(f"{path}: not {expected}")
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
    result = finished_result(store.path / row.work_dir)
    if result is None:
        return None
    aps = {k: float(result[k]) for k in SUBSETS}
    done = row.updated(state="TERMINATED", error=None, epochs_run=int(result.get("epochs_run", 0)), **aps)
    if isinstance(result.get("hard_runs"), list):  # a repeated trial: its runs beside the mean
        done = done.updated(extra={**done.extra, "hard_runs": [float(h) for h in result["hard_runs"]]})
    return with_checkpoint(done, store.path)


def reconcile(store: ExperimentStore, rows: list[TrialRecord]) -> list[TrialRecord]:
    """Rows of a dead driver made true: trained-to-the-end trials TERMINATED, other unfinished ones PENDING."""
    fixed = []
    for row in rows:
        if row.finished:
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
        "latency_ms": row.latency_ms,
    }


def _wait_for_stale_workers(store: ExperimentStore, rows: list[TrialRecord]) -> None:
    """Wait until the workers of a killed driver's trials are gone (they must not share a folder with new ones)."""
    wait_for_stale_workers([(row.trial_id, store.path / row.work_dir) for row in rows])


def wait_for_stale_workers(folders: list[tuple[str, Path]]) -> None:
    """Wait until no worker of an earlier driver on this host still trains in one of the (key, work folder)s."""
    host = socket.gethostname()
    deadline = time.time() + STALE_WORKER_WAIT_S
    for key, folder in folders:
        events = read_events(folder)
        starts = [e for e in events if e.get("event") == "start" and e.get("host") == host]
        pid = starts[-1].get("pid") if starts else None
        if not isinstance(pid, int) or pid == os.getpid():
            continue
        while pid_alive(pid) and _is_trial_worker(pid):
            if time.time() > deadline:
                raise UserError(
                    f"{folder}: trial {key} is still being trained by "
                    f"process {pid} of an earlier driver; stop it (kill {pid}) and resume again"
                )
            time.sleep(0.5)


def _is_trial_worker(pid: int) -> bool:
    """Whether pid is (still) a Ray worker process ("ray::..."), not an unrelated one that reused the id."""
    try:
        return "ray::" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
