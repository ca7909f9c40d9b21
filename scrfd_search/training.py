"""Train one candidate detector with mmengine's Runner and write `<work_dir>/result.json`.

The config comes from `scrfd_search.detector.build_config` (SCRFD's recipe); this module adds what a
search trial needs around it: a hook that reports every validation, stops on a NaN/inf loss and
prints one progress line per epoch; a device choice mmengine does not offer (CPU while a GPU is
visible); epoch checkpoints for resuming; and the final result file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner, find_latest_checkpoint

from scrfd_search.detector import DataSettings, Schedule, build_config
from scrfd_search.errors import UserError
from scrfd_search.io_utils import atomic_write_json
from scrfd_search.space.arch import ArchSpec

RESULT_FILE = "result.json"
HISTORY_FILE = "validation_history.json"
CANDIDATE_FILE = "candidate.json"
SUBSETS = ("easy", "medium", "hard")
DEVICES = ("auto", "cpu", "cuda")
REFERENCE_WARMUP_ITERS = 1500

ValidationCallback = Callable[[int, dict[str, float]], None]
ProgressSink = Callable[[str], None]


class StopTraining(Exception):  # noqa: N818  (a signal, not an error)
    """Raise from `on_validation` to end training after this validation; the result is still written."""


class LossDivergedError(UserError):
    """The training loss became NaN or infinite."""


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

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to result.json."""
        return asdict(self)


def print_to_stderr(line: str) -> None:
    """Default progress sink: one line on stderr, flushed."""
    print(line, file=sys.stderr, flush=True)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible else 'cpu'; 'cuda' without a GPU is a UserError."""
    import torch

    if device not in DEVICES:
        raise UserError(f"device: {device!r} is not one of {', '.join(DEVICES)}")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise UserError("device: 'cuda' was asked for but no CUDA GPU is visible (use --device cpu or auto)")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def check_data(data: DataSettings) -> None:
    """Raise UserError naming the first missing piece: data folder, annotation file, image folder, gt file."""
    from scrfd_search.data.pipelines import dataset_config
    from scrfd_search.evaluation.ground_truth import FACES_FILE, SUBSET_FILES

    root = Path(data.data_root)
    if not root.is_dir():
        raise UserError(f"{root}: data folder not found (expected the WIDER FACE layout: WIDER_train/, ...)")
    for split in ("train", "val"):
        layout = dataset_config(str(root), split=split, layout=data.layout)
        ann = (data.train_ann if split == "train" else data.val_ann) or layout["ann_file"]
        img = (data.train_img if split == "train" else data.val_img) or layout["data_prefix"]["img"]
        if not (root / ann).is_file():
            raise UserError(f"{root / ann}: {split} annotation file not found")
        if not (root / img).is_dir():
            raise UserError(f"{root / img}: {split} image folder not found")
    gt_dir = Path(data.gt_dir)
    if not gt_dir.is_dir():
        raise UserError(f"{gt_dir}: ground-truth folder not found (expected the WIDER FACE val .mat files)")
    for name in (FACES_FILE, *SUBSET_FILES.values()):
        if not (gt_dir / name).is_file():
            raise UserError(f"{gt_dir / name}: validation ground-truth file not found")


def warmup_iters_for(data: DataSettings, epochs: int, reference: int = REFERENCE_WARMUP_ITERS) -> int:
    """The reference's warm-up length, capped at a tenth of the run's iterations.

    Short runs on small data (search trials, demo sets) would otherwise spend most of their steps warming up.
    """
    from scrfd_search.data.annotations import parse_retinaface_txt, parse_wider_txt
    from scrfd_search.data.pipelines import dataset_config

    ann = data.train_ann or dataset_config(data.data_root, split="train", layout=data.layout)["ann_file"]
    parse = parse_wider_txt if data.layout == "wider" else parse_retinaface_txt
    images = len(parse(Path(data.data_root) / ann))
    if data.max_train_images is not None:
        images = min(images, data.max_train_images)
    iterations = epochs * max(1, -(-images // data.batch_size))
    return min(reference, max(1, iterations // 10))


def validation_aps(metrics: dict[str, Any]) -> dict[str, float] | None:
    """easy/medium/hard AP from an evaluator's metrics ('widerface/easy', ...), or None if absent."""
    found = {}
    for key, value in metrics.items():
        subset = key.rsplit("/", 1)[-1]
        if subset in SUBSETS:
            found[subset] = float(value)
    return found if len(found) == len(SUBSETS) else None


