"""The hook that watches a candidate's training: progress lines, every validation reported, NaN losses stopped."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from scrfd_search.errors import UserError
from scrfd_search.evaluation.ground_truth import SUBSETS
from scrfd_search.io_utils import atomic_write_json

HISTORY_FILE = "validation_history.json"


ValidationCallback = Callable[[int, dict[str, float]], None]


ProgressSink = Callable[[str], None]


class StopTraining(Exception):  # noqa: N818  (a signal, not an error)
    """Raise from `on_validation` to end training after this validation; the result is still written."""


class LossDivergedError(UserError):
    """The training loss became NaN or infinite."""


def print_to_stderr(line: str) -> None:
    """Default progress sink: one line on stderr, flushed."""
    print(line, file=sys.stderr, flush=True)


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
        self.train_images = 0
        self.train_seconds = 0.0
        self._epoch_images = 0

    # ---------------------------------------------------------------- run level

    def before_train(self, runner) -> None:
        """Restore the history of a resumed run; optionally validate the model before any training."""
        self._start = time.perf_counter()
        if self.resumed and runner.epoch > 0:
            self.history = [h for h in read_history(runner.work_dir) if h["epoch"] <= runner.epoch]
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
        self._epoch_images = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Count the images, record the loss; raise LossDivergedError when it is NaN or infinite."""
        if data_batch is not None and "inputs" in data_batch:
            self._epoch_images += len(data_batch["inputs"])
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
        seconds = time.perf_counter() - self._epoch_start
        self.train_images += self._epoch_images
        self.train_seconds += seconds
        self._pending = dict(
            epoch=runner.epoch + 1,  # the loop increments its counter after this hook
            max_epochs=runner.max_epochs,
            loss=mean_loss,
            seconds=seconds,
            rate=self._epoch_images / seconds if seconds > 0 else 0.0,
        )

    @property
    def images_per_s(self) -> float | None:
        """Training images per second over the epochs of this run (data loading included, validation not)."""
        return self.train_images / self.train_seconds if self.train_seconds > 0 else None

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
        line = f"epoch {p['epoch']}/{p['max_epochs']}  loss {loss}  {p['seconds']:.1f}s  {p['rate']:.1f} img/s"
        self._say(line + (f"  {_aps_text(aps)}" if aps else ""))

    def _say(self, line: str) -> None:
        """Send one line to the progress sink, if any."""
        if self.progress is not None:
            self.progress(line)


def _aps_text(aps: dict[str, float]) -> str:
    """'AP easy 12.3% medium 10.1% hard 5.0%'."""
    return "AP " + " ".join(f"{s} {_format_ap(aps[s])}" for s in SUBSETS)


def read_history(work_dir: str | Path) -> list[dict[str, Any]]:
    """The validation history an earlier run saved in work_dir (empty if none)."""
    path = Path(work_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("history", []))
