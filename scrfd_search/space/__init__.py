"""Architectures as data: ArchSpec, search spaces and budgeted samplers."""

from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec

__all__ = ["ArchSpec", "HeadSpec", "NeckSpec", "StageSpec"]