def _format_ap(value: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * value:.1f}%"


@HOOKS.register_module()
class CandidateMonitorHook(Hook):
    """Reports validations to a callback, stops on a non-finite loss, keeps history, prints progress.

    The history (one dict per validation) is saved to `<work_dir>/validation_history.json` after each
    validation, so a resumed run keeps the entries of the epochs it does not repeat.
    """

    priority = "HIGH"  # the loss check runs before the logger and checkpoint hooks see the iteration

    def __init__(
        self,
        on_validation: ValidationCallback | None = None,
        progress: ProgressSink | None = None,
        validate_before_train: bool = False,
        resumed: bool = False,
    ) -> None:
        self.on_validation = on_validation
        self.progress = progress
        self.validate_before_train = validate_before_train
        self.resumed = resumed
        self.history: list[dict[str, Any]] = []
        self._seconds_before = 0.0
        self._start = time.perf_counter()
        self._epoch_start = self._start
        self._losses: list[float] = []
        self._pending: dict[str, Any] | None = None

    # ---------------------------------------------------------------- run level

    def before_train(self, runner) -> None:
        """Restore the history of a resumed run; optionally validate the model before any training."""
        self._start = time.perf_counter()
        if self.resumed and runner.epoch > 0:
            self.history = [h for h in _read_history(runner.work_dir) if h["epoch"] <= runner.epoch]
            self._seconds_before = max((h.get("seconds", 0.0) for h in self.history), default=0.0)
        else:
            self.history = []
        if self.validate_before_train and runner.epoch == 0 and runner.val_loop is not None:
            runner.val_loop.run()

    def after_train(self, runner) -> None:
        """Print the line of an epoch that ended without a validation."""
        self._flush()

    @property
    def seconds(self) -> float:
        """Training time so far, including the time of the runs this one resumes."""
        return self._seconds_before + time.perf_counter() - self._start

    # ---------------------------------------------------------------- training

    def before_train_epoch(self, runner) -> None:
        """Start the epoch's clock and loss average."""
        self._flush()
        self._epoch_start = time.perf_counter()
        self._losses = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Record the loss; raise LossDivergedError when it is NaN or infinite."""
        if not outputs or "loss" not in outputs:
            return
        value = outputs["loss"]
        loss = float(value.detach().item() if hasattr(value, "detach") else value)
        if not math.isfinite(loss):
            kind = "NaN" if math.isnan(loss) else "infinite"
            raise LossDivergedError(
                f"loss became {kind} at epoch {runner.epoch + 1} iteration {batch_idx + 1} "
                f"(lower the learning rate, or check the training annotations)"
            )
        self._losses.append(loss)

    def after_train_epoch(self, runner) -> None:
        """Hold the epoch's progress line until we know whether a validation follows."""
        mean_loss = sum(self._losses) / len(self._losses) if self._losses else None
        self._pending = dict(
            epoch=runner.epoch + 1,  # the loop increments its counter after this hook
            max_epochs=runner.max_epochs,
            loss=mean_loss,
            seconds=time.perf_counter() - self._epoch_start,
        )

    # ---------------------------------------------------------------- validation

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        """Record the APs, save the history, print progress, then call on_validation."""
        aps = validation_aps(metrics or {})
        if aps is None:
            return
        epoch = runner.epoch
        entry: dict[str, Any] = dict(epoch=epoch, **aps, seconds=round(self.seconds, 3))
        if self._pending is not None and self._pending["epoch"] == epoch:
            entry["loss"] = self._pending["loss"]
        self.history = [h for h in self.history if h["epoch"] != epoch] + [entry]
        atomic_write_json(Path(runner.work_dir) / HISTORY_FILE, {"history": self.history})
        if self._pending is not None:
            self._flush(aps)
        else:
            state = "untrained" if epoch == 0 else "validated"
            self._say(f"epoch {epoch}/{runner.max_epochs}  {state}  {_aps_text(aps)}")
        if self.on_validation is None:
            return
        try:
            self.on_validation(epoch, dict(aps))
        except StopTraining:
            runner.train_loop.stop_training = True

    # ---------------------------------------------------------------- progress lines

    def _flush(self, aps: dict[str, float] | None = None) -> None:
        """Print the pending epoch line (with the validation's APs if given)."""
        if self._pending is None:
            return
        p, self._pending = self._pending, None
        loss = "n/a" if p["loss"] is None else f"{p['loss']:.4f}"
        line = f"epoch {p['epoch']}/{p['max_epochs']}  loss {loss}  {p['seconds']:.1f}s"
        self._say(line + (f"  {_aps_text(aps)}" if aps else ""))

    def _say(self, line: str) -> None:
        """Send one line to the progress sink, if any."""
        if self.progress is not None:
            self.progress(line)


