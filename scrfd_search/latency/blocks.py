"""The parts a detector's latency is summed from, and which of them a search space can produce.

Each part is a table kind (a string naming the discrete settings: block type, stage, head flags) with
one or two channel coordinates. The table measures each kind on a grid of its coordinates and
interpolates between grid points: a conv's time is close to bilinear in its input and output
channels at a fixed feature size, which is what the interpolation assumes.

Kinds (k = stage 0..3 for C2..C5, l = 1..3 for the neck levels of C3..C5):
  stem/B               (stem width)             the stem of block type B's backbone
  first/B/k            (in channels, width)     stage k's first block (stride, shortcut projection)
  repeat/B/k           (width)                  each further block of stage k
  lateral/l            (in channels, neck)      the PAFPN lateral 1x1 conv of level l
  neck_body            (neck)                   the rest of the PAFPN (top-down, bottom-up, 3x3 convs)
  head_first/T         (neck, head width)       the first tower unit, on all three levels
  head_unit/T          (head width)             each further tower unit, on all three levels
  head_pred/P          (channels)               class, box (and keypoint) predictors and the released outputs
T names the tower (norm, groups, depthwise), P the predictors (keypoints, box scale).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scrfd_search.flops.report import COMPONENTS
from scrfd_search.space.arch import BOTTLENECK_EXPANSION, ArchSpec, HeadSpec
from scrfd_search.space.search_space import SearchSpace

NECK_LEVELS = (1, 2, 3)  # backbone stages feeding the PAFPN (C3, C4, C5)


@dataclass(frozen=True)
class Part:
    """One table lookup: a kind, its coordinates, and how many times the detector runs it."""

    kind: str
    coords: tuple[int, ...]
    count: int = 1


def tower_name(head: HeadSpec) -> str:
    """The tower flags of a head kind: norm (with GN groups) and depthwise."""
    norm = f"gn{head.gn_groups}" if head.norm == "gn" else "bn"
    return norm + ("-dw" if head.depthwise else "")


def predictor_name(head: HeadSpec) -> str:
    """The predictor flags of a head kind: keypoints and the box Scale."""
    return ("kps" if head.keypoints else "box") + ("-scale" if head.box_scale else "")


def arch_parts(arch: ArchSpec) -> dict[str, tuple[Part, ...]]:
    """The parts of arch by component (stem, c2..c5, neck, head), in COMPONENTS order."""
    expansion = BOTTLENECK_EXPANSION if arch.block == "bottleneck" else 1
    parts: dict[str, tuple[Part, ...]] = {"stem": (Part(f"stem/{arch.block}", (arch.stem_width,)),)}
    in_channels = arch.stem_width
    for k, stage in enumerate(arch.stages):
        stage_parts = [Part(f"first/{arch.block}/{k}", (in_channels, stage.width))]
        if stage.depth > 1:
            stage_parts.append(Part(f"repeat/{arch.block}/{k}", (stage.width,), stage.depth - 1))
        parts[COMPONENTS[1 + k]] = tuple(stage_parts)
        in_channels = stage.width * expansion
    outs = arch.stage_out_channels
    neck = arch.neck.channels
    parts["neck"] = tuple(Part(f"lateral/{level}", (outs[level], neck)) for level in NECK_LEVELS) + (
        Part("neck_body", (neck,)),
    )
    head = arch.head
    tower = tower_name(head)
    head_parts = []
    if head.num_convs >= 1:
        head_parts.append(Part(f"head_first/{tower}", (neck, head.width)))
    if head.num_convs >= 2:
        head_parts.append(Part(f"head_unit/{tower}", (head.width,), head.num_convs - 1))
    head_parts.append(Part(f"head_pred/{predictor_name(head)}", (head.width if head.num_convs else neck,)))
    parts["head"] = tuple(head_parts)
    return parts


def thin(values: Iterable[int], points: int) -> tuple[int, ...]:
    """At most `points` of the sorted distinct values, evenly spread by rank, both ends kept."""
    ordered = sorted(set(values))
    if len(ordered) <= points:
        return tuple(ordered)
    step = (len(ordered) - 1) / (points - 1)
    return tuple(sorted({ordered[round(i * step)] for i in range(points)}))


def space_axes(space: SearchSpace) -> dict[str, tuple[set[int], ...]]:
    """Every kind the space's detectors use, with the coordinate values each axis can take.

    Widths are drawn per stage and then sorted, so any stage may take any width of any stage's range.
    """
    widths = set().union(*(set(r.values()) for r in space.width))
    stems = set(space.stem_width.values())
    necks = set(space.neck_channels.values())
    heads = set(space.head_width.values())
    expansion = BOTTLENECK_EXPANSION if space.block == "bottleneck" else 1
    outs = {w * expansion for w in widths}
    axes: dict[str, tuple[set[int], ...]] = {f"stem/{space.block}": (stems,)}
    for k in range(4):
        axes[f"first/{space.block}/{k}"] = (stems if k == 0 else outs, widths)
        if space.depth[k].max > 1:
            axes[f"repeat/{space.block}/{k}"] = (widths,)
    for level in NECK_LEVELS:
        axes[f"lateral/{level}"] = (outs, necks)
    axes["neck_body"] = (necks,)
    probe = space.extreme_archs()[0].head
    tower = tower_name(probe)
    convs = space.head_num_convs
    if convs.max >= 1:
        axes[f"head_first/{tower}"] = (necks, heads)
    if convs.max >= 2:
        axes[f"head_unit/{tower}"] = (heads,)
    axes[f"head_pred/{predictor_name(probe)}"] = (heads | (necks if convs.min == 0 else set()),)
    return axes


def grid_axes(spaces: Iterable[SearchSpace], points: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """The grid to measure for several spaces: each kind's axes merged, then thinned.

    Two-axis kinds keep `points` values per axis; one-axis kinds, cheap to measure, 2 * points - 1.
    """
    merged: dict[str, list[set[int]]] = {}
    for space in spaces:
        for kind, axes in space_axes(space).items():
            current = merged.setdefault(kind, [set() for _ in axes])
            for into, values in zip(current, axes, strict=True):
                into |= values
    return {
        kind: tuple(thin(values, points if len(axes) == 2 else 2 * points - 1) for values in axes)
        for kind, axes in sorted(merged.items())
    }
