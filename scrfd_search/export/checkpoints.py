"""A detector with a checkpoint's weights, and a one-line account of a checkpoint that does not fit."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from scrfd_search.builders import build_model
from scrfd_search.errors import UserError
from scrfd_search.space.arch import ArchSpec


def load_detector(arch: ArchSpec, checkpoint: Path | None) -> Any:
    """The detector for arch, with the checkpoint's weights when one is given (else freshly initialised)."""
    import torch

    model = build_model(arch)
    if checkpoint is not None:
        # weights_only=False: mmengine checkpoints also pickle the message hub's history; these files are
        # the search's own output, not downloads.
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            raise UserError(f"{checkpoint}: not a PyTorch checkpoint ({str(exc).splitlines()[0][:160]})") from None
        if not isinstance(state, dict):
            raise UserError(f"{checkpoint}: not a checkpoint (expected a dict with a state_dict)")
        weights = state.get("state_dict", state)
        misfit = first_misfit(model.state_dict(), weights)
        if misfit:
            raise UserError(f"{checkpoint}: does not fit the architecture ({misfit})")
        model.load_state_dict(weights, strict=True)
    return model.eval()


def first_misfit(expected: dict[str, Any], given: dict[str, Any]) -> str | None:
    """The first tensor that is missing, unexpected or of another shape in `given`, said in words."""
    for name, tensor in expected.items():
        if name not in given:
            return f"no {name} {tuple(tensor.shape)} in the checkpoint"
        shape = tuple(getattr(given[name], "shape", ()))
        if shape != tuple(tensor.shape):
            return f"{name} is {shape} in the checkpoint, {tuple(tensor.shape)} in the architecture"
    extra = [name for name in given if name not in expected]
    return f"the architecture has no {extra[0]} ({len(extra)} such tensors)" if extra else None
