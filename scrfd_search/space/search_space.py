"""SearchSpace: a YAML description of which detectors may be sampled, and under which budget."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from scrfd_search.errors import UserError
from scrfd_search.io_utils import read_yaml_file
from scrfd_search.recipe import RecipeSpace
from scrfd_search.space.arch import (
    BLOCK_TYPES,
    MAX_DEPTH,
    MAX_HEAD_CONVS,
    MAX_WIDTH,
    NORM_TYPES,
    WIDTH_STEP,
    ArchSpec,
    HeadSpec,
    NeckSpec,
    StageSpec,
)

DEFAULT_INPUT_SHAPE = (480, 640)  # (H, W) at which FLOPs are counted, as in the paper


class SpaceError(UserError, ValueError):
    """A search space file that cannot be used."""


@dataclass(frozen=True)
class IntRange:
    """Integers min..max (inclusive) in steps of step; min == max is a fixed value."""

    min: int
    max: int
    step: int = 1

    def values(self) -> list[int]:
        """Every allowed value, ascending."""
        return list(range(self.min, self.max + 1, self.step))

    def draw(self, rng: np.random.Generator) -> int:
        """One value, uniformly."""
        return self.min + self.step * int(rng.integers(0, (self.max - self.min) // self.step + 1))

    @property
    def fixed(self) -> bool:
        """Whether the range holds a single value."""
        return self.min == self.max


class Backbone(NamedTuple):
    """The backbone part of a draw: stem width, depths and widths of C2..C5."""

    stem: int
    depths: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]


class NeckHead(NamedTuple):
    """The neck and head part of a draw."""

    neck_channels: int
    head_num_convs: int
    head_width: int


@dataclass(frozen=True)
class SearchSpace:
    """Ranges for every ArchSpec field plus the budget that candidates must meet."""

    name: str
    step: int
    block: str
    budget_gflops: float | None  # None: no FLOPs band, only a latency ceiling (max_latency_ms)
    tolerance: float
    input_shape: tuple[int, int]
    stem_width: IntRange
    depth: tuple[IntRange, IntRange, IntRange, IntRange]
    width: tuple[IntRange, IntRange, IntRange, IntRange]
    neck_channels: IntRange
    head_num_convs: IntRange
    head_width: IntRange
    head_norm: str = "gn"
    head_gn_groups: int = 16
    head_shared: bool = True
    head_depthwise: bool = False
    keypoints: bool = False
    source: str = "<space>"
    recipe: RecipeSpace | None = None  # the optional `recipe:` section, sampled jointly with the architecture
    max_latency_ms: float | None = None  # a latency ceiling, predicted with latency_table (see docs/latency.md)
    latency_table: Path | None = None  # a table from `scrfd-search latency-table`, resolved beside the YAML

    def budget_range(self, budget_gflops: float | None = None) -> tuple[float, float]:
        """(low, high) GFLOPs accepted: the budget plus or minus the tolerance; (0, inf) without a budget."""
        budget = self.budget_gflops if budget_gflops is None else budget_gflops
        if budget is None:
            return 0.0, math.inf
        return budget * (1 - self.tolerance), budget * (1 + self.tolerance)

    def sample_backbone(self, rng: np.random.Generator) -> Backbone:
        """Draw stem width, depths and widths uniformly (widths sorted so they never decrease)."""
        stem = self.stem_width.draw(rng)
        depths = tuple(r.draw(rng) for r in self.depth)
        widths = tuple(sorted(r.draw(rng) for r in self.width))
        return Backbone(stem, depths, widths)  # type: ignore[arg-type]

    def neck_head_options(self) -> list[NeckHead]:
        """Every (neck channels, head convs, head width) the space allows, by neck, then convs, then width."""
        return [
            NeckHead(neck, convs, width)
            for neck in self.neck_channels.values()
            for convs in self.head_num_convs.values()
            for width in self.head_width.values()
        ]

    def sample_arch(self, rng: np.random.Generator) -> ArchSpec:
        """Draw one architecture uniformly from the ranges (ignores the budget)."""
        backbone = self.sample_backbone(rng)
        options = self.neck_head_options()
        return self.build(backbone, options[int(rng.integers(len(options)))])

    def build(self, backbone: Backbone, neck_head: NeckHead) -> ArchSpec:
        """The ArchSpec of a backbone and a neck/head setting, with the space's fixed head settings."""
        return self._arch(backbone.stem, list(backbone.depths), list(backbone.widths), *neck_head)

    def with_neck_head(self, arch: ArchSpec, neck_head: NeckHead) -> ArchSpec:
        """arch with another neck width and head depth/width (backbone and fixed head settings unchanged)."""
        return replace(
            arch,
            neck=NeckSpec(neck_head.neck_channels),
            head=replace(arch.head, num_convs=neck_head.head_num_convs, width=neck_head.head_width),
        )

    def suggest_arch(self, trial: Any) -> ArchSpec:
        """Ask an Optuna trial (define-by-run) for an architecture over the same ranges."""

        def suggest(name: str, r: IntRange) -> int:
            return r.min if r.fixed else trial.suggest_int(name, r.min, r.max, step=r.step)

        stem = suggest("stem_width", self.stem_width)
        depths = [suggest(f"depth_{i + 2}", r) for i, r in enumerate(self.depth)]
        widths = sorted(suggest(f"width_{i + 2}", r) for i, r in enumerate(self.width))
        neck = suggest("neck_channels", self.neck_channels)
        num_convs = suggest("head_num_convs", self.head_num_convs)
        head_width = suggest("head_width", self.head_width)
        return self._arch(stem, depths, widths, neck, num_convs, head_width)

    def extreme_archs(self) -> tuple[ArchSpec, ArchSpec]:
        """The cheapest and the most expensive architectures of the space (FLOPs grow with every range)."""
        low = self._arch(
            self.stem_width.min,
            [r.min for r in self.depth],
            sorted(r.min for r in self.width),
            self.neck_channels.min,
            self.head_num_convs.min,
            self.head_width.min,
        )
        high = self._arch(
            self.stem_width.max,
            [r.max for r in self.depth],
            sorted(r.max for r in self.width),
            self.neck_channels.max,
            self.head_num_convs.max,
            self.head_width.max,
        )
        return low, high

    def _arch(
        self, stem: int, depths: list[int], widths: list[int], neck: int, num_convs: int, head_width: int
    ) -> ArchSpec:
        """Assemble an ArchSpec from drawn values and the space's fixed settings."""
        return ArchSpec(
            block=self.block,
            stem_width=stem,
            stages=tuple(StageSpec(d, w) for d, w in zip(depths, widths, strict=True)),  # type: ignore[arg-type]
            neck=NeckSpec(neck),
            head=HeadSpec(
                num_convs=num_convs,
                width=head_width,
                norm=self.head_norm,
                gn_groups=self.head_gn_groups,
                shared=self.head_shared,
                depthwise=self.head_depthwise,
                keypoints=self.keypoints,
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (what `load` reads), for storing beside an experiment."""
        return {
            "name": self.name,
            "step": self.step,
            "block": self.block,
            **({"budget_gflops": self.budget_gflops} if self.budget_gflops is not None else {}),
            "tolerance": self.tolerance,
            "input_shape": list(self.input_shape),
            "stem_width": _range_dict(self.stem_width),
            "stages": [
                {"depth": _range_dict(d), "width": _range_dict(w)} for d, w in zip(self.depth, self.width, strict=True)
            ],
            "neck": {"channels": _range_dict(self.neck_channels)},
            "head": {
                "num_convs": _range_dict(self.head_num_convs),
                "width": _range_dict(self.head_width),
                "norm": self.head_norm,
                "gn_groups": self.head_gn_groups,
                "shared": self.head_shared,
                "depthwise": self.head_depthwise,
                "keypoints": self.keypoints,
            },
            **({"recipe": self.recipe.to_dict()} if self.recipe is not None else {}),
            **({"max_latency_ms": self.max_latency_ms} if self.max_latency_ms is not None else {}),
            **({"latency_table": str(self.latency_table)} if self.latency_table is not None else {}),
        }

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        """Read and validate a YAML search space."""
        return cls.from_dict(_read_yaml(path), str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "<space>") -> SearchSpace:
        """Validate a parsed space, naming the offending key on any problem."""
        return _SpaceParser(source).parse(data)


def _read_yaml(path: str | Path) -> Any:
    """A YAML file's contents, or a SpaceError naming the file (and line) when it cannot be read."""
    expected = "a YAML search space, see search_spaces/"
    return read_yaml_file(path, expected, SpaceError, missing="no such search space file")


def load_recipe_section(path: str | Path) -> RecipeSpace:
    """The `recipe:` section of a YAML file: a whole search space, or a file holding only the section.

    For `launch --recipe-only`, where the architecture is fixed and only the recipe is searched.
    """
    data = _read_yaml(path)
    if not isinstance(data, dict) or "recipe" not in data:
        raise SpaceError(f"{path}: no `recipe:` section (a recipe-only search needs one; see search_spaces/)")
    if set(data) - {"recipe", "name", "description"}:
        return SearchSpace.from_dict(data, str(path)).recipe  # type: ignore[return-value]
    return RecipeSpace.from_dict(data["recipe"], str(path))


def _range_dict(r: IntRange) -> Any:
    """A fixed range as its value, else {min, max, step}."""
    return r.min if r.fixed else {"min": r.min, "max": r.max, "step": r.step}


_TOP_KEYS = {
    "name",
    "step",
    "block",
    "budget_gflops",
    "tolerance",
    "input_shape",
    "stem_width",
    "depth",
    "width",
    "stages",
    "neck",
    "head",
    "description",
    "recipe",
    "max_latency_ms",
    "latency_table",
}
_HEAD_KEYS = {"num_convs", "width", "norm", "gn_groups", "shared", "depthwise", "keypoints"}


class _SpaceParser:
    """Turns a parsed YAML mapping into a SearchSpace, with one clear message per problem."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> SpaceError:
        """An error that names the file and the key (on one line, whatever characters the key holds)."""
        shown = key if key.isprintable() else repr(key)
        return SpaceError(f"{self.source}: {shown}: {' '.join(message.splitlines())}")

    def parse(self, data: Any) -> SearchSpace:
        """Validate every key and build the space."""
        if not isinstance(data, dict):
            raise SpaceError(f"{self.source}: expected a mapping of search-space keys at the top level")
        self.reject_unknown(data, _TOP_KEYS, "")
        for key in ("name", "block"):
            if key not in data:
                raise self.fail(key, "missing (required)")
        if "budget_gflops" not in data and "max_latency_ms" not in data:
            raise self.fail("budget_gflops", "missing (required unless max_latency_ms sets a latency ceiling)")
        block = data["block"]
        if block not in BLOCK_TYPES:
            raise self.fail("block", f"{block!r} is not one of {', '.join(BLOCK_TYPES)}")
        budget = self.number(data["budget_gflops"], "budget_gflops") if "budget_gflops" in data else None
        tolerance = self.number(data.get("tolerance", 0.02), "tolerance")
        if not 0 < tolerance < 1:
            raise self.fail("tolerance", f"{tolerance} must be between 0 and 1 (0.02 means +-2%)")
        step = data.get("step", 1)
        if step not in (1, 2):
            raise self.fail("step", f"{step!r} must be 1 (backbone only) or 2 (whole detector)")
        depth, width = self.stages(data)
        head = data.get("head", {})
        if not isinstance(head, dict):
            raise self.fail("head", "expected a mapping")
        self.reject_unknown(head, _HEAD_KEYS, "head.")
        neck = data.get("neck", {})
        if not isinstance(neck, dict) or set(neck) - {"channels"}:
            raise self.fail("neck", "expected a mapping with the single key 'channels'")
        norm = head.get("norm", "gn")
        if norm not in NORM_TYPES:
            raise self.fail("head.norm", f"{norm!r} is not one of {', '.join(NORM_TYPES)}")
        space = SearchSpace(
            name=str(data["name"]),
            step=step,
            block=block,
            budget_gflops=budget,
            tolerance=tolerance,
            input_shape=self.shape(data.get("input_shape", list(DEFAULT_INPUT_SHAPE))),
            stem_width=self.width_range(data.get("stem_width"), "stem_width"),
            depth=depth,
            width=width,
            neck_channels=self.width_range(neck.get("channels"), "neck.channels"),
            head_num_convs=self.int_range(head.get("num_convs"), "head.num_convs", 0, MAX_HEAD_CONVS),
            head_width=self.width_range(head.get("width"), "head.width"),
            head_norm=norm,
            head_gn_groups=self.int_range(head.get("gn_groups", 16), "head.gn_groups", 1, MAX_WIDTH).min,
            head_shared=self.flag(head.get("shared", True), "head.shared"),
            head_depthwise=self.flag(head.get("depthwise", False), "head.depthwise"),
            keypoints=self.flag(head.get("keypoints", False), "head.keypoints"),
            source=self.source,
            recipe=RecipeSpace.from_dict(data["recipe"], self.source) if "recipe" in data else None,
            **self.latency(data),
        )
        self.check_buildable(space)
        return space

    def latency(self, data: dict) -> dict[str, Any]:
        """max_latency_ms (a positive number) and latency_table (a path, relative to the YAML's folder)."""
        out: dict[str, Any] = {}
        if "max_latency_ms" in data:
            out["max_latency_ms"] = self.number(data["max_latency_ms"], "max_latency_ms")
            if "latency_table" not in data:
                raise self.fail(
                    "max_latency_ms",
                    "needs latency_table: PATH (a table from `scrfd-search latency-table` on the target device)",
                )
        if "latency_table" in data:
            raw = data["latency_table"]
            if not isinstance(raw, str) or not raw.strip():
                raise self.fail("latency_table", f"{raw!r} is not a path to a latency table")
            path = Path(raw).expanduser()
            if not path.is_absolute() and self.source != "<space>":
                path = Path(self.source).parent / path
            out["latency_table"] = path.absolute()
        return out

    def reject_unknown(self, data: dict, allowed: set[str], prefix: str) -> None:
        """Fail on the first key the format does not know."""
        for key in data:
            if key not in allowed:
                raise self.fail(f"{prefix}{key}", f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def number(self, value: Any, key: str) -> float:
        """A positive number."""
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.fail(key, f"{value!r} is not a positive number")
        return float(value)

    def flag(self, value: Any, key: str) -> bool:
        """A YAML boolean."""
        if not isinstance(value, bool):
            raise self.fail(key, f"{value!r} is not true or false")
        return value

    def shape(self, value: Any) -> tuple[int, int]:
        """[H, W] in pixels."""
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 32 for v in value)
        ):
            raise self.fail("input_shape", f"{value!r} is not [H, W] with integers >= 32")
        return int(value[0]), int(value[1])

    def int_range(self, value: Any, key: str, low: int, high: int, multiple: int = 1) -> IntRange:
        """A fixed integer or {min, max, step} inside [low, high], on multiples of `multiple`."""
        if value is None:
            raise self.fail(key, "missing (required: a number or {min, max, step})")
        if isinstance(value, dict):
            self.reject_unknown(value, {"min", "max", "step"}, f"{key}.")
            if "min" not in value or "max" not in value:
                raise self.fail(key, "a range needs both min and max")
            lo, hi, step = value["min"], value["max"], value.get("step", multiple)
        else:
            lo = hi = value
            step = multiple
        for part, v in (("min", lo), ("max", hi), ("step", step)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(f"{key}.{part}" if isinstance(value, dict) else key, f"{v!r} is not an integer")
        if lo > hi:
            raise self.fail(key, f"min {lo} is above max {hi}")
        if lo < low or hi > high:
            raise self.fail(key, f"{lo}..{hi} is outside the allowed {low}..{high}")
        if step < 1 or step % multiple:
            raise self.fail(f"{key}.step", f"{step} is not a positive multiple of {multiple}")
        for part, v in (("min", lo), ("max", hi)):
            if v % multiple:
                name = f"{key}.{part}" if isinstance(value, dict) else key
                raise self.fail(name, f"{v} is not a multiple of {multiple}")
        if (hi - lo) % step:
            raise self.fail(key, f"max {hi} is not reachable from min {lo} in steps of {step}")
        return IntRange(lo, hi, step)

    def width_range(self, value: Any, key: str) -> IntRange:
        """A channel count range: multiples of 8 up to 512."""
        return self.int_range(value, key, WIDTH_STEP, MAX_WIDTH, WIDTH_STEP)

    def stages(self, data: dict) -> tuple[tuple[IntRange, ...], tuple[IntRange, ...]]:
        """Per-stage depth and width ranges: from `stages` (a list of 4) or shared `depth`/`width`."""
        if "stages" in data:
            if "depth" in data or "width" in data:
                raise self.fail("stages", "give either 'stages' or the shared 'depth'/'width', not both")
            stages = data["stages"]
            if not isinstance(stages, list) or len(stages) != 4:
                raise self.fail("stages", "expected a list of 4 entries, each {depth, width}")
            depth, width = [], []
            for i, stage in enumerate(stages):
                if not isinstance(stage, dict):
                    raise self.fail(f"stages[{i}]", "expected a mapping with depth and width")
                self.reject_unknown(stage, {"depth", "width"}, f"stages[{i}].")
                depth.append(self.int_range(stage.get("depth"), f"stages[{i}].depth", 1, MAX_DEPTH))
                width.append(self.width_range(stage.get("width"), f"stages[{i}].width"))
            return tuple(depth), tuple(width)
        d = self.int_range(data.get("depth"), "depth", 1, MAX_DEPTH)
        w = self.width_range(data.get("width"), "width")
        return (d, d, d, d), (w, w, w, w)

    def check_buildable(self, space: SearchSpace) -> None:
        """Make sure the fixed head settings fit every head width the space allows."""
        if space.head_norm == "gn":
            for w in space.head_width.values():
                if w % space.head_gn_groups:
                    raise self.fail("head.gn_groups", f"{space.head_gn_groups} does not divide head width {w}")
        space.extreme_archs()  # raises ArchSpecError naming a field if the ranges cannot build
