"""The four released SCRFD architectures (the paper's table and the reference's configs), as ArchSpecs."""

from __future__ import annotations

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
