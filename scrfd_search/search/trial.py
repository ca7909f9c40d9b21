"""What one Ray Tune trial does: train its candidate and report easy/medium/hard AP after each validation."""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scrfd_search.config_builder import DataSettings, Schedule
from scrfd_search.evaluation.ground_truth import SUBSETS
from scrfd_search.io_utils import atomic_write_json, atomic_write_text
from scrfd_search.recipe import Recipe
from scrfd_search.search.objectives import reported_costs
from scrfd_search.search.settings import SearchSettings
from scrfd_search.space.arch import ArchSpec
from scrfd_search.training.files import RESULT_FILE, has_checkpoint
from scrfd_search.training.settings import candidate_data, candidate_schedule

EVENTS_FILE = "trial_events.jsonl"
TRIAL_FILE = "trial.json"  # the trial's config (key, arch, FLOPs, candidate): what a leaderboard rebuild reads


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a search trains with: the data and schedule (translated once from the launch
    settings, by trial_settings) and where and how it runs. A trial's own recipe, when its config
    carries one, replaces the schedule's."""

    data: DataSettings
    schedule: Schedule
    seed: int
    trials_root: str
    device: str
    threads: int
    amp: bool = False


def trial_settings(search: SearchSettings) -> TrialSettings:
    """The trial settings of a search: WIDER FACE data at its root, the search schedule and resources."""
    threads = max(1, int(search.cpus_per_trial))
    data = candidate_data(
        search.data_root, img_size=search.img_size, batch_size=search.batch_size, num_workers=data_workers(threads)
    )
    schedule = candidate_schedule(data, search.epochs, search.recipe(), search.validation_every)
    return TrialSettings(
        data=data,
        schedule=schedule,
        seed=search.seed,
        trials_root=str(search.trials_root.resolve()),
        device=search.device,
        threads=threads,
        amp=search.amp,
    )


def data_workers(cpus_per_trial: float) -> int:
    """Data-loader worker processes of one trial: all its cores but the one that drives training."""
    return max(0, int(cpus_per_trial) - 1)


