"""Train one candidate detector with mmengine's Runner and write `<work_dir>/result.json`.

The config comes from `config_builder.build_config` (SCRFD's recipe); around it a search trial
gets a monitor hook (training.monitor), a device of its choice (training.device), epoch checkpoints
for resuming and the final result file.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmengine.config import Config
from mmengine.runner import Runner, find_latest_checkpoint

from scrfd_search.builders import build_model, import_config_modules
from scrfd_search.config_builder import DataSettings, Schedule, build_config
from scrfd_search.errors import UserError
from scrfd_search.evaluation.ground_truth import SUBSETS
from scrfd_search.io_utils import atomic_write_json, atomic_write_text
from scrfd_search.space.arch import ArchSpec
from scrfd_search.training.data_checks import check_data
from scrfd_search.training.device import amp_dtype_for, peak_memory_mib, resolve_device
from scrfd_search.training.files import CANDIDATE_FILE, LAST_CHECKPOINT_FILE, RESULT_FILE, has_checkpoint
from scrfd_search.training.monitor import (
    CandidateMonitorHook,
    ProgressSink,
    ValidationCallback,
    print_to_stderr,
)
from scrfd_search.training.runner import close_logs, runner_class


@dataclass(frozen=True)
class TrainResult:
    """The outcome of one training run: final AP (fractions), epochs trained, checkpoint, history."""

    easy: float | None
    medium: float | None
    hard: float | None
    epochs_run: int
    checkpoint: str | None
    history: list[dict[str, Any]]
    seconds: float = 0.0
    images_per_s: float | None = None
    peak_memory_mib: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to result.json."""
        return asdict(self)


def candidate_config(
    arch: ArchSpec,
    data: DataSettings,
    schedule: Schedule,
    work_dir: Path,
    *,
    device: str,
    seed: int,
    resume: bool,
    amp_dtype: str | None = None,
    load_from: str | None = None,
) -> dict[str, Any]:
    """build_config's dict, with epoch checkpoints for resuming and a unique experiment name."""
    cfg = build_config(
        arch, data=data, schedule=schedule, work_dir=str(work_dir), seed=seed, device=device, amp_dtype=amp_dtype
    )
    if schedule.checkpoint_interval is None:
        # search runs: a checkpoint every epoch (only the latest kept) so a stopped trial resumes where it was
        cfg["default_hooks"]["checkpoint"].update(interval=1, max_keep_ckpts=1, save_last=True)
    cfg["resume"] = bool(resume)
    cfg["load_from"] = load_from
    # mmengine keys its global logger and message hub by name; two runs within one second must not share
    cfg["experiment_name"] = f"{work_dir.name}_{uuid.uuid4().hex[:8]}"
    return cfg


def _last_checkpoint(work_dir: Path) -> str | None:
    """The checkpoint mmengine saved last in work_dir (None when it saved none).

    mmengine records it by absolute path; when the work dir was moved (a copied experiment store) that
    path is stale, so it is re-pointed at the file of the same name in work_dir.
    """
    marker = work_dir / LAST_CHECKPOINT_FILE
    if not has_checkpoint(work_dir):
        return None
    recorded = find_latest_checkpoint(str(work_dir))
    if recorded and not Path(recorded).is_file() and (work_dir / Path(recorded).name).is_file():
        atomic_write_text(marker, str(work_dir / Path(recorded).name))
        recorded = find_latest_checkpoint(str(work_dir))
    if recorded and not Path(recorded).is_file():
        return None
    return recorded


def _check_same_candidate(work_dir: Path, run_info: dict[str, Any]) -> None:
    """Refuse to resume a work dir that holds another architecture, schedule length or image size."""
    path = work_dir / CANDIDATE_FILE
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    for key, value in run_info.items():
        if key in saved and saved[key] != value:
            named = {"arch": "a different architecture", "recipe": "a different optimizer recipe"}
            shown = named.get(key, f"{key} {saved[key]} (now {value})")
            raise UserError(f"{path}: cannot resume, the work dir holds a run with {shown}; use another work dir")


def _final_aps(history: list[dict[str, Any]]) -> dict[str, float | None]:
    """The APs of the last validation (None when there was none)."""
    if not history:
        return dict.fromkeys(SUBSETS)
    last = max(history, key=lambda h: h["epoch"])
    return {s: last[s] for s in SUBSETS}


