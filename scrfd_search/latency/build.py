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

from scrfd_search.errors import UserError
from scrfd_search.latency.blocks import grid_axes
from scrfd_search.latency.measure import Timing, interleaved_samples, machine_fingerprint
from scrfd_search.latency.modules import Prepared, prepare_part
from scrfd_search.latency.table import Correction, Grid, LatencyTable
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import SearchSpace

CHUNK = 8  # parts whose sessions are alive (and interleaved) at once
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
) -> dict[str, Grid]:
    """Every part the spaces can produce, measured on a grid of `grid_points` values per channel axis."""
    axes = grid_axes(spaces, grid_points)
    points = [(kind, coords) for kind, kind_axes in axes.items() for coords in itertools.product(*kind_axes)]
    prepared = []
    for i, (kind, coords) in enumerate(points):
        if progress is not None:
            progress(f"preparing part {i + 1}/{len(points)}: {kind} {coords}")
        prepared.append(prepare_part(kind, coords, **settings))
    if progress is not None:
        progress(f"timing {len(points)} parts: {runs} runs each over {passes} pass(es)")
    timings = iter(time_prepared(prepared, runs, warmup, passes))
    grids = {}
    for kind, kind_axes in axes.items():
        count = 1
        for axis in kind_axes:
            count *= len(axis)
        grids[kind] = Grid(kind_axes, tuple(next(timings).median_ms for _ in range(count)))
    return grids


def fit_correction(
    table: LatencyTable, archs: Sequence[ArchSpec], measured_ms: Sequence[float]
) -> tuple[dict[str, Correction], tuple[dict[str, Any], ...]]:
    """Per block type, measured = scale * summed + offset by Theil-Sen (robust to a few noisy runs)."""
    from scipy.stats import theilslopes  # deferred: heavy

    rows = []
    for arch, ms in zip(archs, measured_ms, strict=True):
        summed = sum(table.summed_components(arch).values())
        rows.append({"arch": arch.to_dict(), "block": arch.block, "summed_ms": summed, "measured_ms": ms})
    correction = {}
    for block in sorted({r["block"] for r in rows}):
        xs = [r["summed_ms"] for r in rows if r["block"] == block]
        ys = [r["measured_ms"] for r in rows if r["block"] == block]
        if len(set(xs)) < 2:  # one model fixes no slope: keep the scale, fit the offset
            correction[block] = Correction(1.0, sum(ys) / len(ys) - sum(xs) / len(xs))
            continue
        slope, intercept, _, _ = theilslopes(ys, xs)
        correction[block] = Correction(float(slope), float(intercept))
    fitted = tuple({**r, "predicted_ms": correction[r["block"]].apply(r["summed_ms"])} for r in rows)
    return correction, fitted


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
    settings = {
        "backend": backend,
        "device": device,
        "threads": threads,
        "batch": batch,
        "input_shape": tuple(input_shape),
    }
    grids = measure_grids(spaces, settings, grid_points, runs, warmup, passes, progress)
    meta = {
        "spaces": [s.name for s in spaces],
        "space_input_shapes": sorted(list(s) for s in shapes),
        "grid_points": grid_points,
        "runs": runs,
        "warmup": warmup,
        "passes": passes,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    table = LatencyTable(fingerprint, grids, meta=meta)
    if fit_archs and time_whole is not None:
        if progress is not None:
            progress(f"timing {len(fit_archs)} whole detectors for the correction")
        correction, fitted = fit_correction(table, fit_archs, time_whole(fit_archs))
        table = replace(table, correction=correction, fit=fitted)
    return replace(table, meta={**meta, "build_seconds": round(time.time() - started, 1)})
