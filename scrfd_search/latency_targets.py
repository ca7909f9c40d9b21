"""Timing whole detectors: an ArchSpec, a config, an ONNX file or a stored trial, on a backend and device.

Network alone is the released outputs (score_*, bbox_* and kps_* per stride, the tensors the exported
ONNX file returns); end to end adds what `scrfd-search detect` does around it for one image: the
letterbox (resize keeping the ratio, pad), normalisation, decoding from the anchor centres and NMS.
An ArchSpec is exported to ONNX by the project's export code for onnxruntime, and run as the
released-output module for torch, with freshly initialised weights (weights change no layer's cost;
they change how many boxes reach NMS: time an exported ONNX file for a trained model's end to end).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scrfd_search.errors import UserError
from scrfd_search.export.checkpoints import load_detector
from scrfd_search.export.onnx_file import export_onnx_bytes
from scrfd_search.export.released_format import released_head_module
from scrfd_search.inference import CheckpointDetector, OnnxDetector, letterbox, read_image
from scrfd_search.latency.measure import TargetTiming, Timing, interleaved_samples
from scrfd_search.latency.modules import ort_options, ort_session, set_torch_threads, torch_runner
from scrfd_search.search.store import load_arch_ref
from scrfd_search.space.arch import ArchSpec

TARGET_KINDS = "an ArchSpec JSON, a config .py, an ONNX file, or a stored trial NAME/KEY"


@dataclass(frozen=True)
class Target:
    """What to time: an architecture (with optional checkpoint) or an ONNX file."""

    label: str
    arch: ArchSpec | None = None
    checkpoint: Path | None = None
    onnx: Path | None = None


@dataclass(frozen=True)
class Settings:
    """How to time: backend, device, threads, batch, input (H, W), detect's thresholds, the image."""

    backend: str = "onnxruntime"
    device: str = "cpu"
    threads: int = 1
    batch: int = 1
    input_shape: tuple[int, int] = (480, 640)
    score_thr: float = 0.5
    nms_iou: float = 0.4
    image: Path | None = None


def resolve_target(text: str, results_dir: Path | None = None) -> Target:
    """The target a command-line word names; a one-line UserError for anything else."""
    path = Path(text)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return Target(text, arch=ArchSpec.load(path))
        if suffix == ".py":
            return Target(text, arch=_config_arch(path))
        if suffix == ".onnx":
            return Target(text, onnx=path)
        raise UserError(f"{text}: a {suffix or 'suffix-less'} file is not a target (expected {TARGET_KINDS})")
    if path.is_dir():
        raise UserError(f"{text}: a folder is not a target (expected {TARGET_KINDS})")
    if text.count("/") != 1 or path.suffix.lower() in (".json", ".py", ".onnx"):
        raise UserError(f"{text}: no such file, and not a stored trial NAME/KEY (expected {TARGET_KINDS})")
    return Target(text, arch=load_arch_ref(text, results_dir))


