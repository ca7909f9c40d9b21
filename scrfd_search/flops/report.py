"""FlopsReport: GFLOPs and parameters of a detector split into stem, C2-C5, neck and head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scrfd_search.space.search_space import DEFAULT_INPUT_SHAPE

COMPONENTS = ("stem", "c2", "c3", "c4", "c5", "neck", "head")
BACKBONE_COMPONENTS = COMPONENTS[:5]


@dataclass(frozen=True)
class FlopsReport:
    """GFLOPs (fvcore convention: one multiply-add = one FLOP) and parameters per component."""

    gflops: dict[str, float]
    params: dict[str, int]
    input_shape: tuple[int, int] = DEFAULT_INPUT_SHAPE

    @property
    def total_gflops(self) -> float:
        """GFLOPs of the whole detector."""
        return sum(self.gflops[c] for c in COMPONENTS)

    @property
    def params_m(self) -> float:
        """Parameters of the whole detector, in millions."""
        return sum(self.params[c] for c in COMPONENTS) / 1e6

    @property
    def backbone_gflops(self) -> float:
        """GFLOPs of stem plus C2-C5."""
        return sum(self.gflops[c] for c in BACKBONE_COMPONENTS)

    def backbone_shares(self) -> dict[str, float]:
        """Each backbone part's fraction of backbone GFLOPs."""
        total = self.backbone_gflops
        return {c: self.gflops[c] / total for c in BACKBONE_COMPONENTS}

    def detector_shares(self) -> dict[str, float]:
        """Backbone, neck and head fractions of the whole detector's GFLOPs."""
        total = self.total_gflops
        return {
            "backbone": self.backbone_gflops / total,
            "neck": self.gflops["neck"] / total,
            "head": self.gflops["head"] / total,
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by `flops --json` and the experiment store."""
        return {
            "total_gflops": self.total_gflops,
            "params_m": self.params_m,
            "components": {c: self.gflops[c] for c in COMPONENTS},
            "params": {c: self.params[c] for c in COMPONENTS},
            "input_shape": list(self.input_shape),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlopsReport:
        """Inverse of to_dict."""
        return cls(
            gflops={c: float(data["components"][c]) for c in COMPONENTS},
            params={c: int(data["params"][c]) for c in COMPONENTS},
            input_shape=tuple(data.get("input_shape", DEFAULT_INPUT_SHAPE)),  # type: ignore[arg-type]
        )
