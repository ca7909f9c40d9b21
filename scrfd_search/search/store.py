"""The experiment store: results/NAME/ with experiment.json, the trial rows in trials.db (SQLite) and
leaderboard.json, a snapshot of those rows for people and tools, rewritten atomically every few seconds.

A store from before trials.db (leaderboard.json alone) is read as it is; its first write (`resume`
does one at its start) moves its rows into trials.db once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.flops.report import FlopsReport
from scrfd_search.io_utils import atomic_write_json, atomic_write_text, read_json_file
from scrfd_search.recipe import Recipe
from scrfd_search.search.experiment import ExperimentRecord, read_experiment_file
from scrfd_search.search.objectives import HARD, Objective, is_multi, pareto_ids
from scrfd_search.search.settings import TRIALS_DIR
from scrfd_search.search.trial import finished_result, trial_work_dir
from scrfd_search.search.trial_db import DB_FILE, TrialDatabase
from scrfd_search.space.arch import ArchSpec

EXPERIMENT_FILE = "experiment.json"
LEADERBOARD_FILE = "leaderboard.json"
CANDIDATES_FILE = "candidates.json"  # random searcher: the candidates drawn at launch
TRIAL_STATES = ("PENDING", "RUNNING", "TERMINATED", "ERROR")
FINISHED_STATES = ("TERMINATED", "ERROR")  # a trial in one of these is not trained again by resume
DEFAULT_RESULTS_DIR = "results"
SNAPSHOT_EVERY_S = 5.0  # leaderboard.json is rewritten at most this often while rows change...
SNAPSHOT_SHARE = 0.05  # ...and less often when writing it takes more than this share of the time


@dataclass(frozen=True)
class TrialRecord:
    """One leaderboard row: a candidate, its cost and the APs it reached."""

    trial_id: str
    arch: ArchSpec
    flops: FlopsReport
    state: str = "PENDING"
    easy: float | None = None
    medium: float | None = None
    hard: float | None = None
    epochs_run: int = 0
    error: str | None = None
    checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] | None = None  # optimizer, lr, weight_decay, momentum when the search sampled them
    latency_ms: float | None = None  # predicted by the space's latency table, when it has one

    def to_dict(self) -> dict[str, Any]:
        """JSON form of the row."""
        out = asdict(self)
        out["arch"] = self.arch.to_dict()
        out["flops"] = self.flops.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "leaderboard") -> TrialRecord:
        """Inverse of to_dict; a row that is not one gives a UserError naming the source."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: a trial row is {type(data).__name__}, expected an object")
        if data.get("state") not in TRIAL_STATES:
            raise UserError(f"{source}: trial {data.get('trial_id')!r} has unknown state {data.get('state')!r}")
        trial_id = data.get("trial_id")
        if not isinstance(trial_id, str) or not trial_id:
            raise UserError(f"{source}: trial id {trial_id!r} is not a non-empty string")
        where = f"{source}: trial {trial_id}"
        aps = {}
        for key in ("easy", "medium", "hard"):
            value = data.get(key)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise UserError(f"{where}: {key}: {value!r} is not a number")
            aps[key] = None if value is None else float(value)
        epochs = data.get("epochs_run", 0)
        if not isinstance(epochs, int) or isinstance(epochs, bool):
            raise UserError(f"{where}: epochs_run: {epochs!r} is not a whole number")
        for key in ("error", "checkpoint"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise UserError(f"{where}: {key}: {data[key]!r} is not a string")
        latency = data.get("latency_ms")
        if latency is not None and (not isinstance(latency, int | float) or isinstance(latency, bool)):
            raise UserError(f"{where}: latency_ms: {latency!r} is not a number")
        if not isinstance(data.get("extra") or {}, dict):
            raise UserError(f"{where}: extra: expected an object")
        try:
            flops = FlopsReport.from_dict(data["flops"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UserError(f"{where}: flops: not a FLOPs report as `launch` writes it") from None
        return cls(
            trial_id=trial_id,
            arch=ArchSpec.from_dict(data.get("arch"), where),
            flops=flops,
            state=data["state"],
            **aps,
            epochs_run=epochs,
            error=data.get("error"),
            checkpoint=data.get("checkpoint"),
            extra=dict(data.get("extra") or {}),
            recipe=_recipe_of(data.get("recipe"), f"{source}: trial {data['trial_id']}"),
            latency_ms=None if latency is None else float(latency),
        )

    @property
    def work_dir(self) -> Path:
        """The trial's work folder, relative to its store (trials/KEY unless the row names another)."""
        return Path(self.extra.get("work_dir") or trial_work_dir(Path(TRIALS_DIR), self.trial_id))

    @property
    def finished(self) -> bool:
        """Whether the trial ended (trained to its end or failed), so resume leaves it alone."""
        return self.state in FINISHED_STATES

    def updated(self, **changes: Any) -> TrialRecord:
        """A copy with some fields changed."""
        return replace(self, **changes)


def record_from_config(trial_id: str, config: dict[str, Any]) -> TrialRecord:
    """A fresh PENDING row for a trial, from the arch and FLOPs its config carries (work_dir relative to the store)."""
    extra: dict[str, Any] = {"work_dir": str(trial_work_dir(Path(TRIALS_DIR), trial_id))}
    if "candidate" in config:
        extra["candidate"] = config["candidate"]
    if "optuna_number" in config:
        extra["optuna_number"] = config["optuna_number"]
    return TrialRecord(
        trial_id=trial_id,
        arch=ArchSpec.from_dict(config["arch"], f"trial {trial_id} config"),
        flops=FlopsReport.from_dict(config["flops"]),
        extra=extra,
        recipe=config.get("recipe"),
        latency_ms=config.get("latency_ms"),
    )


def with_checkpoint(record: TrialRecord, store_dir: Path) -> TrialRecord:
    """The row with its final checkpoint (relative to the store), when its result.json names one there."""
    result = finished_result(store_dir / record.work_dir)
    checkpoint = result.get("checkpoint") if result else None
    if not checkpoint:
        return record
    return record.updated(checkpoint=str(record.work_dir / Path(checkpoint).name))


def _recipe_of(data: Any, source: str) -> dict[str, Any] | None:
    """A row's recipe, checked (None for rows of searches without a recipe section)."""
    return None if data is None else Recipe.from_dict(data, f"{source}: recipe").to_dict()


def store_path(name: str, results_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the experiment called name (results/NAME by default, or $SCRFD_SEARCH_RESULTS/NAME)."""
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"experiment name {name!r}: expected a plain folder name (letters, digits, - _ .)")
    base = results_dir or os.environ.get("SCRFD_SEARCH_RESULTS") or DEFAULT_RESULTS_DIR
    return Path(base) / name


class ExperimentStore:
    """Reads and writes one experiment's folder: files atomically, trial rows one at a time in trials.db."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._db = TrialDatabase(self.path / DB_FILE)
        self._snapshot_due = 0.0  # monotonic time after which a changed row rewrites leaderboard.json
        self._dirty = False

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as its path alone."""
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild from the path."""
        self.__init__(state["path"])  # type: ignore[misc]

    @property
    def experiment_file(self) -> Path:
        """experiment.json: how the search was launched."""
        return self.path / EXPERIMENT_FILE

    @property
    def leaderboard_file(self) -> Path:
        """leaderboard.json: a snapshot of the rows (trials.db holds them)."""
        return self.path / LEADERBOARD_FILE

    @property
    def database_file(self) -> Path:
        """trials.db: one row per trial, SQLite in WAL mode."""
        return self._db.path

    @property
    def rows_file(self) -> Path:
        """The file the rows are read from, for messages: trials.db, or leaderboard.json in an old store."""
        return self.leaderboard_file if self.needs_migration() else self.database_file

    def exists(self) -> bool:
        """Whether the experiment was created."""
        return self.experiment_file.is_file()

    def require(self) -> ExperimentStore:
        """Fail with a clear message when the experiment does not exist."""
        if not self.exists():
            raise UserError(f"{self.path}: no experiment here (no {EXPERIMENT_FILE}); launch one first")
        return self

    def read_experiment(self) -> ExperimentRecord:
        """The launch settings, typed (see scrfd_search.search.experiment)."""
        return read_experiment_file(self.require().experiment_file)

    def write_experiment(self, record: ExperimentRecord) -> None:
        """Record the launch settings."""
        atomic_write_json(self.experiment_file, record.to_json())

    def needs_migration(self) -> bool:
        """Whether this is a store from before trials.db (its rows only in leaderboard.json)."""
        return not self._db.exists() and self.leaderboard_file.is_file()

    def migrate(self) -> int:
        """Move an old store's leaderboard.json rows into trials.db (once); the number of rows moved."""
        if not self.needs_migration():
            return 0
        rows = self._legacy_trials()
        self._db.replace_all(_db_row(r) for r in rows)
        return len(rows)

    def read_trials(self) -> list[TrialRecord]:
        """All rows, in the order they were first recorded (one consistent read of trials.db)."""
        if not self._db.exists():
            return self._legacy_trials()
        source = str(self.database_file)
        return [TrialRecord.from_dict(_parsed_row(text, key, source), source) for key, text in self._db.rows()]

    def read_trial(self, trial_id: str) -> TrialRecord | None:
        """The row of one trial (None when it has none)."""
        if not self._db.exists():
            return next((t for t in self._legacy_trials() if t.trial_id == trial_id), None)
        text = self._db.get(trial_id)
        source = str(self.database_file)
        return None if text is None else TrialRecord.from_dict(_parsed_row(text, trial_id, source), source)

    def count_trials(self, states: tuple[str, ...]) -> int:
        """How many rows are in one of the states."""
        if not self._db.exists():
            return sum(t.state in states for t in self._legacy_trials())
        return self._db.count(states)

    def write_trials(self, trials: list[TrialRecord]) -> None:
        """Make trials the whole set of rows (one transaction), and rewrite the snapshot."""
        self._db.replace_all(_db_row(t) for t in trials)
        self.write_snapshot()

    def upsert(self, record: TrialRecord) -> None:
        """Insert or replace the row with record's trial id; the snapshot follows within a few seconds."""
        self.migrate()
        self._db.put(*_db_row(record))
        self._dirty = True
        self.flush(force=False)

    def flush(self, force: bool = True) -> None:
        """Rewrite leaderboard.json if rows changed since it was written (when it is due, unless force)."""
        if self._dirty and (force or time.monotonic() >= self._snapshot_due):
            self.write_snapshot()

    def write_snapshot(self) -> None:
        """Rewrite leaderboard.json from trials.db, atomically (one row a line)."""
        started = time.monotonic()
        texts = [text for _, text in self._db.rows()]
        body = ",\n".join(f"    {t}" for t in texts)
        extra = ""
        objectives = self.objectives()
        if is_multi(objectives):  # the non-dominated trials, as the leaderboard marks them
            names, ids = [o.name for o in objectives], pareto_ids(self.read_trials(), objectives)
            extra = f',\n  "objectives": {json.dumps(names)},\n  "pareto": {json.dumps(ids)}'
        text = '{\n  "trials": [\n' + body + ("\n" if texts else "") + "  ]" + extra + "\n}\n"
        atomic_write_text(self.leaderboard_file, text)
        now = time.monotonic()
        self._snapshot_due = now + max(SNAPSHOT_EVERY_S, (now - started) / SNAPSHOT_SHARE)
        self._dirty = False

    def close(self) -> None:
        """Close the database connection (reopened on the next use)."""
        self._db.close()

    def _legacy_trials(self) -> list[TrialRecord]:
        """The rows of a store from before trials.db, from its leaderboard.json."""
        if not self.leaderboard_file.is_file():
            return []
        data = read_json_file(self.leaderboard_file, "a JSON leaderboard")
        rows = data.get("trials") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise UserError(f"{self.leaderboard_file}: expected an object with a 'trials' list")
        return [TrialRecord.from_dict(r, str(self.leaderboard_file)) for r in rows]

    def objectives(self) -> tuple[Objective, ...]:
        """What the search optimises (hard AP alone for a store that does not say)."""
        if not self.exists():
            return (HARD,)
        settings = self.read_experiment().settings
        return settings.objective_list if settings is not None else (HARD,)

    def pareto_ids(self) -> list[str]:
        """The non-dominated trials by the search's objectives, as the leaderboard marks them ([] for hard AP alone)."""
        objectives = self.objectives()
        return pareto_ids(self.read_trials(), objectives) if is_multi(objectives) else []


def _db_row(record: TrialRecord) -> tuple[str, str, str]:
    """(trial id, state, JSON text) of a row as trials.db keeps it."""
    return record.trial_id, record.state, json.dumps(record.to_dict(), sort_keys=True)


def _parsed_row(text: str, trial_id: str, source: str) -> Any:
    """The JSON of one database row, naming the trial when it does not parse."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise UserError(f"{source}: trial {trial_id}: its row is not valid JSON") from None


def ranked(trials: list[TrialRecord]) -> list[TrialRecord]:
    """Trials with a hard AP, best first (ties broken by fewer GFLOPs, then trial id)."""
    scored = [t for t in trials if t.hard is not None]
    return sorted(scored, key=lambda t: (-t.hard, t.flops.total_gflops, t.trial_id))  # type: ignore[operator]


def arch_ref_stem(ref: str | os.PathLike) -> str:
    """A file stem naming what `load_arch_ref` reads: the JSON file's stem, or NAME_KEY for a trial."""
    path = Path(ref)
    return path.stem if path.suffix == ".json" or path.is_file() else str(ref).replace("/", "_")


def load_arch_ref(ref: str | os.PathLike, results_dir: str | os.PathLike | None = None) -> ArchSpec:
    """The ArchSpec of a JSON file (an ArchSpec or a run's candidate.json), or of trial KEY of search NAME/KEY."""
    path = Path(ref)
    if path.is_file() or path.suffix == ".json" or str(ref).count("/") != 1:
        return ArchSpec.load(path)
    name, key = str(ref).split("/")
    store = ExperimentStore(store_path(name, results_dir))
    if not store.exists():
        raise UserError(
            f"{ref}: no such file, and no search {name!r} in {store.path.parent} (expected ARCH.json or NAME/KEY)"
        )
    rows = {row.trial_id: row for row in store.read_trials()}
    if key not in rows:
        known = ", ".join(sorted(rows)[:5]) + (", ..." if len(rows) > 5 else "")
        raise UserError(f"{ref}: search {name} has no trial {key!r} (its trials: {known or 'none yet'})")
    return rows[key].arch
