"""The driver-side Ray Tune callback that keeps the trial rows current (the driver is their only writer).

Each event reads and writes the one row it concerns in trials.db, so its cost does not grow with the
number of trials; leaderboard.json, the snapshot, follows every few seconds and at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ray.tune import Callback

from scrfd_search.evaluation.ground_truth import SUBSETS
from scrfd_search.search.store import (
    FINISHED_STATES,
    ExperimentStore,
    TrialRecord,
    record_from_config,
    with_checkpoint,
)

MAX_ERROR_CHARS = 2000


def trial_key(trial: Any) -> str:
    """The row id and work folder name of a Ray trial: its config's stable key (Ray's id if it has none)."""
    return str(trial.config.get("trial_key") or trial.trial_id)


def with_result(record: TrialRecord, result: dict[str, Any] | None) -> TrialRecord:
    """The row updated with the APs and epoch of a reported result (unchanged when result lacks them)."""
    if not result or "hard" not in result:
        return record
    aps = {k: float(result[k]) for k in SUBSETS if result.get(k) is not None}
    extra = record.extra
    if isinstance(result.get("placement"), dict):  # where the trial runs: node, GPU ids, device, workers
        extra = {**extra, "placement": result["placement"]}
    if isinstance(result.get("flops_check"), dict):  # the closed-form and fvcore GFLOPs the trial compared
        extra = {**extra, "flops_check": result["flops_check"]}
    if isinstance(result.get("hard_runs"), list):  # --repeats: every run's hard AP (the row holds the mean)
        extra = {**extra, "hard_runs": [float(h) for h in result["hard_runs"]]}
    return record.updated(**aps, epochs_run=int(result.get("epoch", record.epochs_run)), extra=extra)


def error_summary(text: str | None) -> str:
    """The last line of a traceback (what went wrong), shortened for the table."""
    if not text:
        return "trial failed (no error text recorded)"
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else str(text))[:MAX_ERROR_CHARS]


def trial_error_text(trial: Any) -> str | None:
    """The error Ray recorded for a trial: its local error file (synced to storage only later)."""
    path = trial.error_file
    if path and Path(path).is_file():
        return Path(path).read_text()
    return trial.get_error() if trial.run_metadata.error_filename else None


class LeaderboardCallback(Callback):
    """Upserts one leaderboard row per trial on start, on every result, on completion and on error."""

    def __init__(self, store_path: str | Path, total_trials: int, quiet: bool = False):
        self.store_path = str(store_path)
        self.total_trials = total_trials
        self.quiet = quiet
        self._opened: ExperimentStore | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the open store (it holds a database connection)."""
        return {**self.__dict__, "_opened": None}

    def _store(self) -> ExperimentStore:
        """The experiment store, opened on first use."""
        if self._opened is None:
            self._opened = ExperimentStore(self.store_path)
        return self._opened

    def _row(self, trial: Any) -> TrialRecord:
        """The stored row of a trial, or a new one built from its config (with Ray's id of this run)."""
        key = trial_key(trial)
        row = self._store().read_trial(key) or record_from_config(key, trial.config)
        return row.updated(extra={**row.extra, "ray_trial_id": trial.trial_id})

    def _save(self, record: TrialRecord) -> None:
        """Write the row (one row of trials.db; the snapshot follows when due)."""
        self._store().upsert(record)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Between events: bring leaderboard.json up to date when it is due (a quiet search still gets it)."""
        self._store().flush(force=False)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """The Tuner is done: the snapshot gets the last rows."""
        self._store().flush()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial got its resources and starts (or restarts after a resume)."""
        self._save(self._row(trial).updated(state="RUNNING", error=None))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        """A validation finished: record the APs reached so far."""
        self._save(with_result(self._row(trial), result).updated(state="RUNNING"))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial finished training (or was stopped early by ASHA)."""
        record = with_result(self._row(trial), trial.last_result).updated(state="TERMINATED", error=None)
        record = with_checkpoint(record, Path(self.store_path))
        self._save(record)
        self._announce(record)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial raised (NaN loss, out of memory, a dead worker): keep its error, the search goes on."""
        record = with_result(self._row(trial), trial.last_result).updated(
            state="ERROR", error=error_summary(trial_error_text(trial))
        )
        self._save(record)
        self._announce(record)

    def _announce(self, record: TrialRecord) -> None:
        """One progress line on the driver's console."""
        if self.quiet:
            return
        done = self._store().count_trials(FINISHED_STATES)
        hard = "-" if record.hard is None else f"{100 * record.hard:.2f}%"
        what = f"error: {record.error}" if record.state == "ERROR" else f"hard AP {hard}"
        print(
            f"[scrfd-search] trial {record.trial_id} {record.state.lower()} after {record.epochs_run} epochs, "
            f"{what} ({done}/{self.total_trials} finished)",
            file=sys.stderr,
            flush=True,
        )
