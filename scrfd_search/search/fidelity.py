"""`fidelity`: retrain a spread of finished trials under new seeds, at the trial's length and longer, and
measure how far the leaderboard's order holds (see fidelity_stats for the statistics, docs/fidelity.md).

Every retrain is a Ray Tune trial of the search's own trainable (search.trial.run_trial) with settings
built by the search's own constructor (trial_settings) from the launch settings: only the seed, and for
the long runs the epochs, differ; each run carries its trial's config (architecture, FLOPs, recipe). A run
lives in results/NAME/fidelity/runs/KEY/ like a trial in trials/KEY/, so a killed `fidelity` continues
where it stopped: runs trained to their end are kept, cut-off runs continue from their last checkpoint.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.io_utils import atomic_write_json, check_writable
from scrfd_search.search.checks import check_data_contents, check_data_root
from scrfd_search.search.driver import DriverLease
from scrfd_search.search.experiment import ExperimentRecord
from scrfd_search.search.fidelity_stats import CandidateRuns, fidelity_report, pick_trials
from scrfd_search.search.fidelity_store import (
    LONGER,
    PLAN_FILE,
    REPORT_FILE,
    RUNS_DIR,
    FidelityRequest,
    fidelity_dir,
)
from scrfd_search.search.resume import wait_for_stale_workers
from scrfd_search.search.settings import SearchSettings
from scrfd_search.search.store import ExperimentStore, TrialRecord, ranked, store_path
from scrfd_search.search.trial import TrialSettings, finished_result, trial_settings

LENGTHS = ("short", "long")
FAILED_EXIT = 1


@dataclass(frozen=True)
class FidelityPlan:
    """The picked trials (best first) and every run: the plan.json a resumed `fidelity` continues."""

    request: FidelityRequest
    trial_epochs: int
    long_epochs: int
    repeats: int
    seeds: tuple[int, ...]
    picked: tuple[str, ...]
    runs: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for plan.json."""
        return {
            "request": vars(self.request),
            "trial_epochs": self.trial_epochs,
            "long_epochs": self.long_epochs,
            "repeats": self.repeats,
            "seeds": list(self.seeds),
            "picked": list(self.picked),
            "runs": list(self.runs),
        }


def finished_trials(rows: list[TrialRecord], epochs: int) -> list[TrialRecord]:
    """Trials trained to the end of the search's schedule (ASHA-stopped ones are left out), best first."""
    return [r for r in ranked(rows) if r.state == "TERMINATED" and r.epochs_run >= epochs]


def retrain_seeds(settings: SearchSettings, count: int) -> tuple[int, ...]:
    """Seeds of the retrains: the ones after those the search's trials (and their repeats) trained with."""
    return tuple((settings.seed + settings.repeats + i) % 2**32 for i in range(count))


def run_key(trial_id: str, length: str, seed: int) -> str:
    """Work folder and Ray trial key of one retrain."""
    return f"{trial_id}-{length}-s{seed}"


def run_config(row: TrialRecord, length: str, seed: int) -> dict[str, Any]:
    """The trial's own config (architecture, FLOPs, recipe) under the retrain's key, seed and length."""
    config: dict[str, Any] = {
        "trial_key": run_key(row.trial_id, length, seed),
        "arch": row.arch.to_dict(),
        "flops": row.flops.to_dict(),
        "source_trial": row.trial_id,
        "length": length,
        "seed": seed,
    }
    if row.recipe is not None:
        config["recipe"] = dict(row.recipe)
    return config


def make_plan(settings: SearchSettings, rows: list[TrialRecord], request: FidelityRequest) -> FidelityPlan:
    """Pick the trials and list the runs; a UserError when the search cannot support the request."""
    done = finished_trials(rows, settings.epochs)
    where = str(ExperimentStore(settings.path).rows_file)
    if len(done) < 3:
        raise UserError(f"{where}: {len(done)} trials trained to the end; fidelity needs at least 3")
    if request.sample > len(done):
        raise UserError(f"--sample: {request.sample} is more than the {len(done)} trials trained to the end in {where}")
    picked = pick_trials([r.trial_id for r in done], request.sample, request.seed)
    by_id = {r.trial_id: r for r in done}
    seeds = retrain_seeds(settings, request.seeds)
    runs = tuple(run_config(by_id[t], length, s) for length in LENGTHS for t in picked for s in seeds)
    long_epochs = request.epochs if request.epochs is not None else LONGER * settings.epochs
    return FidelityPlan(request, settings.epochs, long_epochs, settings.repeats, seeds, tuple(picked), runs)


