"""A search's progress and leaderboard, as `scrfd-search status` prints it (text or JSON)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrfd_search.flops.report import COMPONENTS
from scrfd_search.recipe import Recipe
from scrfd_search.search.constraint import ShareConstraint
from scrfd_search.search.experiment import ExperimentRecord
from scrfd_search.search.fidelity_store import verdict_line
from scrfd_search.search.objectives import HARD, Objective, is_multi, objective_value, pareto_ids
from scrfd_search.search.store import TrialRecord, ranked
from scrfd_search.search.trial import data_workers, trial_placement

STATE_ORDER = {"TERMINATED": 0, "RUNNING": 1, "PENDING": 2, "ERROR": 3}


@dataclass(frozen=True)
class Progress:
    """Counts of trials by state (pending includes trials not created yet) and the best so far."""

    total: int
    done: int
    running: int
    failed: int
    pending: int
    best: TrialRecord | None

    def describe(self) -> str:
        """One line: counts and the best hard AP."""
        best = (
            f"best hard AP {100 * self.best.hard:.2f}% (trial {self.best.trial_id}, "
            f"{self.best.flops.total_gflops:.3f} GFLOPs)"
            if self.best is not None and self.best.hard is not None
            else "no result yet"
        )
        return (
            f"trials: {self.done} of {self.total} done, {self.running} running, {self.failed} failed, "
            f"{self.pending} pending; {best}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "total": self.total,
            "done": self.done,
            "running": self.running,
            "failed": self.failed,
            "pending": self.pending,
            "best_trial": self.best.trial_id if self.best else None,
            "best_hard": self.best.hard if self.best else None,
        }


def progress_of(trials: list[TrialRecord], total: int) -> Progress:
    """Count states; trials the searcher has not handed out yet count as pending."""
    count = {s: sum(t.state == s for t in trials) for s in STATE_ORDER}
    best = ranked(trials)
    return Progress(
        total=total,
        done=count["TERMINATED"],
        running=count["RUNNING"],
        failed=count["ERROR"],
        pending=max(0, total - len(trials)) + count["PENDING"],
        best=best[0] if best else None,
    )


def leaderboard_order(trials: list[TrialRecord]) -> list[tuple[int | None, TrialRecord]]:
    """(rank, row) pairs: trials with a hard AP by rank, then the others by state."""
    scored = ranked(trials)
    ids = {t.trial_id for t in scored}
    rest = sorted((t for t in trials if t.trial_id not in ids), key=lambda t: (STATE_ORDER[t.state], t.trial_id))
    return [(i + 1, t) for i, t in enumerate(scored)] + [(None, t) for t in rest]


def recipe_text(experiment: ExperimentRecord) -> str:
    """How an experiment's trials pick their optimiser: the fixed recipe, or the searched section."""
    section = experiment.recipe_space
    base = Recipe.from_dict(experiment.recipe) if experiment.recipe else Recipe()
    inherited = f" (from {experiment.recipe_from})" if experiment.recipe_from else ""
    if not section:
        return base.describe() + inherited
    parts = [f"optimizer {'/'.join(section['optimizer'])}"]
    for key in ("lr", "weight_decay"):
        if key in section:
            parts.append(f"{key.replace('_', ' ')} {_range_text(section[key])}")
    return "searched: " + ", ".join(parts) + inherited


