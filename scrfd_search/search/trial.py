"""What one Ray Tune trial does: train its candidate and report easy/medium/hard AP after each validation."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrfd_search.io_utils import atomic_write_text
from scrfd_search.recipe import Recipe

EVENTS_FILE = "trial_events.jsonl"
GT_DIR = "wider_face_split"  # where the four evaluation .mat files lie, beside the text annotations
METRICS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class TrialSettings:
    """The launch options every trial needs (the same for all trials of a search)."""

    data_root: str
    img_size: int
    batch_size: int
    epochs: int
    recipe: dict[str, Any]  # the search's recipe (Recipe.to_dict), for trials whose config carries none
    val_interval: int
    seed: int
    trials_root: str
    device: str
    threads: int


def trial_work_dir(trials_root: str | os.PathLike, trial_id: str) -> Path:
    """Work folder of one trial, stable across resumes (keyed by Ray's trial id)."""
    return Path(trials_root) / trial_id


def append_event(work_dir: Path, event: str, **fields: Any) -> None:
    """Add one line to the trial's event log (start/end of every training run, with time and pid)."""
    path = work_dir / EVENTS_FILE
    old = path.read_text() if path.is_file() else ""
    line = json.dumps({"event": event, "time": time.time(), "pid": os.getpid(), "host": socket.gethostname(), **fields})
    atomic_write_text(path, old + line + "\n")


def read_events(work_dir: Path) -> list[dict[str, Any]]:
    """The trial's event log (empty when the trial never started)."""
    path = work_dir / EVENTS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ap_metrics(epoch: int, aps: dict[str, float]) -> dict[str, Any]:
    """The result dict a trial reports: easy/medium/hard AP (fractions) and the epoch."""
    out: dict[str, Any] = {"epoch": int(epoch)}
    for key in METRICS:
        value = float(aps[key])
        # Ray's schedulers compare numbers; a NaN AP would poison the ranking
        out[key] = 0.0 if math.isnan(value) else value
    return out


def _has_checkpoint(work_dir: Path) -> bool:
    """Whether an earlier run of this trial left an mmengine checkpoint to resume from."""
    return (work_dir / "last_checkpoint").is_file()


def run_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """Ray Tune function trainable: train config['arch'] and tune.report APs after every validation."""
    import torch
    from ray import tune

    from scrfd_search.detector import DataSettings, Schedule
    from scrfd_search.space.arch import ArchSpec
    from scrfd_search.training import train_candidate, warmup_iters_for

    torch.set_num_threads(max(1, settings.threads))
    work_dir = trial_work_dir(settings.trials_root, tune.get_context().get_trial_id())
    work_dir.mkdir(parents=True, exist_ok=True)
    resume = _has_checkpoint(work_dir)
    append_event(work_dir, "start", resume=resume)
    arch = ArchSpec.from_dict(config["arch"], "trial config")
    recipe = Recipe.from_dict(config.get("recipe") or settings.recipe, "trial config")
    reported: list[int] = []

    def on_validation(epoch: int, aps: dict[str, float]) -> None:
        """Forward every validation to Ray Tune (ASHA decides on these; it may stop the trial here)."""
        metrics = ap_metrics(epoch, aps)
        append_event(work_dir, "validation", epoch=epoch, hard=metrics["hard"])
        tune.report(metrics)
        reported.append(epoch)

    data = DataSettings(
        data_root=settings.data_root,
        gt_dir=str(Path(settings.data_root) / GT_DIR),
        img_size=settings.img_size,
        batch_size=settings.batch_size,
        # the trial's cores: one runs training, the others load data
        num_workers=settings.threads - 1,
    )
    result = train_candidate(
        arch,
        data,
        Schedule(
            epochs=settings.epochs,
            recipe=recipe,
            warmup_iters=warmup_iters_for(data, settings.epochs),
            val_interval=settings.val_interval,
        ),
        work_dir,
        device=settings.device,
        seed=settings.seed,
        on_validation=on_validation,
        resume=resume,
    )
    final = {"easy": result.easy, "medium": result.medium, "hard": result.hard}
    if not reported:
        tune.report(ap_metrics(result.epochs_run, final))
    append_event(work_dir, "end", epochs_run=result.epochs_run, **final)
