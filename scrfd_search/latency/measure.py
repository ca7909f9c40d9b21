"""Where a latency was measured (the machine fingerprint) and how: median, p10 and p90 of timed runs.

Timings interleave what they compare (one run of each target per round), so that a burst of load
from another process on a shared machine lands on every target alike instead of on one of them.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scrfd_search.errors import UserError

BACKENDS = ("onnxruntime", "torch")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Timing:
    """Milliseconds over timed runs (after warm-up): median, 10th and 90th percentiles, run count."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Timing:
        """The statistics of a list of per-run milliseconds."""
        p10, median, p90 = np.percentile(np.asarray(samples_ms, dtype=float), [10, 50, 90])
        return cls(float(median), float(p10), float(p90), len(samples_ms))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: median_ms, p10_ms, p90_ms, runs."""
        return {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "runs": self.runs}


@dataclass(frozen=True)
class TargetTiming:
    """A target's network-alone timing and its end-to-end timing (None where not measured)."""

    network: Timing
    end_to_end: Timing | None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what platform reports)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def backend_version(backend: str) -> str:
    """The installed version of the backend (onnxruntime or torch)."""
    if backend == "onnxruntime":
        import onnxruntime  # deferred: heavy, and only latency work needs it

        return str(onnxruntime.__version__)
    import torch  # deferred: heavy

    return str(torch.__version__)


def device_name(device: str) -> str:
    """The CPU model, or the name of GPU 0 (as torch reports it) for cuda."""
    if device == "cpu":
        return cpu_model()
    import torch  # deferred: heavy

    if not torch.cuda.is_available():
        raise UserError("--device cuda: no GPU is visible to torch on this machine")
    return str(torch.cuda.get_device_name(0))


def check_settings(backend: str, device: str, threads: int, batch: int, input_shape: Sequence[int]) -> None:
    """One-line errors for settings no measurement can run with."""
    if backend not in BACKENDS:
        raise UserError(f"--backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise UserError(f"--device: {device!r} is not one of {', '.join(DEVICES)}")
    if threads < 1:
        raise UserError(f"--threads: {threads} must be at least 1")
    if batch < 1:
        raise UserError(f"--batch: {batch} must be at least 1")
    if len(input_shape) != 2 or any(d < 32 or d % 32 for d in input_shape):
        raise UserError(f"--input-shape: {' '.join(map(str, input_shape))} must be H W, multiples of 32 (at least 32)")


def machine_fingerprint(
    backend: str, device: str, threads: int, batch: int, input_shape: Sequence[int]
) -> dict[str, Any]:
    """What a latency depends on besides the model: CPU, device, backend and version, threads, batch, shape."""
    check_settings(backend, device, threads, batch, input_shape)
    return {
        "cpu": cpu_model(),
        "device": device,
        "device_name": device_name(device),
        "backend": backend,
        "backend_version": backend_version(backend),
        "threads": threads,
        "batch": batch,
        "input_shape": [int(input_shape[0]), int(input_shape[1])],
        "logical_cpus": os.cpu_count() or 0,
    }


def load_warning() -> str | None:
    """A warning when other processes keep the CPUs busy (1-minute load average above the CPU count)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cpus = os.cpu_count() or 1
    if load <= cpus:
        return None
    return f"warning: load average {load:.1f} on {cpus} CPUs: other processes share this machine, timings are inflated"


def interleaved_samples(targets: Sequence[Callable[[], Any]], runs: int, warmup: int) -> list[list[float]]:
    """Per-run milliseconds of each callable: `warmup` untimed calls each, then `runs` rounds of one call each."""
    if runs < 1:
        raise UserError(f"--runs: {runs} must be at least 1")
    for target in targets:
        for _ in range(warmup):
            target()
    samples: list[list[float]] = [[] for _ in targets]
    for _ in range(runs):
        for target, into in zip(targets, samples, strict=True):
            start = time.perf_counter()
            target()
            into.append((time.perf_counter() - start) * 1000.0)
    return samples


def time_interleaved(targets: Sequence[Callable[[], Any]], runs: int, warmup: int) -> list[Timing]:
    """Time each callable `runs` times after `warmup` calls, one call of each per round."""
    return [Timing.of(s) for s in interleaved_samples(targets, runs, warmup)]


def measure_target(
    network: Callable[[], Any], end_to_end: Callable[[], Any] | None, runs: int, warmup: int
) -> TargetTiming:
    """A target's network-alone and end-to-end timings, interleaved run by run."""
    if end_to_end is None:
        return TargetTiming(time_interleaved([network], runs, warmup)[0], None)
    net, e2e = time_interleaved([network, end_to_end], runs, warmup)
    return TargetTiming(net, e2e)