def _aps_text(aps: dict[str, float]) -> str:
    """'AP easy 12.3% medium 10.1% hard 5.0%'."""
    return "AP " + " ".join(f"{s} {_format_ap(aps[s])}" for s in SUBSETS)


def _read_history(work_dir: str | Path) -> list[dict[str, Any]]:
    """The validation history an earlier run saved in work_dir (empty if none)."""
    path = Path(work_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("history", []))


def entry_point_config(config: str, launcher: str, cfg_options: dict | None, work_dir: str | None) -> Any:
    """tools/train.py and tools/test.py: the config file with mmdet's command-line overrides applied."""
    from mmengine.config import Config

    cfg = Config.fromfile(config)  # runs the config's custom_imports
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(config).stem)
    return cfg


def runner_from_config(cfg: Any) -> Runner:
    """The Runner a config asks for (its runner_type, else mmengine's)."""
    from mmengine.registry import RUNNERS

    return RUNNERS.build(cfg) if "runner_type" in cfg else Runner.from_cfg(cfg)


@contextlib.contextmanager
def own_checkpoint_loading() -> Iterator[None]:
    """Let mmengine's torch.load read a full checkpoint that this project wrote itself.

    mmengine 0.10.7 calls torch.load without `weights_only`; torch >= 2.6 then defaults to
    weights_only=True, which refuses the message-hub state (HistoryBuffer, numpy scalars) that
    mmengine's own CheckpointHook saved, so resuming fails. Only use it for trusted checkpoints.
    """
    name = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    previous = os.environ.get(name)
    os.environ[name] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


class PinnedDeviceRunner(Runner):
    """mmengine's Runner with the model on a chosen device and a quiet console.

    mmengine always moves the model to the GPU when one is visible; a CPU run on a GPU machine
    needs the device fixed here. `console_level` is the level of the console log handler (the
    log file in work_dir keeps INFO).
    """

    device_name = "cpu"
    console_level = logging.ERROR

    def build_logger(self, log_level: int | str = "INFO", log_file: str | None = None, **kwargs):
        """The usual MMLogger, with its console handler raised to console_level."""
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.setLevel(self.console_level)
        return logger

    def wrap_model(self, model_wrapper_cfg, model):
        """Move the model to device_name (no distributed wrapping in this project)."""
        from mmengine.model import revert_sync_batchnorm

        return revert_sync_batchnorm(model.to(self.device_name))

    def resume(self, filename, resume_optimizer=True, resume_param_scheduler=True, map_location="default"):
        """Load the checkpoint onto device_name rather than mmengine's default device."""
        if map_location == "default":
            map_location = self.device_name
        with own_checkpoint_loading():
            super().resume(filename, resume_optimizer, resume_param_scheduler, map_location)