def _range_text(value: Any) -> str:
    """A section range as text: '0.005-0.02 (log)', a number, or per optimizer."""
    if isinstance(value, dict):
        return "; ".join(f"{k} {_range_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return f"{value[0]:g}-{value[1]:g} (log)"
    return f"{value:g}"


def _pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals, '-' when missing."""
    return "-" if value is None else f"{100 * value:.2f}"


def _recipe_cells(t: TrialRecord) -> str:
    """optimizer, lr and weight decay of a trial whose recipe was searched."""
    r = t.recipe or {}
    if not r:
        return f"{'-':<9} {'-':>9} {'-':>9}"
    return f"{r['optimizer']:<9} {r['lr']:>9.3g} {r['weight_decay']:>9.3g}"


def hard_spread(t: TrialRecord) -> float | None:
    """The sd of a repeated trial's hard APs (None for a trial trained once)."""
    runs = t.extra.get("hard_runs")
    return statistics.stdev(runs) if isinstance(runs, list) and len(runs) >= 2 else None


def leaderboard_table(trials: list[TrialRecord], pareto: list[str] | None = None) -> str:
    """The text table: rank, trial, GFLOPs, params, share of GFLOPs per component, APs, epochs, state.

    When trials carry their own recipe (a search with a `recipe:` section), its optimizer, lr and
    weight decay follow the trial id. When trials carry a predicted latency, its milliseconds follow
    the GFLOPs; with `pareto` (a multi-objective search's non-dominated trial ids) a `*` marks them.
    """
    with_recipe = any(t.recipe for t in trials)
    with_latency = any(t.latency_ms is not None for t in trials)
    front = set(pareto or [])
    repeated = any(hard_spread(t) is not None for t in trials)
    spread_header = f" {'sd%':>5}" if repeated else ""
    recipe_header = f" {'optimizer':<9} {'lr':>9} {'wd':>9}" if with_recipe else ""
    latency_header = f" {'ms':>8}" if with_latency else ""
    front_header = " P" if pareto is not None else ""
    header = (
        f"{'rank':>4}{front_header}  {'trial':<12}{recipe_header} {'GFLOPs':>7}{latency_header} {'params(M)':>9}  "
        + " ".join(f"{c:>5}" for c in COMPONENTS)
        + f"  {'easy%':>6} {'medium%':>7} {'hard%':>6}{spread_header} {'epochs':>6}  state"
    )
    lines = [header, "-" * len(header)]
    for rank, t in leaderboard_order(trials):
        total = t.flops.total_gflops
        shares = " ".join(f"{100 * t.flops.gflops[c] / total:>5.1f}" for c in COMPONENTS)
        recipe = f" {_recipe_cells(t)}" if with_recipe else ""
        latency = f" {'-' if t.latency_ms is None else format(t.latency_ms, '.2f'):>8}" if with_latency else ""
        mark = f" {'*' if t.trial_id in front else ' '}" if pareto is not None else ""
        spread = f" {_pct(hard_spread(t)):>5}" if repeated else ""
        lines.append(
            f"{rank if rank is not None else '-':>4}{mark}  {t.trial_id:<12}{recipe} {total:>7.3f}{latency} "
            f"{t.flops.params_m:>9.3f}  "
            f"{shares}  {_pct(t.easy):>6} {_pct(t.medium):>7} {_pct(t.hard):>6}{spread} {t.epochs_run:>6}  {t.state}"
        )
    return "\n".join(lines)


def objectives_of(experiment: ExperimentRecord) -> tuple[Objective, ...]:
    """What a search optimised (hard AP alone for a store that does not say)."""
    return experiment.settings.objective_list if experiment.settings is not None else (HARD,)


def pareto_line(experiment: ExperimentRecord, trials: list[TrialRecord]) -> str | None:
    """'objectives: ...; Pareto front (*): ...' for a multi-objective search, else None."""
    objectives = objectives_of(experiment)
    if not is_multi(objectives):
        return None
    ids = pareto_ids(trials, objectives)
    by_id = {t.trial_id: t for t in trials}
    cost = objectives[1]
    points = ", ".join(
        f"{i} ({_pct(by_id[i].hard)}%, {objective_value(by_id[i], cost):.3g} {cost.unit})"
        for i in sorted(ids, key=lambda i: objective_value(by_id[i], cost) or 0.0)
    )
    wanted = " and ".join(f"{o.label} ({o.mode})" for o in objectives)
    return f"objectives: {wanted}; Pareto front (*, finished trials): {len(ids)} trials" + (
        f": {points}" if points else ""
    )


def placement_of(trial: TrialRecord, store_dir: Path | None) -> dict[str, Any] | None:
    """Where a trial ran: from its last report, else from the start event in its work folder."""
    if isinstance(trial.extra.get("placement"), dict):
        return trial.extra["placement"]
    if store_dir is None:
        return None
    return trial_placement(store_dir / trial.work_dir)


def placement_lines(trials: list[TrialRecord], store_dir: Path | None) -> list[str]:
    """One line per started trial: node, GPU ids Ray assigned, training device, data-loader workers."""
    lines = []
    for trial in sorted(trials, key=lambda t: t.trial_id):
        where = placement_of(trial, store_dir)
        if where is None:
            continue
        node = f"{where.get('node_ip', '?')} ({str(where.get('node_id', '?'))[:8]})"
        gpus = ",".join(where.get("gpu_ids") or []) or "-"
        device = where.get("device", "?")
        line = f"  {trial.trial_id:<12} node {node:<26} GPU {gpus:<5} {device:<5} {where.get('workers', '?')} workers"
        if where.get("device_note"):
            line += f"  ! {where['device_note']}"
        lines.append(line)
    return lines


def _total(experiment: ExperimentRecord, trials: list[TrialRecord]) -> int:
    """Trials the search was launched with (the rows there are, for an older store that does not say)."""
    return experiment.trials if experiment.trials is not None else len(trials)


def status_text(
    experiment: ExperimentRecord, trials: list[TrialRecord], driver: str | None = None, store_dir: Path | None = None
) -> str:
    """What `status` prints: a header, the progress, the driver line, the constraint (step 2), the table, errors."""
    low_high = ""
    if experiment.budget_gflops is not None:
        tol = experiment.tolerance or 0.0
        low_high = f", budget {experiment.budget_gflops:g} GFLOPs +-{100 * tol:g}%"
    ceiling = (experiment.space or {}).get("max_latency_ms")
    if ceiling is not None:
        low_high += f", latency ceiling {ceiling:g} ms (predicted)"
    settings = experiment.settings
    what = f"step {experiment.step or 1}"
    if settings is not None and settings.recipe_only:
        what = f"recipe only, architecture of {settings.arch_file}"
    lines = [
        f"search {experiment.name}: {what}, {experiment.searcher} searcher, "
        f"{experiment.scheduler} scheduler, {experiment.epochs} epochs per trial{low_high}",
        progress_of(trials, _total(experiment, trials)).describe(),
    ]
    if driver:
        lines.append(driver)
    if experiment.recipe or experiment.recipe_space:
        lines.append("recipe: " + recipe_text(experiment))
    if experiment.constraint:
        lines.append("constraint: " + ShareConstraint.from_dict(experiment.constraint).describe())
    front_line = pareto_line(experiment, trials)
    if front_line:
        lines.append(front_line)
    if settings is not None:
        cpus, gpus = settings.cpus_per_trial, settings.gpus_per_trial
        lines.append(
            f"each trial: {cpus:g} CPUs ({data_workers(cpus)} data-loader workers), "
            f"{0 if gpus is None else gpus:g} GPUs{', mixed precision' if settings.amp else ''}"
        )
        if settings.repeats > 1:
            lines.append(
                f"repeats: every candidate trains {settings.repeats} times (seeds {settings.seed} to "
                f"{settings.seed + settings.repeats - 1}); APs are the means, sd% the spread of hard AP"
            )
    verdict = verdict_line(store_dir) if store_dir is not None else None
    if verdict:
        lines.append(verdict)
    objectives = objectives_of(experiment)
    pareto = pareto_ids(trials, objectives) if is_multi(objectives) else None
    legend = "GFLOPs shares per component in %, APs in %"
    if any(t.latency_ms is not None for t in trials):
        legend += ", ms: latency predicted by the space's latency table"
    lines += ["", legend, leaderboard_table(trials, pareto)]
    placed = placement_lines(trials, store_dir)
    if placed:
        lines += ["", "where the trials ran (node IP and id, GPU ids Ray assigned, device, data-loader workers):"]
        lines += placed
    errors = [t for t in trials if t.state == "ERROR"]
    if errors:
        lines += ["", "errors:"] + [f"  {t.trial_id}: {t.error}" for t in errors]
    return "\n".join(lines)


def status_json(
    experiment: ExperimentRecord,
    trials: list[TrialRecord],
    driver: dict[str, Any] | None = None,
    store_dir: Path | None = None,
) -> dict[str, Any]:
    """The same information as JSON: settings, progress, constraint, and rows in leaderboard order."""
    objectives = objectives_of(experiment)
    front = set(pareto_ids(trials, objectives)) if is_multi(objectives) else set()
    rows = []
    for rank, t in leaderboard_order(trials):
        row = t.to_dict()
        row["rank"] = rank
        row["pareto"] = t.trial_id in front
        row["shares"] = {c: t.flops.gflops[c] / t.flops.total_gflops for c in COMPONENTS}
        row["placement"] = placement_of(t, store_dir)
        row["hard_sd"] = hard_spread(t)
        rows.append(row)
    return {
        "name": experiment.name,
        "experiment": experiment.to_json(),
        "progress": progress_of(trials, _total(experiment, trials)).to_dict(),
        "constraint": experiment.constraint,
        "objectives": [o.name for o in objectives],
        "pareto": [t.trial_id for _, t in leaderboard_order(trials) if t.trial_id in front],
        "driver": driver,
        "fidelity": verdict_line(store_dir) if store_dir is not None else None,
        "trials": rows,
    }