def long_settings(settings: SearchSettings, epochs: int) -> SearchSettings:
    """The launch settings with the long runs' epochs (a --val-interval longer than them shortened)."""
    interval = settings.val_interval
    return replace(settings, epochs=epochs, val_interval=min(interval, epochs) if interval else None)


def settings_by_length(settings: SearchSettings, plan: FidelityPlan, runs_root: Path) -> dict[str, TrialSettings]:
    """What each run length trains with: the search's trial settings (its constructor), placed in runs/."""
    root = str(runs_root.resolve())
    return {
        "short": replace(trial_settings(settings), trials_root=root),
        "long": replace(trial_settings(long_settings(settings, plan.long_epochs)), trials_root=root),
    }


def read_plan(path: Path) -> dict[str, Any] | None:
    """An earlier fidelity run's plan.json (None when there is none)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            raise ValueError
    except (OSError, ValueError, RecursionError):
        raise UserError(
            f"{path}: not the plan `scrfd-search fidelity` writes; remove {path.parent} to start over"
        ) from None
    return data


def settled_plan(folder: Path, plan: FidelityPlan) -> FidelityPlan:
    """The plan to run: a new one, or the stored one when it answers the same request (a resume)."""
    stored = read_plan(folder / PLAN_FILE)
    if stored is None:
        return plan
    if stored.get("request") != vars(plan.request):
        asked = stored.get("request") or {}
        flags = " ".join(f"--{k} {asked[k]}" for k in ("sample", "epochs", "seeds", "seed") if asked.get(k) is not None)
        raise UserError(
            f"{folder}: holds a fidelity run of {flags}; run it again with those flags to continue it, "
            f"or remove {folder} to start another"
        )
    return replace(plan, picked=tuple(stored["picked"]), runs=tuple(stored["runs"]), seeds=tuple(stored["seeds"]))


def candidate_runs(plan: FidelityPlan, rows: list[TrialRecord], runs_root: Path) -> list[CandidateRuns] | None:
    """Per picked trial (best first): its APs and its retrains' hard AP; None while a run is unfinished."""
    by_id = {r.trial_id: r for r in rows}
    out = []
    for trial_id in plan.picked:
        row = by_id[trial_id]
        aps = {}
        for length in LENGTHS:
            values = []
            for seed in plan.seeds:
                result = finished_result(runs_root / run_key(trial_id, length, seed))
                if result is None:
                    return None
                values.append(float(result["hard"]))
            aps[length] = tuple(values)
        trial_runs = tuple(float(h) for h in row.extra.get("hard_runs") or [row.hard])
        out.append(CandidateRuns(trial_id, float(row.hard), trial_runs, aps["short"], aps["long"]))  # type: ignore[arg-type]
    return out


def unfinished_runs(plan: FidelityPlan, runs_root: Path) -> list[dict[str, Any]]:
    """The runs without a result of a training to its end."""
    return [c for c in plan.runs if finished_result(runs_root / c["trial_key"]) is None]


def report_json(plan: FidelityPlan, record: ExperimentRecord, candidates: list[CandidateRuns]) -> dict[str, Any]:
    """fidelity.json: the request, every candidate's APs (the stored pairs) and the report."""
    report = fidelity_report(candidates, plan.repeats, plan.trial_epochs, plan.long_epochs, plan.request.seed)
    return {
        "experiment": record.name,
        "request": vars(plan.request),
        "trial_epochs": plan.trial_epochs,
        "long_epochs": plan.long_epochs,
        "repeats": plan.repeats,
        "seeds": list(plan.seeds),
        "candidates": [
            {
                "trial_id": c.trial_id,
                "trial_hard": c.trial_hard,
                "trial_runs": list(c.trial_runs),
                "short_hard": list(c.short),
                "long_hard": list(c.long),
                "long_mean": c.long_mean,
            }
            for c in candidates
        ],
        "report": report.to_dict(),
    }


