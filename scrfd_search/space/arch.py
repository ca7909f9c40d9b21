"""ArchSpec: one SCRFD-style detector (backbone, PAFPN neck, head) as a small validated value."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from scrfd_search.errors import UserError
from scrfd_search.io_utils import parse_json_text, read_json_file

BLOCK_TYPES = ("depthwise", "basic", "bottleneck")
NORM_TYPES = ("gn", "bn")
MAX_DEPTH = 24
MAX_WIDTH = 512
WIDTH_STEP = 8
MAX_HEAD_CONVS = 8
BOTTLENECK_EXPANSION = 4
STAGE_NAMES = ("c2", "c3", "c4", "c5")


class ArchSpecError(UserError, ValueError):
    """An ArchSpec field holds a value outside what the detector can be built with."""


def _check_width(field: str, value: int) -> None:
    """Reject a channel count that is not a positive multiple of 8 up to 512."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArchSpecError(f"{field}: expected an integer, got {value!r}")
    if value < WIDTH_STEP or value > MAX_WIDTH or value % WIDTH_STEP:
        raise ArchSpecError(
            f"{field}: {value} is not allowed (expected a multiple of {WIDTH_STEP} in {WIDTH_STEP}..{MAX_WIDTH})"
        )


def _check_int_range(field: str, value: int, low: int, high: int) -> None:
    """Reject a value that is not an integer in [low, high]."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArchSpecError(f"{field}: expected an integer, got {value!r}")
    if not low <= value <= high:
        raise ArchSpecError(f"{field}: {value} is out of range (expected {low}..{high})")


@dataclass(frozen=True)
class StageSpec:
    """One backbone stage: number of blocks and block width (inner width for bottlenecks)."""

    depth: int
    width: int


@dataclass(frozen=True)
class NeckSpec:
    """The PAFPN neck over C3-C5: its output channels."""

    channels: int


@dataclass(frozen=True)
class HeadSpec:
    """The detection head: a tower of 3x3 convs per level feeding class, box (and keypoint) outputs.

    `box_scale`: a learnable scalar per stride multiplies the box distances. It is the reference's
    `scale_mode` resolved: scale_mode 0 has none, 2 has one, 1 has one only with a shared head.
    """

    num_convs: int
    width: int
    norm: str = "gn"
    gn_groups: int = 16
    shared: bool = True
    depthwise: bool = False
    keypoints: bool = False
    box_scale: bool = True


@dataclass(frozen=True)
class ArchSpec:
    """A whole detector: block type, stem width, four stages, neck and head. Validated on creation."""

    block: str
    stem_width: int
    stages: tuple[StageSpec, StageSpec, StageSpec, StageSpec]
    neck: NeckSpec
    head: HeadSpec

    def __post_init__(self) -> None:
        """Validate every field, naming the first one that is wrong."""
        if self.block not in BLOCK_TYPES:
            raise ArchSpecError(f"block: {self.block!r} is not one of {', '.join(BLOCK_TYPES)}")
        _check_width("stem_width", self.stem_width)
        if not isinstance(self.stages, tuple) or len(self.stages) != 4:
            raise ArchSpecError(f"stages: expected 4 stages, got {self.stages!r}")
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, StageSpec):
                raise ArchSpecError(f"stages[{i}]: expected a StageSpec, got {stage!r}")
            _check_int_range(f"stages[{i}].depth", stage.depth, 1, MAX_DEPTH)
            _check_width(f"stages[{i}].width", stage.width)
        for i in range(1, 4):
            if self.stages[i].width < self.stages[i - 1].width:
                raise ArchSpecError(
                    f"stages[{i}].width: {self.stages[i].width} is below stages[{i - 1}].width "
                    f"{self.stages[i - 1].width} (widths must not decrease from stage to stage)"
                )
        _check_width("neck.channels", self.neck.channels)
        head = self.head
        _check_int_range("head.num_convs", head.num_convs, 0, MAX_HEAD_CONVS)
        _check_width("head.width", head.width)
        if head.norm not in NORM_TYPES:
            raise ArchSpecError(f"head.norm: {head.norm!r} is not one of {', '.join(NORM_TYPES)}")
        if head.norm == "gn":
            _check_int_range("head.gn_groups", head.gn_groups, 1, head.width)
            if head.width % head.gn_groups:
                raise ArchSpecError(f"head.gn_groups: {head.gn_groups} does not divide head.width {head.width}")
        for flag in ("shared", "depthwise", "keypoints", "box_scale"):
            if not isinstance(getattr(head, flag), bool):
                raise ArchSpecError(f"head.{flag}: expected true or false, got {getattr(head, flag)!r}")

    @property
    def stage_out_channels(self) -> tuple[int, int, int, int]:
        """Output channels of C2..C5 (bottleneck stages expand their inner width by 4)."""
        factor = BOTTLENECK_EXPANSION if self.block == "bottleneck" else 1
        return tuple(s.width * factor for s in self.stages)  # type: ignore[return-value]

    @property
    def depths(self) -> tuple[int, int, int, int]:
        """Number of blocks in C2..C5."""
        return tuple(s.depth for s in self.stages)  # type: ignore[return-value]

    @property
    def widths(self) -> tuple[int, int, int, int]:
        """Block widths of C2..C5 (inner width for bottlenecks)."""
        return tuple(s.width for s in self.stages)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (stages as a list), the JSON form."""
        out = asdict(self)
        out["stages"] = [dict(s) for s in out["stages"]]
        return out

    def to_json(self) -> str:
        """Canonical JSON text: indented, keys sorted, newline-terminated."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def key(self) -> str:
        """Compact canonical string, equal for equal architectures (for de-duplication)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any, source: str = "ArchSpec") -> ArchSpec:
        """Build from a plain dict, naming the source and the key on any problem."""
        if not isinstance(data, dict):
            raise ArchSpecError(f"{source}: expected an object, got {type(data).__name__}")
        _reject_unknown(data, {f.name for f in fields(cls)}, source, "")
        missing = [k for k in ("block", "stem_width", "stages", "neck", "head") if k not in data]
        if missing:
            raise ArchSpecError(f"{source}: missing key {missing[0]!r}")
        stages_raw = data["stages"]
        if not isinstance(stages_raw, list | tuple) or len(stages_raw) != 4:
            raise ArchSpecError(f"{source}: stages: expected a list of 4 stages")
        stages = tuple(_sub(StageSpec, s, source, f"stages[{i}].") for i, s in enumerate(stages_raw))
        try:
            return cls(
                block=data["block"],
                stem_width=data["stem_width"],
                stages=stages,  # type: ignore[arg-type]
                neck=_sub(NeckSpec, data["neck"], source, "neck."),
                head=_sub(HeadSpec, data["head"], source, "head."),
            )
        except ArchSpecError as exc:
            raise ArchSpecError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "ArchSpec") -> ArchSpec:
        """Parse canonical (or any equivalent) JSON text."""
        return cls.from_dict(parse_json_text(text, source, "an ArchSpec", ArchSpecError), source)

    @classmethod
    def load(cls, path: str | Path) -> ArchSpec:
        """Read an ArchSpec JSON file, or the `arch` of a trained run's candidate.json."""
        data = read_json_file(path, "an ArchSpec JSON file", ArchSpecError)
        if isinstance(data, dict) and isinstance(data.get("arch"), dict):  # a run's candidate.json
            return cls.from_dict(data["arch"], f"{path}: arch")
        return cls.from_dict(data, str(path))


def _reject_unknown(data: dict, allowed: set[str], source: str, prefix: str) -> None:
    """Fail on the first key that the dataclass does not have."""
    for key in data:
        if key not in allowed:
            raise ArchSpecError(f"{source}: unknown key {prefix}{key!r} (expected {', '.join(sorted(allowed))})")


def _sub(kind: type, data: Any, source: str, prefix: str) -> Any:
    """Build a nested part (stage, neck, head) from a dict, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ArchSpecError(f"{source}: {prefix.rstrip('.')}: expected an object, got {data!r}")
    _reject_unknown(data, {f.name for f in fields(kind)}, source, prefix)
    try:
        return kind(**data)
    except TypeError as exc:
        raise ArchSpecError(f"{source}: {prefix.rstrip('.')}: {exc}") from None
