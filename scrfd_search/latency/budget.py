"""A search space's latency ceiling (max_latency_ms, latency_table), as the samplers apply it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.latency.measure import machine_fingerprint
from scrfd_search.latency.table import LatencyTable, check_fingerprint, load_latency_table
from scrfd_search.space.arch import ArchSpec
from scrfd_search.space.search_space import SearchSpace

# What a budget's table must share with this machine: the device, the backend build, the input and batch.
BUDGET_KEYS = ("cpu", "device", "device_name", "backend", "backend_version", "batch", "input_shape")


@dataclass
class LatencyBudget:
    """A table and an optional ceiling; remembers the fastest prediction it was asked about."""

    table: LatencyTable
    max_ms: float | None
    fastest: tuple[float, ArchSpec] | None = field(default=None)

    def predict(self, arch: ArchSpec) -> float:
        """Predicted ms of arch (network alone), noting the fastest seen."""
        ms = self.table.predict_ms(arch)
        if self.fastest is None or ms < self.fastest[0]:
            self.fastest = (ms, arch)
        return ms

    def fits(self, arch: ArchSpec) -> bool:
        """Whether arch's prediction is under the ceiling (always, without one)."""
        ms = self.predict(arch)
        return self.max_ms is None or ms <= self.max_ms

    def shortfall(self) -> str:
        """The one-line account of a ceiling that too few candidates met."""
        ceiling = f"max_latency_ms {self.max_ms:g}"
        if self.fastest is None:
            return f"{ceiling}: no architecture in the FLOPs band was predicted"
        ms, arch = self.fastest
        return (
            f"{ceiling}: the fastest prediction seen was {ms:.2f} ms ({arch.block}, stem {arch.stem_width}, "
            f"depths {','.join(map(str, arch.depths))}, widths {','.join(map(str, arch.widths))}); "
            f"raise the ceiling or lower the FLOPs budget"
        )


def expected_fingerprint(table: LatencyTable, input_shape: tuple[int, int]) -> dict[str, Any]:
    """This machine's fingerprint for the table's backend, device, threads and batch, at input_shape."""
    fp = table.fingerprint
    try:
        here = machine_fingerprint(fp["backend"], fp["device"], int(fp["threads"]), int(fp["batch"]), input_shape)
    except UserError:  # e.g. a GPU table on a machine without a GPU: report it as a mismatch, below
        here = {**fp, "device_name": "none visible here", "input_shape": list(input_shape)}
    return {k: here[k] for k in BUDGET_KEYS} | {"batch": 1}


def space_latency(space: SearchSpace) -> LatencyBudget | None:
    """The space's table (checked against this machine and the space's input shape) and ceiling, if any."""
    if space.latency_table is None:
        return None
    table = load_latency_table(space.latency_table)
    check_fingerprint(table, expected_fingerprint(table, space.input_shape), f"{space.source}: latency_table")
    return LatencyBudget(table, space.max_latency_ms)