def ray_placement() -> dict[str, Any]:
    """Where Ray put the running trial: node id and IP, the GPU ids it assigned, CUDA_VISIBLE_DEVICES."""
    import ray

    context = ray.get_runtime_context()
    return {
        "node_id": context.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def choose_device(requested: str, gpu_ids: list[str], cuda_available: bool) -> tuple[str, str | None]:
    """The device a trial trains on, and a note when it cannot use the GPU Ray assigned it.

    Ray hands out GPUs as logical resources: a node started with more `--num-gpus` than it really
    has (or with a broken driver) gives trials GPU ids that torch cannot open. The trial then trains
    on the CPU rather than failing, and says so: the note goes to the trial's log, its event file,
    its reports and `status` (run `scrfd-search doctor` on that node to find out why).
    """
    if requested != "cuda" or cuda_available:
        return requested, None
    ids = ",".join(gpu_ids) if gpu_ids else "none"
    return "cpu", f"Ray assigned GPU {ids} but torch sees no CUDA device: training on the CPU"


def trial_work_dir(trials_root: str | os.PathLike, trial_id: str) -> Path:
    """Work folder of one trial, stable across resumes (keyed by the trial key: candidate or study number)."""
    return Path(trials_root) / trial_id


def append_event(work_dir: Path, event: str, **fields: Any) -> None:
    """Add one line to the trial's event log (start/end of every training run, with time and pid)."""
    path = work_dir / EVENTS_FILE
    old = path.read_text() if path.is_file() else ""
    line = json.dumps({"event": event, "time": time.time(), "pid": os.getpid(), "host": socket.gethostname(), **fields})
    atomic_write_text(path, old + line + "\n")


def read_events(work_dir: Path) -> list[dict[str, Any]]:
    """The trial's event log (empty when the trial never started; unreadable lines are skipped)."""
    path = work_dir / EVENTS_FILE
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def finished_result(work_dir: Path) -> dict[str, Any] | None:
    """result.json of a trial whose training ran to its end (its last event is 'end'), else None."""
    events = read_events(work_dir)
    if not events or events[-1].get("event") != "end":
        return None
    try:
        result = json.loads((work_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or any(not isinstance(result.get(k), int | float) for k in SUBSETS):
        return None
    return result


def ap_metrics(epoch: int, aps: dict[str, float]) -> dict[str, Any]:
    """The result dict a trial reports: easy/medium/hard AP (fractions) and the epoch."""
    out: dict[str, Any] = {"epoch": int(epoch)}
    for key in SUBSETS:
        value = float(aps[key])
        # Ray's schedulers compare numbers; a NaN AP would poison the ranking
        out[key] = 0.0 if math.isnan(value) else value
    return out


def run_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """Ray Tune function trainable: train config['arch'] and tune.report APs after every validation.

    The trial first records where it runs (node, GPU ids, device, loader workers) in its event file
    and then adds that placement to every report, so `status` can show it.
    """
    from ray import tune

    placement = ray_placement()
    import torch

    from scrfd_search.training.candidate import train_candidate  # torch/mmengine, in the worker only

    torch.set_num_threads(max(1, settings.threads))
    trial_id = config.get("trial_key") or tune.get_context().get_trial_id()
    costs = reported_costs(config)  # beside the APs, for a multi-objective searcher
    work_dir = trial_work_dir(settings.trials_root, trial_id)
    work_dir.mkdir(parents=True, exist_ok=True)
    done = finished_result(work_dir)
    if done is not None:
        # trained to its end by an earlier driver that died before recording it: report, never retrain
        tune.report({**ap_metrics(int(done.get("epochs_run", settings.schedule.epochs)), done), **costs})
        return
    if not (work_dir / TRIAL_FILE).is_file():
        atomic_write_json(work_dir / TRIAL_FILE, {"config": config})
    device, note = choose_device(settings.device, placement["gpu_ids"], torch.cuda.is_available())
    if note is not None:
        print(f"[scrfd-search] trial {trial_id}: {note}", file=sys.stderr, flush=True)
    placement.update(device=device, device_note=note, workers=data_workers(settings.threads))
    resume = has_checkpoint(work_dir)
    append_event(work_dir, "start", resume=resume, placement=placement)
    arch = ArchSpec.from_dict(config["arch"], "trial config")
    schedule = settings.schedule
    if config.get("recipe"):
        schedule = replace(schedule, recipe=Recipe.from_dict(config["recipe"], "trial config"))
    reported: list[int] = []

    def on_validation(epoch: int, aps: dict[str, float]) -> None:
        """Forward every validation to Ray Tune (ASHA decides on these; it may stop the trial here)."""
        metrics = ap_metrics(epoch, aps)
        append_event(work_dir, "validation", epoch=epoch, hard=metrics["hard"])
        tune.report({**metrics, **costs, "placement": placement})
        reported.append(epoch)

    result = train_candidate(
        arch,
        settings.data,
        schedule,
        work_dir,
        device=device,
        seed=settings.seed,
        on_validation=on_validation,
        resume=resume,
        amp=settings.amp and device == "cuda",
    )
    final = {"easy": result.easy, "medium": result.medium, "hard": result.hard}
    if not reported:
        tune.report({**ap_metrics(result.epochs_run, final), **costs, "placement": placement})
    append_event(
        work_dir,
        "end",
        epochs_run=result.epochs_run,
        images_per_s=result.images_per_s,
        peak_memory_mib=result.peak_memory_mib,
        **final,
    )


def trial_placement(work_dir: Path) -> dict[str, Any] | None:
    """The placement a trial recorded at its last start (None if it never started)."""
    starts = [e for e in read_events(work_dir) if e.get("event") == "start" and "placement" in e]
    return starts[-1]["placement"] if starts else None