def _runner_class(device: str, verbose: bool) -> type[PinnedDeviceRunner]:
    """A PinnedDeviceRunner subclass fixed to device and console verbosity."""
    level = logging.INFO if verbose else logging.ERROR
    return type("PinnedDeviceRunner", (PinnedDeviceRunner,), {"device_name": device, "console_level": level})


def candidate_config(
    arch: ArchSpec,
    data: DataSettings,
    schedule: Schedule,
    work_dir: Path,
    *,
    device: str,
    seed: int,
    resume: bool,
) -> dict[str, Any]:
    """build_config's dict, with epoch checkpoints for resuming and a unique experiment name."""
    cfg = build_config(arch, data=data, schedule=schedule, work_dir=str(work_dir), seed=seed, device=device)
    if schedule.checkpoint_interval is None:
        # search runs: a checkpoint every epoch (only the latest kept) so a stopped trial resumes where it was
        cfg["default_hooks"]["checkpoint"].update(interval=1, max_keep_ckpts=1, save_last=True)
    cfg["resume"] = bool(resume)
    cfg["load_from"] = None
    # mmengine keys its global logger and message hub by name; two runs within one second must not share
    cfg["experiment_name"] = f"{work_dir.name}_{uuid.uuid4().hex[:8]}"
    return cfg


def _import_custom_modules(cfg: dict[str, Any]) -> None:
    """Register mmdet's modules and the config's custom_imports (Config.fromfile would do this)."""
    from mmengine.utils import import_modules_from_strings

    from scrfd_search.detector import register_modules

    register_modules()
    imports = cfg.get("custom_imports")
    if imports:
        import_modules_from_strings(**imports)


def _close_logs(runner: Runner) -> None:
    """Close the run's log file handlers and visualizer backends (many runs share one process)."""
    for handler in list(runner.logger.handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            runner.logger.removeHandler(handler)
    runner.visualizer.close()


def _last_checkpoint(work_dir: Path) -> str | None:
    """The checkpoint mmengine saved last in work_dir (None when it saved none)."""
    if not (work_dir / "last_checkpoint").is_file():
        return None
    return find_latest_checkpoint(str(work_dir))


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
) -> TrainResult:
    """Train arch with schedule's recipe, validating every schedule.val_interval epochs; write result.json.

    on_validation(epoch, {'easy', 'medium', 'hard'}) runs after every validation (APs as fractions);
    raising StopTraining from it ends training cleanly (the result is written), any other exception
    propagates. resume=True continues from the last checkpoint in work_dir (or starts afresh if there
    is none). validate_before_train adds an epoch-0 validation of the untrained model to the history.
    progress receives one line per epoch (None: silent); verbose shows mmengine's INFO log on stdout.
    A NaN or infinite loss raises LossDivergedError.
    """
    device = resolve_device(device)
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
    cfg = candidate_config(arch, data, schedule, work_dir, device=device, seed=seed, resume=resume)
    _import_custom_modules(cfg)
    from mmengine.config import Config

    atomic_write_json(work_dir / CANDIDATE_FILE, run_info)
    # yapf-formatting the config text costs ~0.7 s at every checkpoint save; plain text is as readable
    runner = _runner_class(device, verbose).from_cfg(Config(cfg, format_python_code=False))
    monitor = CandidateMonitorHook(on_validation, progress, validate_before_train, resumed=resume)
    runner.register_hook(monitor)
    try:
        runner.train()
    finally:
        _close_logs(runner)
    result = TrainResult(
        **_final_aps(monitor.history),
        epochs_run=runner.epoch,
        checkpoint=_last_checkpoint(work_dir),
        history=monitor.history,
        seconds=round(monitor.seconds, 3),
    )
    extra = {"arch": arch.to_dict(), "recipe": schedule.recipe.to_dict(), "device": device, "seed": seed}
    atomic_write_json(work_dir / RESULT_FILE, {**result.to_dict(), **extra})
    return result