def report_text(data: dict[str, Any]) -> str:
    """The printed report: agreement, noise, regret, verdict."""
    r = data["report"]
    sd_long = "n/a (one seed)" if r["sd_long"] is None else f"{100 * r['sd_long']:.2f} points"
    lines = [
        f"trial hard AP vs {data['long_epochs']}-epoch hard AP (mean of {len(data['seeds'])} seeds), "
        f"{len(data['candidates'])} trials: {_agreement_text(r['ranking'])}",
        f"two seeds at the trial's {data['trial_epochs']} epochs: {_agreement_text(r['repeat'])}",
        f"seed sd of hard AP: {100 * r['sd_short']:.2f} points at {data['trial_epochs']} epochs, "
        f"{sd_long} at {data['long_epochs']}",
        f"smallest hard AP difference the leaderboard resolves: {100 * r['resolvable']:.2f} points",
        f"top-1 regret: {100 * r['regret']:.2f} points of {data['long_epochs']}-epoch hard AP",
        f"verdict: {r['verdict']}",
    ]
    return "\n".join(lines)


def _agreement_text(a: dict[str, float]) -> str:
    """tau and rho with their intervals."""
    return (
        f"tau {a['tau']:.2f} [{a['tau_low']:.2f}, {a['tau_high']:.2f}], "
        f"rho {a['rho']:.2f} [{a['rho_low']:.2f}, {a['rho_high']:.2f}] (95 % bootstrap)"
    )


def fidelity(
    name: str,
    request: FidelityRequest,
    results_dir: str | None = None,
    *,
    data_root: str | None = None,
    quiet: bool = False,
) -> int:
    """Plan (or continue) the retrains, run the unfinished ones through Ray Tune, write fidelity.json."""
    store = ExperimentStore(store_path(name, results_dir)).require()
    record = store.read_experiment()
    settings = record.require_settings(str(store.experiment_file))
    if data_root is not None:
        settings = replace(settings, data_root=str(Path(data_root).expanduser().resolve()))
    rows = store.read_trials()
    folder = fidelity_dir(store.path)
    check_writable(folder, "fidelity folder")
    plan = settled_plan(folder, make_plan(settings, rows, request))
    runs_root = folder / RUNS_DIR
    try:
        check_data_root(settings.data_root)
    except UserError as exc:
        raise UserError(f"{exc}; a moved store points at its data with `fidelity {name} --data PATH`") from None
    check_data_contents(settings.data_root)
    with DriverLease(folder, "fidelity"):
        atomic_write_json(folder / PLAN_FILE, plan.to_dict())
        todo = unfinished_runs(plan, runs_root)
        wait_for_stale_workers([(c["trial_key"], runs_root / c["trial_key"]) for c in todo])
        _say(
            quiet,
            f"fidelity {name}: {len(plan.picked)} trials x {len(plan.seeds)} seeds at {plan.trial_epochs} and "
            f"{plan.long_epochs} epochs; {len(plan.runs) - len(todo)} of {len(plan.runs)} runs already trained",
        )
        if todo:
            from scrfd_search.search.fidelity_tuner import run_fidelity_tuner  # ray

            run_fidelity_tuner(settings, settings_by_length(settings, plan, runs_root), todo, folder, quiet)
        candidates = candidate_runs(plan, rows, runs_root)
        if candidates is None:
            left = [c["trial_key"] for c in unfinished_runs(plan, runs_root)]
            _say(
                False,
                f"fidelity {name}: {len(left)} runs did not train to their end ({', '.join(left[:4])}"
                f"{', ...' if len(left) > 4 else ''}; their logs are in {runs_root}); "
                "run the same command again to train them",
            )
            return FAILED_EXIT
        data = report_json(plan, record, candidates)
        atomic_write_json(folder / REPORT_FILE, data)
    print(report_text(data))
    return 0


def _say(quiet: bool, message: str) -> None:
    """A line on stderr unless quiet."""
    if not quiet:
        print(f"[scrfd-search] {message}", file=sys.stderr, flush=True)
