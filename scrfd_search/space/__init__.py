"""Architectures as data: ArchSpec, the released models and search spaces (YAML)."""

from scrfd_search.space.arch import ArchSpec, HeadSpec, NeckSpec, StageSpec

__all__ = ["ArchSpec", "HeadSpec", "NeckSpec", "StageSpec"]
