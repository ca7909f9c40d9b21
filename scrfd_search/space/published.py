"""The released SCRFD architectures (the paper's table, the reference's configs) and keypoint variants."""

from __future__ import annotations

from dataclasses import replace

from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec


def _stages(depths: tuple[int, ...], widths: tuple[int, ...]) -> tuple[StageSpec, ...]:
    """Zip depths and widths into four StageSpecs."""
    return tuple(StageSpec(d, w) for d, w in zip(depths, widths, strict=True))


PUBLISHED: dict[str, ArchSpec] = {
    "scrfd_500m": ArchSpec(
        block="depthwise",
        stem_width=16,
        stages=_stages((2, 3, 2, 6), (40, 72, 152, 288)),
        neck=NeckSpec(16),
        head=HeadSpec(num_convs=2, width=64, norm="gn", gn_groups=16, depthwise=True),
    ),
    "scrfd_2.5g": ArchSpec(
        block="basic",
        stem_width=24,
        stages=_stages((3, 5, 3, 2), (24, 48, 48, 80)),
        neck=NeckSpec(24),
        head=HeadSpec(num_convs=2, width=64, norm="gn", gn_groups=16),
    ),
    "scrfd_10g": ArchSpec(
        block="basic",
        stem_width=56,
        stages=_stages((3, 4, 2, 3), (56, 88, 88, 224)),
        neck=NeckSpec(56),
        head=HeadSpec(num_convs=3, width=80, norm="gn", gn_groups=16),
    ),
    "scrfd_34g": ArchSpec(
        block="bottleneck",
        stem_width=56,
        stages=_stages((17, 16, 2, 8), (56, 56, 144, 184)),
        neck=NeckSpec(128),
        head=HeadSpec(num_convs=2, width=256, norm="gn", gn_groups=32),
    ),
}

# Published figures (WIDER FACE val; GFLOPs at 640x480) for checking our builds against.
PUBLISHED_GFLOPS: dict[str, float] = {
    "scrfd_500m": 0.508,
    "scrfd_2.5g": 2.53,
    "scrfd_10g": 9.98,
    "scrfd_34g": 34.13,
}
PUBLISHED_PARAMS_M: dict[str, float] = {
    "scrfd_500m": 0.57,
    "scrfd_2.5g": 0.67,
    "scrfd_10g": 3.86,
    "scrfd_34g": 9.80,
}


def _keypoint_variant(arch: ArchSpec, box_scale: bool) -> ArchSpec:
    """The reference's *_bnkps head on arch: BatchNorm, one head per stride, five landmarks."""
    return replace(arch, head=replace(arch.head, norm="bn", shared=False, keypoints=True, box_scale=box_scale))


# The reference's configs/scrfd/*_bnkps.py (the models insightface releases as ONNX): scale_mode 0 (no
# Scale on the box branch) for 0.5GF, scale_mode 2 (a Scale per stride) for 2.5GF and 10GF.
KEYPOINT_VARIANTS: dict[str, ArchSpec] = {
    "scrfd_500m_bnkps": _keypoint_variant(PUBLISHED["scrfd_500m"], box_scale=False),
    "scrfd_2.5g_bnkps": _keypoint_variant(PUBLISHED["scrfd_2.5g"], box_scale=True),
    "scrfd_10g_bnkps": _keypoint_variant(PUBLISHED["scrfd_10g"], box_scale=True),
}
# Every architecture configs/scrfd/ holds.
RELEASED: dict[str, ArchSpec] = {**PUBLISHED, **KEYPOINT_VARIANTS}

# The paper's WIDER FACE val hard AP (%) of the published models, drawn on the Pareto figure.
PUBLISHED_HARD_AP: dict[str, float] = {
    "scrfd_500m": 68.51,
    "scrfd_2.5g": 77.87,
    "scrfd_10g": 83.05,
    "scrfd_34g": 85.29,
}
