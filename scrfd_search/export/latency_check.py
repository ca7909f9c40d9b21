"""`export --pareto`: each exported model's latency measured, beside what the search's latency table predicted.

The model is timed as the table was measured (its backend, device, threads, batch and input shape),
or, for a search without a table, with the `latency` command's defaults (onnxruntime, cpu, 1 thread,
batch 1) at the search's input shape: the network alone, the exported ONNX file in onnxruntime or
the same module in PyTorch, exactly as `scrfd-search latency` times an ONNX file or an ArchSpec
(the command passes that timer to the writer: scrfd_search.latency_targets). export.json keeps both
fingerprints, so a measurement taken on another machine than the table's is visible as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scrfd_search.export.selection import ExportItem
from scrfd_search.latency.measure import TargetTiming
from scrfd_search.latency.table import FINGERPRINT_KEYS, load_latency_table
from scrfd_search.search.experiment import ExperimentRecord
from scrfd_search.space.search_space import DEFAULT_INPUT_SHAPE, SearchSpace

DEFAULT_RUNS = 15
DEFAULT_WARMUP = 3


@dataclass(frozen=True)
class LatencySettings:
    """How exported models are timed, and the table whose predictions they are set against (if any)."""

    backend: str
    device: str
    threads: int
    batch: int
    input_shape: tuple[int, int]
    table_fingerprint: dict[str, Any] | None = None
    table_file: str | None = None
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP


def settings_for(record: ExperimentRecord, source: str) -> LatencySettings:
    """The search's latency table's settings, or the defaults at the search's input shape."""
    space = SearchSpace.from_dict(record.space, source) if record.space else None
    if space is None or space.latency_table is None:
        shape = space.input_shape if space is not None else (record.input_shape or DEFAULT_INPUT_SHAPE)
        return LatencySettings("onnxruntime", "cpu", 1, 1, tuple(shape))  # type: ignore[arg-type]
    fp = load_latency_table(space.latency_table).fingerprint
    shape = (int(fp["input_shape"][0]), int(fp["input_shape"][1]))
    return LatencySettings(
        str(fp["backend"]), str(fp["device"]), int(fp["threads"]), int(fp["batch"]), shape, fp, str(space.latency_table)
    )


def latency_entry(
    item: ExportItem, timing: TargetTiming, machine: dict[str, Any], settings: LatencySettings
) -> dict[str, Any]:
    """export.json's `latency` of one model: predicted ms, measured median/p10/p90, error, where measured."""
    predicted = (item.metrics or {}).get("predicted_latency_ms")
    median = timing.network.median_ms
    fp = settings.table_fingerprint
    return {
        "predicted_ms": predicted,
        "measured": {**timing.network.to_dict(), "what": "network alone"},
        "end_to_end": timing.end_to_end.to_dict() if timing.end_to_end is not None else None,
        "error_pct": None if predicted is None else 100.0 * (predicted - median) / median,
        "machine": machine,
        "table": settings.table_file,
        "table_fingerprint": fp,
        "same_machine_as_table": None if fp is None else all(machine.get(k) == fp.get(k) for k in FINGERPRINT_KEYS),
    }


def latency_text(latency: dict[str, Any]) -> str:
    """One line for the console: measured median (p10-p90) against the prediction."""
    m = latency["measured"]
    machine = latency["machine"]
    text = (
        f"latency {m['median_ms']:.2f} ms measured (p10 {m['p10_ms']:.2f}, p90 {m['p90_ms']:.2f}; "
        f"{machine['backend']}, {machine['device']}, {machine['threads']} thread(s))"
    )
    if latency["predicted_ms"] is not None:
        text += f", {latency['predicted_ms']:.2f} ms predicted ({latency['error_pct']:+.1f}%)"
    if latency["same_machine_as_table"] is False:
        text += "; measured on another machine than the table's"
    return text
