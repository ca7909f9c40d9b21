"""Where a run trains: CPU or GPU (mmengine offers no CPU run while a GPU is visible), AMP dtype, peak memory."""

from __future__ import annotations

from scrfd_search.config_builder import (
    DEVICES,
)
from scrfd_search.errors import UserError


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible else 'cpu'; 'cuda' without a GPU is a UserError."""
    import torch

    if device not in DEVICES:
        raise UserError(f"device: {device!r} is not one of {', '.join(DEVICES)}")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise UserError("device: 'cuda' was asked for but no CUDA GPU is visible (use --device cpu or auto)")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def amp_dtype_for(device: str, amp: bool) -> str | None:
    """--amp's autocast dtype: bfloat16 where the GPU supports it, else float16; None without --amp."""
    import torch

    if not amp:
        return None
    if device != "cuda":
        raise UserError("--amp: mixed precision needs a CUDA GPU, and this run trains on the CPU")
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def peak_memory_mib(device: str) -> float:
    """Peak memory so far: the GPU's allocated memory on 'cuda', else this process's peak resident set."""
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
