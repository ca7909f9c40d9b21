"""Measuring a latency table for search spaces, and fitting what the sum of its blocks misses.

Parts are timed in chunks (a few sessions alive at a time, so memory stays small), one run of each
per round inside a chunk, and the whole sweep is repeated `passes` times: a burst of load from
another process then spreads over many parts and rounds instead of biasing one part. Each grid
point keeps the median of all its runs.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from scrfd_search.errors import UserError
from scrfd_search.latency.blocks import grid_axes
from scrfd_search.latency.measure import Timing, interleaved_samples, load_warning, machine_fingerprint
from scrfd_search.latency.modules import Prepared, overhead_module, prepare_module, prepare_part
from scrfd_search.latency.table import Correction, Grid, LatencyTable
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import SearchSpace

CHUNK = 8  # parts whose sessions are alive (and interleaved) at once
MIN_LINE_FIT = 4  # fit models needed for a scale and an offset (fewer: a scale alone)
ProgressFn = Callable[[str], None]
# Times whole detectors (network alone), interleaved, the way `scrfd-search latency` does: median ms each.
WholeTimer = Callable[[Sequence[ArchSpec]], list[float]]


def time_prepared(prepared: Sequence[Prepared], runs: int, warmup: int, passes: int) -> list[Timing]:
    """Time each prepared target `runs` times in all, split over `passes` sweeps of chunks of CHUNK."""
    per_pass = [runs // passes + (1 if p < runs % passes else 0) for p in range(passes)]
    samples: list[list[float]] = [[] for _ in prepared]
    for count in per_pass:
        if count == 0:
            continue
        for start in range(0, len(prepared), CHUNK):
            chunk = range(start, min(start + CHUNK, len(prepared)))
            runners = [prepared[i].runner() for i in chunk]
            for i, timing in zip(chunk, interleaved_samples(runners, count, warmup), strict=True):
                samples[i] += timing
            del runners
    return [Timing.of(s) for s in samples]


def measure_grids(
    spaces: Sequence[SearchSpace],
    settings: dict[str, Any],
    grid_points: int,
    runs: int,
    warmup: int,
    passes: int,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Grid], float]:
    """Every part the spaces can produce, measured on a grid (see grid_axes), and a run's fixed cost in ms."""
    axes = grid_axes(spaces, grid_points)
    points = [(kind, coords) for kind, kind_axes in axes.items() for coords in itertools.product(*kind_axes)]
    prepared = [prepare_module(*overhead_module(), **{k: settings[k] for k in ("backend", "device", "threads")})]
    for i, (kind, coords) in enumerate(points):
        if progress is not None:
            progress(f"preparing part {i + 1}/{len(points)}: {kind} {coords}")
        prepared.append(prepare_part(kind, coords, **settings))
    if progress is not None:
        progress(f"timing {len(points)} parts: {runs} runs each over {passes} pass(es)")
    timings = iter(time_prepared(prepared, runs, warmup, passes))
    # A detector pays a run's fixed cost once, not once per part: each part is stored without it.
    overhead = next(timings).median_ms
    grids = {}
    for kind, kind_axes in axes.items():
        count = 1
        for axis in kind_axes:
            count *= len(axis)
        grids[kind] = Grid(kind_axes, tuple(max(next(timings).median_ms - overhead, 0.0) for _ in range(count)))
    return grids, overhead


def fit_correction(
    table: LatencyTable, archs: Sequence[ArchSpec], measured_ms: Sequence[float]
) -> tuple[dict[str, Correction], tuple[dict[str, Any], ...]]:
    """Per block type, measured = scale * summed + offset (see _fit), and each fit model's row."""
    rows = []
    for arch, ms in zip(archs, measured_ms, strict=True):
        summed = sum(table.summed_components(arch).values())
        rows.append({"arch": arch.to_dict(), "block": arch.block, "summed_ms": summed, "measured_ms": ms})
    correction = {block: _fit([r for r in rows if r["block"] == block]) for block in sorted({r["block"] for r in rows})}
    fitted = tuple({**r, "predicted_ms": correction[r["block"]].apply(r["summed_ms"])} for r in rows)
    return correction, fitted


def _fit(rows: list[dict[str, Any]]) -> Correction:
    """Theil-Sen scale and offset (robust to a few noisy runs) from MIN_LINE_FIT models on, else a scale alone.

    A line is kept only while its offset takes at most half of the smallest fit model's scaled sum:
    a steeper line through noisy points would predict nonsense (even below zero) for small detectors.
    """
    from scipy.stats import theilslopes  # deferred: heavy

    xs = [r["summed_ms"] for r in rows]
    ys = [r["measured_ms"] for r in rows]
    ratio = Correction(float(np.median([y / x for x, y in zip(xs, ys, strict=True) if x > 0] or [1.0])), 0.0)
    if len(set(xs)) < MIN_LINE_FIT:
        return ratio
    slope, intercept, _, _ = theilslopes(ys, xs)
    if slope <= 0 or intercept < -0.5 * slope * min(xs):
        return ratio
    return Correction(float(slope), float(intercept))


def build_table(
    spaces: Sequence[SearchSpace],
    backend: str,
    device: str,
    threads: int,
    batch: int,
    input_shape: tuple[int, int],
    *,
    grid_points: int = 5,
    runs: int = 20,
    warmup: int = 2,
    passes: int = 2,
    fit_archs: Sequence[ArchSpec] = (),
    time_whole: WholeTimer | None = None,
    progress: ProgressFn | None = None,
) -> LatencyTable:
    """Measure the spaces' parts on this machine and fit the correction on fit_archs timed by time_whole."""
    if grid_points < 2:
        raise UserError(f"--grid-points: {grid_points} must be at least 2")
    if passes < 1 or passes > runs:
        raise UserError(f"--passes: {passes} must be between 1 and --runs ({runs})")
    shapes = {tuple(s.input_shape) for s in spaces}
    started = time.time()
    fingerprint = machine_fingerprint(backend, device, threads, batch, input_shape)
    busy_before = load_warning()
    settings = {
        "backend": backend,
        "device": device,
        "threads": threads,
        "batch": batch,
        "input_shape": tuple(input_shape),
    }
    fit_ms: list[float] = []
    if fit_archs and time_whole is not None:
        # Timed first, in the state a fresh `latency` process times a detector in: measured after the hundreds
        # of parts (their ONNX bytes and inputs held), the same detectors ran 9-15 % slower on onnxruntime, and
        # the correction fitted on them overpredicted every candidate by about 12 % (0.5 GF, 1 thread).
        if progress is not None:
            progress(f"timing {len(fit_archs)} whole detectors for the correction")
        fit_ms = time_whole(fit_archs)
    grids, overhead = measure_grids(spaces, settings, grid_points, runs, warmup, passes, progress)
    meta = {
        "spaces": [s.name for s in spaces],
        "space_input_shapes": sorted(list(s) for s in shapes),
        "grid_points": grid_points,
        "runs": runs,
        "warmup": warmup,
        "passes": passes,
        "run_overhead_ms": overhead,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    table = LatencyTable(fingerprint, grids, meta=meta)
    if fit_ms:
        correction, fitted = fit_correction(table, fit_archs, fit_ms)
        table = replace(table, correction=correction, fit=fitted)
    busy = load_warning() or busy_before
    if busy and progress is not None:
        progress(busy)
    return replace(table, meta={**meta, "build_seconds": round(time.time() - started, 1), "load_warning": busy})
