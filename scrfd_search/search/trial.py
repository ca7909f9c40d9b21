"""What one Ray Tune trial does: train its candidate and report easy/medium/hard AP after each validation."""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scrfd_search.builders import build_model
from scrfd_search.config_builder import DataSettings, Schedule
from scrfd_search.evaluation.ground_truth import SUBSETS
from scrfd_search.flops.measure import measure_flops
from scrfd_search.flops.report import FlopsReport
from scrfd_search.io_utils import atomic_write_json, atomic_write_text
from scrfd_search.recipe import Recipe
from scrfd_search.search.flops_check import compare_flops
from scrfd_search.search.objectives import reported_costs
from scrfd_search.search.settings import SearchSettings
from scrfd_search.space.arch import ArchSpec
from scrfd_search.training.files import RESULT_FILE, has_checkpoint
from scrfd_search.training.settings import candidate_data, candidate_schedule

EVENTS_FILE = "trial_events.jsonl"
TRIAL_FILE = "trial.json"  # the trial's config (key, arch, FLOPs, candidate): what a leaderboard rebuild reads
REPEAT_PREFIX = "repeat"  # --repeats R > 1: run i of a trial trains in trials/KEY/repeat<i>/


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
    input_shape: tuple[int, int] | None = None  # where FLOPs are counted; None: the trial does not confirm them
    flops_tolerance: float | None = None  # the space's; fvcore and the closed form may disagree this much
    repeats: int = 1


def trial_settings(
    search: SearchSettings, input_shape: tuple[int, int] | None = None, flops_tolerance: float | None = None
) -> TrialSettings:
    """The trial settings of a search: WIDER FACE data at its root, the search schedule and resources
    (with input_shape, each trial confirms its candidate's FLOPs with fvcore before it trains)."""
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
        input_shape=None if input_shape is None else (int(input_shape[0]), int(input_shape[1])),
        flops_tolerance=flops_tolerance,
        repeats=search.repeats,
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


def confirm_flops(trial_id: str, config: dict[str, Any], settings: TrialSettings, work_dir: Path) -> dict | None:
    """fvcore's count of the candidate against the figure it was handed out at; both go to the event log.

    FlopsMismatchError (one line) when they disagree by more than the tolerance. A trial that confirmed
    its candidate in an earlier run (before a resume) is not measured again. None when not asked to.
    """
    if settings.input_shape is None:
        return None
    earlier = [e for e in read_events(work_dir) if e.get("event") == "flops_check" and e.get("agrees")]
    if earlier and isinstance(earlier[-1].get("check"), dict):
        return earlier[-1]["check"]
    arch = ArchSpec.from_dict(config["arch"], "trial config")
    measured = measure_flops(build_model(arch, init_weights=False), settings.input_shape)
    check = compare_flops(FlopsReport.from_dict(config["flops"]), measured, settings.flops_tolerance)
    append_event(work_dir, "flops_check", agrees=check.agrees, check=check.to_dict())
    if not check.agrees:
        raise check.error(trial_id)
    return check.to_dict()


def run_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """Ray Tune function trainable: train config['arch'] and tune.report APs after every validation.

    The trial first records where it runs (node, GPU ids, device, loader workers) in its event file
    and then adds that placement to every report, so `status` can show it. With settings.repeats R > 1
    it trains R times (seeds seed .. seed + R - 1, each in work_dir/repeatI/, each resumable on its own)
    and reports once, the mean APs with every run's hard AP (`repeats_result`).
    """
    from ray import tune

    placement = ray_placement()
    import torch

    torch.set_num_threads(max(1, settings.threads))
    trial_id = config.get("trial_key") or tune.get_context().get_trial_id()
    costs = reported_costs(config)  # beside the APs, for a multi-objective searcher
    work_dir = trial_work_dir(settings.trials_root, trial_id)
    work_dir.mkdir(parents=True, exist_ok=True)
    done = finished_result(work_dir)
    if done is not None:
        # trained to its end by an earlier driver that died before recording it: report, never retrain
        runs = {"hard_runs": done["hard_runs"]} if "hard_runs" in done else {}
        tune.report({**ap_metrics(int(done.get("epochs_run", settings.schedule.epochs)), done), **runs, **costs})
        return
    if not (work_dir / TRIAL_FILE).is_file():
        atomic_write_json(work_dir / TRIAL_FILE, {"config": config})
    device, note = choose_device(settings.device, placement["gpu_ids"], torch.cuda.is_available())
    if note is not None:
        print(f"[scrfd-search] trial {trial_id}: {note}", file=sys.stderr, flush=True)
    placement.update(device=device, device_note=note, workers=data_workers(settings.threads))
    schedule = settings.schedule
    if config.get("recipe"):
        schedule = replace(schedule, recipe=Recipe.from_dict(config["recipe"], "trial config"))
    run = _Run(ArchSpec.from_dict(config["arch"], "trial config"), schedule, settings, device, placement, costs)
    confirm = functools.partial(confirm_flops, trial_id, config, settings, work_dir)
    if settings.repeats == 1:
        run.train(work_dir, settings.seed, report=True, confirm=confirm)
        return
    append_event(work_dir, "start", resume=(work_dir / f"{REPEAT_PREFIX}0").is_dir(), placement=placement)
    costs = {**costs, "flops_check": confirm()}
    results = []
    for index in range(settings.repeats):
        folder = work_dir / f"{REPEAT_PREFIX}{index}"
        if finished_result(folder) is None:
            run.train(folder, (settings.seed + index) % 2**32, report=False)
        results.append(finished_result(folder))
    final = repeats_result(results, work_dir)  # type: ignore[arg-type]
    atomic_write_json(work_dir / RESULT_FILE, final)
    runs = {"hard_runs": final["hard_runs"]}
    tune.report({**ap_metrics(final["epochs_run"], final), **runs, **costs, "placement": placement})
    append_event(work_dir, "end", epochs_run=final["epochs_run"], **{k: final[k] for k in SUBSETS})


