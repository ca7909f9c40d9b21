"""LatencyTable: per-block latencies measured on one device, and the prediction of a whole detector.

A detector's predicted latency (network alone, at the table's input shape and batch) is the sum of
its parts' interpolated latencies (see blocks.py), times a scale plus an offset fitted per block type
on whole detectors measured on the same device: what a sum of isolated blocks misses (the runtime's
per-call overhead counted once per block, memory traffic between blocks, fusions across them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scrfd_search.errors import UserError
from scrfd_search.flops.report import COMPONENTS
from scrfd_search.latency.blocks import Part, arch_parts
from scrfd_search.space.arch import ArchSpec

TABLE_FORMAT = "scrfd-search latency table"
TABLE_VERSION = 1
FINGERPRINT_KEYS = ("cpu", "device", "device_name", "backend", "backend_version", "threads", "batch", "input_shape")


@dataclass(frozen=True)
class Grid:
    """One kind's measured latencies: axes (one or two tuples of channel counts) and ms per grid point."""

    axes: tuple[tuple[int, ...], ...]
    ms: tuple[float, ...]  # row-major over the axes

    def covers(self, coords: tuple[int, ...]) -> bool:
        """Whether coords lie inside the measured range of every axis."""
        return all(axis[0] <= c <= axis[-1] for axis, c in zip(self.axes, coords, strict=True))

    def at(self, coords: tuple[int, ...]) -> float:
        """Linear (one axis) or bilinear (two axes) interpolation of the measured ms at coords."""
        if len(self.axes) == 1:
            return float(np.interp(coords[0], self.axes[0], self.ms))
        xs, ys = self.axes
        rows = np.asarray(self.ms).reshape(len(xs), len(ys))
        along_y = [np.interp(coords[1], ys, row) for row in rows]
        return float(np.interp(coords[0], xs, along_y))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"axes": [list(a) for a in self.axes], "ms": list(self.ms)}


@dataclass(frozen=True)
class Correction:
    """measured ms = scale * (sum of parts) + offset_ms, fitted on whole detectors of one block type."""

    scale: float = 1.0
    offset_ms: float = 0.0

    def apply(self, summed_ms: float) -> float:
        """The corrected whole-detector latency."""
        return self.scale * summed_ms + self.offset_ms


