"""What to export: the best finished trials of a search, or one ArchSpec file (with its checkpoint)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.flops.analytic import count_flops
from scrfd_search.flops.report import FlopsReport
from scrfd_search.search.experiment import ExperimentRecord
from scrfd_search.search.fidelity_store import ties_with_best
from scrfd_search.search.objectives import is_multi
from scrfd_search.search.store import ExperimentStore, TrialRecord, arch_ref_stem, load_arch_ref, ranked, store_path
from scrfd_search.space.arch import ArchSpec


@dataclass(frozen=True)
class ExportItem:
    """One model to export: its sub-folder ('' for the export folder itself), file stem, arch, metrics."""

    folder: str
    stem: str
    arch: ArchSpec
    flops: FlopsReport
    flops_source: str
    metrics: dict[str, Any] | None = None
    checkpoint: Path | None = None
    recipe: dict[str, Any] | None = None  # what the trial trained with (None where nobody chose: defaults)


def safe_name(text: str) -> str:
    """A file-name-safe version of text (letters, digits, - _ . kept; the rest become _)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


def _resolve_checkpoint(trial: TrialRecord, store: ExperimentStore) -> Path | None:
    """The trial's checkpoint file (absolute, or relative to the experiment or the current folder)."""
    if not trial.checkpoint:
        return None
    path = Path(trial.checkpoint).expanduser()
    for candidate in (path,) if path.is_absolute() else (store.path / path, Path.cwd() / path):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(
        f"{store.rows_file}: trial {trial.trial_id}: checkpoint {trial.checkpoint} "
        "not found (it was moved or deleted; export without --onnx, or restore it)"
    )


def search_metrics(trial: TrialRecord, rank: int, name: str, settings: ExperimentRecord) -> dict[str, Any]:
    """The numbers a trial was chosen on, and the search that measured them."""
    return {
        "experiment": name,
        "step": settings.step,
        "budget_gflops": settings.budget_gflops,
        "search_epochs": settings.epochs,
        "trial_id": trial.trial_id,
        "rank": rank,
        "state": trial.state,
        "easy": trial.easy,
        "medium": trial.medium,
        "hard": trial.hard,
        "epochs": trial.epochs_run,
        "search_recipe": trial.recipe or settings.recipe,
        "ranked_by": "hard AP on the WIDER FACE validation set",
        "predicted_latency_ms": trial.latency_ms,
    }


def trial_recipe(trial: TrialRecord, settings: ExperimentRecord) -> dict[str, Any] | None:
    """What a trial chose of its recipe: all of it when the search sampled one, else the launch's choices.

    A launch's --lr is left out: it sets short search runs (often compensating a small batch), not the
    full schedule, which takes the optimizer's default for the model's size instead.
    """
    if trial.recipe is not None:
        return dict(trial.recipe)
    launch = settings.settings
    chosen = {k: getattr(launch, k, None) for k in ("optimizer", "weight_decay", "momentum")}
    return {k: v for k, v in chosen.items() if v is not None} or None


def pareto_trials(store: ExperimentStore) -> list[TrialRecord]:
    """The non-dominated trials of a multi-objective search, best hard AP first."""
    objectives = store.objectives()
    if not is_multi(objectives):
        raise UserError(
            f"--pareto: {store.path.name} was searched for hard AP alone (its front is its best trial; use --top, "
            "or launch with --objectives hard,latency or hard,gflops)"
        )
    front = set(store.pareto_ids())
    chosen = [t for t in ranked(store.read_trials()) if t.trial_id in front]
    if not chosen:
        raise UserError(f"{store.rows_file}: no finished trial yet (the Pareto front is empty)")
    return chosen


def items_from_experiment(
    name: str,
    top: int,
    results_dir: str | os.PathLike | None = None,
    need_checkpoints: bool = False,
    pareto: bool = False,
) -> list[ExportItem]:
    """The top `top` finished trials of an experiment by hard AP (failed trials are never exported),
    or with pareto its non-dominated trials (by hard AP and the search's cost), best hard AP first."""
    if top < 1:
        raise UserError(f"--top: {top} must be at least 1")
    store = ExperimentStore(store_path(name, results_dir))
    settings = store.read_experiment()
    best = pareto_trials(store) if pareto else [t for t in ranked(store.read_trials()) if t.state != "ERROR"][:top]
    if not best:
        raise UserError(f"{store.rows_file}: no trial with a hard AP yet (nothing to export)")
    items = []
    for rank, trial in enumerate(best, 1):
        folder = f"{rank:02d}_{safe_name(trial.trial_id)}"
        items.append(
            ExportItem(
                folder=folder,
                stem=f"{safe_name(name)}_{folder}",
                arch=trial.arch,
                flops=trial.flops,
                flops_source=f"recorded by the search ({store.rows_file})",
                metrics=search_metrics(trial, rank, name, settings) | ({"pareto": True} if pareto else {}),
                checkpoint=_resolve_checkpoint(trial, store) if need_checkpoints else None,
                recipe=trial_recipe(trial, settings),
            )
        )
    return items


def experiment_ties(name: str, results_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The trials within the seed noise `fidelity` measured of the best one (None without its report)."""
    store = ExperimentStore(store_path(name, results_dir))
    return ties_with_best(store.path, store.read_trials())


def item_from_arch(
    ref: str | os.PathLike, checkpoint: str | os.PathLike | None = None, results_dir: str | os.PathLike | None = None
) -> ExportItem:
    """One ArchSpec (a JSON file or a trial NAME/KEY; optionally its trained or imported checkpoint) as an item."""
    arch = load_arch_ref(ref, results_dir)
    stem = safe_name(arch_ref_stem(ref))
    ckpt = None
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise UserError(f"--checkpoint {ckpt}: no such file")
        ckpt = ckpt.resolve()
    flops = count_flops(arch)
    return ExportItem("", stem, arch, flops, "closed-form count (scrfd_search.flops.analytic)", checkpoint=ckpt)