@dataclass(frozen=True)
class _Run:
    """What every training run of one trial shares: architecture, schedule, settings, device, placement."""

    arch: ArchSpec
    schedule: Schedule
    settings: TrialSettings
    device: str
    placement: dict[str, Any]
    costs: dict[str, Any]

    def train(self, work_dir: Path, seed: int, report: bool, confirm: Callable[[], dict | None] | None = None) -> None:
        """Train once in work_dir (resuming its checkpoint), logging start and end; report every validation
        to Ray Tune when `report` (the trial's only run). `confirm` (the trial's FLOPs check) runs after the
        start is logged, and its figures go with every report."""
        from ray import tune

        from scrfd_search.training.candidate import train_candidate  # torch/mmengine, in the worker only

        work_dir.mkdir(parents=True, exist_ok=True)
        resume = has_checkpoint(work_dir)
        append_event(work_dir, "start", resume=resume, placement=self.placement)
        costs = self.costs if confirm is None else {**self.costs, "flops_check": confirm()}
        reported: list[int] = []

        def on_validation(epoch: int, aps: dict[str, float]) -> None:
            """Forward every validation to Ray Tune (ASHA decides on these; it may stop the trial here)."""
            metrics = ap_metrics(epoch, aps)
            append_event(work_dir, "validation", epoch=epoch, hard=metrics["hard"])
            if report:
                tune.report({**metrics, **costs, "placement": self.placement})
                reported.append(epoch)

        result = train_candidate(
            self.arch,
            self.settings.data,
            self.schedule,
            work_dir,
            device=self.device,
            seed=seed,
            on_validation=on_validation,
            resume=resume,
            amp=self.settings.amp and self.device == "cuda",
        )
        final = {"easy": result.easy, "medium": result.medium, "hard": result.hard}
        if report and not reported:
            tune.report({**ap_metrics(result.epochs_run, final), **costs, "placement": self.placement})
        append_event(
            work_dir,
            "end",
            epochs_run=result.epochs_run,
            images_per_s=result.images_per_s,
            peak_memory_mib=result.peak_memory_mib,
            **final,
        )


def repeats_result(results: list[dict[str, Any]], work_dir: Path) -> dict[str, Any]:
    """The result.json of a repeated trial: mean APs, every run's hard AP and their sd, the first run's
    checkpoint linked into work_dir (what export takes)."""
    out: dict[str, Any] = {k: sum(float(r[k]) for r in results) / len(results) for k in SUBSETS}
    hards = [float(r["hard"]) for r in results]
    mean = out["hard"]
    out.update(
        epochs_run=min(int(r.get("epochs_run", 0)) for r in results),
        hard_runs=hards,
        hard_sd=math.sqrt(sum((h - mean) ** 2 for h in hards) / (len(hards) - 1)),
        checkpoint=_link_checkpoint(results[0].get("checkpoint"), work_dir),
    )
    return out


def _link_checkpoint(checkpoint: str | None, work_dir: Path) -> str | None:
    """A hard link (else a copy) of the first run's final checkpoint in the trial's own folder."""
    if not checkpoint or not Path(checkpoint).is_file():
        return None
    target = work_dir / Path(checkpoint).name
    if not target.exists():
        try:
            os.link(checkpoint, target)
        except OSError:
            shutil.copy2(checkpoint, target)
    return str(target)


def trial_placement(work_dir: Path) -> dict[str, Any] | None:
    """The placement a trial recorded at its last start (None if it never started)."""
    starts = [e for e in read_events(work_dir) if e.get("event") == "start" and "placement" in e]
    return starts[-1]["placement"] if starts else None