@dataclass(frozen=True)
class LatencyTable:
    """Per-block latencies on one device (fingerprint), with a whole-model correction per block type."""

    fingerprint: dict[str, Any]
    grids: dict[str, Grid]
    correction: dict[str, Correction] = field(default_factory=dict)
    fit: tuple[dict[str, Any], ...] = ()  # the whole detectors the correction was fitted on
    meta: dict[str, Any] = field(default_factory=dict)  # spaces, runs, grid points, build time
    source: str = "<table>"
    # part -> ms, filled as parts are predicted (samplers predict the same backbone parts many times)
    _cache: dict[Part, float] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def input_shape(self) -> tuple[int, int]:
        """(H, W) the table was measured at."""
        return tuple(self.fingerprint["input_shape"])  # type: ignore[return-value]

    @property
    def batch(self) -> int:
        """Batch size the table was measured at."""
        return int(self.fingerprint["batch"])

    def part_ms(self, part: Part) -> float:
        """One part's latency (all its repeats), interpolated from its kind's grid."""
        cached = self._cache.get(part)
        if cached is not None:
            return cached
        grid = self.grids.get(part.kind)
        if grid is None:
            spaces = ", ".join(self.meta.get("spaces", [])) or "?"
            raise UserError(
                f"{self.source}: has no {part.kind} blocks (measured for {spaces}); "
                f"build a table for a space that holds this architecture"
            )
        if not grid.covers(part.coords):
            ranges = " x ".join(f"{a[0]}..{a[-1]}" for a in grid.axes)
            raise UserError(
                f"{self.source}: {part.kind} {tuple(part.coords)} is outside the measured range {ranges}; "
                f"build a table for a space that holds this architecture"
            )
        ms = self._cache[part] = part.count * grid.at(part.coords)
        return ms

    def summed_components(self, arch: ArchSpec) -> dict[str, float]:
        """Sum of the isolated parts' ms per component, before the correction."""
        return {name: sum(self.part_ms(p) for p in parts) for name, parts in arch_parts(arch).items()}

    def floor_ms(self, arch: ArchSpec) -> float:
        """A lower bound of the prediction of any detector with arch's parts at arch's depths or more.

        Each part counts at its kind's smallest measured value (interpolation never goes below it),
        so this holds however noisy the measurements were.
        """
        summed = sum(
            part.count * min(self.grids[part.kind].ms) if part.kind in self.grids else 0.0
            for parts in arch_parts(arch).values()
            for part in parts
        )
        return self.correction.get(arch.block, Correction()).apply(summed)

    def predict_components(self, arch: ArchSpec) -> dict[str, float]:
        """Predicted ms by component (stem, c2..c5, neck, head); they add up to predict_ms.

        The correction's offset is spread over the components in proportion to their summed ms.
        """
        raw = self.summed_components(arch)
        total = sum(raw.values())
        corrected = self.correction.get(arch.block, Correction()).apply(total)
        factor = corrected / total if total > 0 else 1.0
        return {name: raw[name] * factor for name in COMPONENTS}

    def predict_ms(self, arch: ArchSpec) -> float:
        """Predicted ms of the whole detector (network alone) at the table's input shape and batch."""
        raw = sum(self.summed_components(arch).values())
        return self.correction.get(arch.block, Correction()).apply(raw)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form that load_latency_table reads."""
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "fingerprint": self.fingerprint,
            "grids": {kind: grid.to_dict() for kind, grid in sorted(self.grids.items())},
            "correction": {b: {"scale": c.scale, "offset_ms": c.offset_ms} for b, c in sorted(self.correction.items())},
            "fit": list(self.fit),
            "meta": self.meta,
        }


def describe_fingerprint(fingerprint: dict[str, Any]) -> str:
    """One line: device, backend and version, threads, batch, input shape."""
    shape = fingerprint.get("input_shape") or ["?", "?"]
    return (
        f"{fingerprint.get('device_name', '?')} ({fingerprint.get('device', '?')}), "
        f"{fingerprint.get('backend', '?')} {fingerprint.get('backend_version', '?')}, "
        f"{fingerprint.get('threads', '?')} thread(s), batch {fingerprint.get('batch', '?')}, "
        f"{shape[0]}x{shape[1]}"
    )


def check_fingerprint(table: LatencyTable, expected: dict[str, Any], where: str) -> None:
    """Refuse a table measured elsewhere: every key of expected must equal the table's, naming both."""
    differ = [k for k, v in expected.items() if _plain(table.fingerprint.get(k)) != _plain(v)]
    if differ:
        details = ", ".join(f"{k} {table.fingerprint.get(k)!r} vs {expected[k]!r}" for k in differ)
        raise UserError(
            f"{where}: {table.source} was measured on {describe_fingerprint(table.fingerprint)}, not on "
            f"{describe_fingerprint({**table.fingerprint, **expected})} ({details}); measure one here with "
            f"`scrfd-search latency-table`"
        )


def _plain(value: Any) -> Any:
    """Tuples as lists, so a fingerprint compares equal before and after JSON."""
    return list(value) if isinstance(value, tuple) else value


def load_latency_table(path: Path) -> LatencyTable:
    """Read a table written by `scrfd-search latency-table`; a one-line UserError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such latency table (write one with `scrfd-search latency-table`)")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise UserError(f"{path}: not a latency table (not JSON; `scrfd-search latency-table` writes one)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        raise UserError(f'{path}: not a latency table (no "format": "{TABLE_FORMAT}")')
    if data.get("version") != TABLE_VERSION:
        raise UserError(f"{path}: latency table version {data.get('version')!r}; this release reads {TABLE_VERSION}")
    try:
        return _table_from(data, str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not a valid latency table ({type(exc).__name__}: {exc})") from None


def _table_from(data: dict[str, Any], source: str) -> LatencyTable:
    """Build the table from its JSON form (KeyError/TypeError/ValueError on a malformed one)."""
    fingerprint = dict(data["fingerprint"])
    missing = [k for k in FINGERPRINT_KEYS if k not in fingerprint]
    if missing:
        raise ValueError(f"fingerprint lacks {missing[0]!r}")
    grids = {}
    for kind, raw in data["grids"].items():
        axes = tuple(tuple(int(v) for v in axis) for axis in raw["axes"])
        ms = tuple(float(v) for v in raw["ms"])
        if not 1 <= len(axes) <= 2 or int(np.prod([len(a) for a in axes])) != len(ms):
            raise ValueError(f"grid {kind}: {len(ms)} values for axes of {[len(a) for a in axes]} points")
        if any(list(a) != sorted(set(a)) for a in axes):
            raise ValueError(f"grid {kind}: axes must be ascending")
        grids[str(kind)] = Grid(axes, ms)
    correction = {
        str(b): Correction(float(c["scale"]), float(c["offset_ms"])) for b, c in data.get("correction", {}).items()
    }
    return LatencyTable(fingerprint, grids, correction, tuple(data.get("fit", ())), dict(data.get("meta", {})), source)
