"""mmengine's Runner as this project uses it: pinned to a device, quiet on the console, loading its own checkpoints."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmengine.runner import Runner


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

    def load_checkpoint(self, filename, map_location="cpu", strict=False, revise_keys=((r"^module.", ""),)):
        """Load weights (load_from) as mmengine does, reading full checkpoints of this project too."""
        with own_checkpoint_loading():
            return super().load_checkpoint(filename, map_location, strict, list(revise_keys))


def runner_class(device: str, verbose: bool) -> type[PinnedDeviceRunner]:
    """A PinnedDeviceRunner subclass fixed to device and console verbosity."""
    level = logging.INFO if verbose else logging.ERROR
    return type("PinnedDeviceRunner", (PinnedDeviceRunner,), {"device_name": device, "console_level": level})


def close_logs(runner: Runner) -> None:
    """Close the run's log file handlers and visualizer backends (many runs share one process)."""
    for handler in list(runner.logger.handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            runner.logger.removeHandler(handler)
    runner.visualizer.close()