def _config_arch(path: Path) -> ArchSpec:
    """The scrfd_arch a config written by scrfd-search names."""
    from mmengine.config import Config  # deferred: heavy

    try:
        data = Config.fromfile(str(path), import_custom_modules=False).to_dict()
    except Exception as exc:  # mmengine raises SyntaxError, ValueError and others for a file that is not a config
        raise UserError(
            f"{path}: not an mmdet config ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        ) from None
    if "scrfd_arch" not in data:
        raise UserError(f"{path}: holds no scrfd_arch (not a config written by scrfd-search)")
    return ArchSpec.from_dict(data["scrfd_arch"], str(path))


def _image(settings: Settings) -> np.ndarray:
    """The end-to-end input: --image, or a fixed random frame of the input shape."""
    if settings.image is not None:
        image = read_image(settings.image)
        if image is None:
            raise UserError(f"--image {settings.image}: not a readable image")
        return image
    h, w = settings.input_shape
    return np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _network_input(settings: Settings) -> np.ndarray:
    """A fixed random normalised batch of the input shape."""
    h, w = settings.input_shape
    return np.random.default_rng(0).standard_normal((settings.batch, 3, h, w)).astype(np.float32)


class Timers:
    """The network-alone and end-to-end callables of one target (keeps its temporary ONNX file alive)."""

    def __init__(self, target: Target, settings: Settings, end_to_end: bool = True) -> None:
        self.target, self.settings = target, settings
        self.with_end_to_end = end_to_end
        self._folder = tempfile.TemporaryDirectory(prefix="scrfd-latency-")
        if settings.backend == "torch":
            if target.onnx is not None:
                raise UserError(f"{target.label}: an ONNX file runs with --backend onnxruntime only")
            self.network, self.end_to_end = self._torch()
        else:
            self.network, self.end_to_end = self._onnxruntime()

    def close(self) -> None:
        """Remove the temporary ONNX file."""
        self._folder.cleanup()

    def _onnx_path(self) -> Path:
        """The target's ONNX file: as given, or exported from its architecture (released outputs)."""
        if self.target.onnx is not None:
            return self.target.onnx
        arch = self.target.arch
        module = released_head_module(load_detector(arch, self.target.checkpoint))
        path = Path(self._folder.name) / "model.onnx"
        path.write_bytes(export_onnx_bytes(module, arch.head.keypoints, self.settings.input_shape))
        return path

    def _onnxruntime(self) -> tuple[Callable[[], Any], Callable[[], Any] | None]:
        """Session run on a fixed batch; detect's OnnxDetector on one image (batch 1 only)."""
        s = self.settings
        path = self._onnx_path()
        try:
            session = ort_session(str(path), s.threads, s.device)
        except UserError:
            raise
        except Exception as exc:  # onnxruntime's own untyped errors for a file that is not a model
            raise UserError(f"{self.target.label}: not an ONNX model ({str(exc).splitlines()[0][:160]})") from None
        shape = session.get_inputs()[0].shape
        fixed = [d if isinstance(d, int) else None for d in shape]
        wanted = [s.batch, 3, *s.input_shape]
        clash = [(i, d) for i, d in enumerate(fixed) if d is not None and d != wanted[i]]
        if clash:
            dims = "x".join(str(d) if d is not None else "?" for d in fixed)
            raise UserError(
                f"{self.target.label}: takes inputs of {dims} only, not {'x'.join(map(str, wanted))} "
                f"(set --batch and --input-shape to match)"
            )
        feeds = {session.get_inputs()[0].name: _network_input(s)}

        def network() -> Any:
            return session.run(None, feeds)

        if s.batch != 1 or not self.with_end_to_end:
            return network, None
        options, providers = ort_options(s.threads, s.device)
        detector = OnnxDetector(path, options, providers)
        image = _image(s)
        return network, lambda: detector(letterbox(image, s.input_shape), s.score_thr, s.nms_iou)

    def _torch(self) -> tuple[Callable[[], Any], Callable[[], Any] | None]:
        """The released-output module under inference mode; detect's CheckpointDetector on one image."""
        import torch  # deferred: heavy

        s = self.settings
        arch, checkpoint = self.target.arch, self.target.checkpoint
        module = released_head_module(load_detector(arch, checkpoint))
        network = torch_runner(module, (torch.from_numpy(_network_input(s)),), s.device, s.threads)
        if s.batch != 1 or not self.with_end_to_end:
            return network, None
        set_torch_threads(s.threads)
        detector = CheckpointDetector(arch, checkpoint, s.device)
        image = _image(s)

        def end_to_end() -> Any:
            out = detector(letterbox(image, s.input_shape), s.score_thr, s.nms_iou)
            if s.device == "cuda":
                torch.cuda.synchronize()
            return out

        return network, end_to_end


def measure_targets(
    targets: list[Target], settings: Settings, runs: int, warmup: int, progress: Callable[[str], None] | None = None
) -> list[TargetTiming]:
    """Each target's network and end-to-end timing (one target at a time; its two timings interleaved)."""
    results = []
    for target in targets:
        if progress is not None:
            progress(f"timing {target.label}")
        timers = Timers(target, settings)
        try:
            callables = [timers.network] + ([timers.end_to_end] if timers.end_to_end is not None else [])
            samples = interleaved_samples(callables, runs, warmup)
        finally:
            timers.close()
        results.append(TargetTiming(Timing.of(samples[0]), Timing.of(samples[1]) if len(samples) > 1 else None))
    return results


def whole_model_timer(
    settings: Settings, runs: int, warmup: int, chunk: int = 4
) -> Callable[[list[ArchSpec]], list[float]]:
    """Median network-alone ms of architectures, timed as `latency` times them (for the table's correction).

    Runs are interleaved (one run of each model per round) within chunks of `chunk` models (the sessions
    alive at once), so that load from other processes lands on the models alike.
    """

    def time_whole(archs: list[ArchSpec]) -> list[float]:
        medians: list[float] = []
        for start in range(0, len(archs), chunk):
            timers = [Timers(Target("fit", arch=a), settings, end_to_end=False) for a in archs[start : start + chunk]]
            try:
                samples = interleaved_samples([t.network for t in timers], runs, warmup)
            finally:
                for t in timers:
                    t.close()
            medians += [Timing.of(s).median_ms for s in samples]
        return medians

    return time_whole