def train_candidate(
    arch: ArchSpec,
    data: DataSettings,
    schedule: Schedule,
    work_dir: str | Path,
    *,
    device: str = "auto",
    seed: int = 0,
    on_validation: ValidationCallback | None = None,
    resume: bool = False,
    validate_before_train: bool = False,
    progress: ProgressSink | None = print_to_stderr,
    verbose: bool = False,
    amp: bool = False,
    load_from: str | Path | None = None,
) -> TrainResult:
    """Train arch with schedule's recipe, validating every schedule.val_interval epochs; write result.json.

    on_validation(epoch, {'easy', 'medium', 'hard'}) runs after every validation (APs as fractions);
    raising StopTraining from it ends training cleanly (the result is written), any other exception
    propagates. resume=True continues from the last checkpoint in work_dir (or starts afresh if there
    is none). validate_before_train adds an epoch-0 validation of the untrained model to the history.
    progress receives one line per epoch (None: silent); verbose shows mmengine's INFO log on stdout.
    load_from starts from a checkpoint's weights (e.g. one written by `import-weights`).
    A NaN or infinite loss raises LossDivergedError. amp trains with mixed precision (GPU only).
    """
    device = resolve_device(device)
    amp_dtype = amp_dtype_for(device, amp)
    check_data(data)
    work_dir = Path(work_dir).resolve()
    resume = resume and _last_checkpoint(work_dir) is not None
    run_info = {
        "arch": arch.to_dict(),
        "epochs": schedule.epochs,
        "img_size": data.img_size,
        "recipe": schedule.recipe.to_dict(),
    }
    if resume:
        _check_same_candidate(work_dir, run_info)
    cfg = candidate_config(
        arch,
        data,
        schedule,
        work_dir,
        device=device,
        seed=seed,
        resume=resume,
        amp_dtype=amp_dtype,
        load_from=None if load_from is None else str(load_from),
    )
    atomic_write_json(work_dir / CANDIDATE_FILE, run_info)
    monitor = CandidateMonitorHook(on_validation, progress, validate_before_train, resumed=resume)
    epochs_run = _run_training(cfg, device, verbose, monitor)
    result = TrainResult(
        **_final_aps(monitor.history),
        epochs_run=epochs_run,
        checkpoint=_last_checkpoint(work_dir),
        history=monitor.history,
        seconds=round(monitor.seconds, 3),
        images_per_s=None if monitor.images_per_s is None else round(monitor.images_per_s, 2),
        peak_memory_mib=round(peak_memory_mib(device), 1),
    )
    extra = {"arch": arch.to_dict(), "recipe": schedule.recipe.to_dict(), "device": device, "seed": seed}
    atomic_write_json(work_dir / RESULT_FILE, {**result.to_dict(), **extra, "amp": amp_dtype})
    return result


def _run_training(cfg: dict, device: str, verbose: bool, monitor: CandidateMonitorHook) -> int:
    """Train with mmengine's Runner for cfg under monitor; return the epochs run."""
    import_config_modules(cfg)
    # yapf-formatting the config text costs ~0.7 s at every checkpoint save; plain text is as readable
    runner = runner_class(device, verbose).from_cfg(Config(cfg, format_python_code=False))
    runner.register_hook(monitor)
    try:
        runner.train()
        if (
            runner.epoch > 0
            and runner.val_loop is not None
            and runner.epoch not in {h["epoch"] for h in monitor.history}
        ):
            # a resumed run whose last epoch was checkpointed but never validated (killed in between):
            # train() has nothing left to do, so validate that checkpoint now and report it
            runner.val_loop.run()
    finally:
        close_logs(runner)
    return runner.epoch


@dataclass(frozen=True)
class ProbeResult:
    """A short training probe: images/s after the warm-up iterations, peak memory, the device used."""

    images_per_s: float
    peak_memory_mib: float
    iterations: int
    seconds: float
    device: str
    amp_dtype: str | None


def probe_training(
    arch: ArchSpec,
    data: DataSettings,
    *,
    iterations: int = 20,
    warmup: int = 2,
    device: str = "auto",
    amp: bool = False,
    seed: int = 0,
) -> ProbeResult:
    """Train arch for `iterations` steps exactly as a trial does (same config, loader, optimiser).

    The first `warmup` steps (worker start-up, cuDNN autotuning, allocator growth) are not timed.
    No checkpoint, log or result file is written.
    """
    import torch
    from mmengine.optim import build_optim_wrapper

    device = resolve_device(device)
    amp_dtype = amp_dtype_for(device, amp)
    check_data(data)
    schedule = Schedule(epochs=1, warmup_iters=0)
    cfg = build_config(arch, data=data, schedule=schedule, seed=seed, device=device, amp_dtype=amp_dtype)
    import_config_modules(cfg)
    torch.manual_seed(seed)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()
    model = build_model(arch).to(device).train()
    optim_wrapper = build_optim_wrapper(model, cfg["optim_wrapper"])
    loader = Runner.build_dataloader(cfg["train_dataloader"], seed=seed)
    done, images, start = 0, 0, time.perf_counter()
    while done < iterations + warmup:
        for batch in loader:
            model.train_step(batch, optim_wrapper)
            done += 1
            if done == warmup:
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            elif done > warmup:
                images += len(batch["inputs"])
            if done == iterations + warmup:
                break
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return ProbeResult(
        images_per_s=images / seconds if seconds > 0 else 0.0,
        peak_memory_mib=peak_memory_mib(device),
        iterations=iterations,
        seconds=seconds,
        device=device,
        amp_dtype=amp_dtype,
    )
