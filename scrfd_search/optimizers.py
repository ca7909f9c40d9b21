"""mmengine registrations for the recipe's optimisers: SGDP, AdaBound(W) and SAM from `pytorch-optimizer`.

A config imports this module (custom_imports) and names them as `dict(type="SGDP", ...)`,
`dict(type="AdaBound", weight_decouple=True, ...)` and, for SAM, `optim_wrapper=dict(type="SAMOptimWrapper",
optimizer=dict(type="SAM", base_optimizer="SGD", rho=0.05, ...))`. torch's SGD and AdamW are registered by
mmengine itself. They go into mmengine's root registries, so every scope (mmdet's included) finds them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_optimizer
import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS
from pytorch_optimizer.optimizer.utils.model import disable_running_stats, enable_running_stats

from scrfd_search.errors import UserError

OPTIMIZERS.register_module(name="SGDP", module=pytorch_optimizer.SGDP, force=True)
OPTIMIZERS.register_module(name="AdaBound", module=pytorch_optimizer.AdaBound, force=True)


@OPTIMIZERS.register_module(name="SAM", force=True)
class RegisteredSAM(pytorch_optimizer.SAM):
    """pytorch-optimizer's SAM with its base optimiser named by registry type (a config cannot hold a class)."""

    def __init__(self, params: Any, base_optimizer: str = "SGD", rho: float = 0.05, **kwargs: Any) -> None:
        base = OPTIMIZERS.get(base_optimizer)
        if base is None:
            raise UserError(f"SAM base_optimizer: {base_optimizer!r} is not a registered optimizer")
        super().__init__(params, base, rho=rho, **kwargs)


@OPTIM_WRAPPERS.register_module(force=True)
class SAMOptimWrapper(OptimWrapper):
    """Sharpness-aware minimisation in mmengine's training step: two forward/backward passes per update.

    mmengine's `train_step` runs the forward inside `optim_context(model)` and then hands only the loss to
    `update_params`, but SAM needs the loss again at the perturbed weights. So the context records the
    batch the model's `_run_forward` receives, and `update_params` replays it: backward at w, climb to
    w + rho * g / |g| (`first_step`), forward and backward there with BatchNorm statistics frozen, then
    restore w and let the base optimiser step with that second gradient (`second_step`). Gradient
    clipping applies to the second gradient (the first is only used for its direction).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, accumulative_counts: int = 1, **kwargs: Any) -> None:
        if not hasattr(optimizer, "first_step") or not hasattr(optimizer, "second_step"):
            raise UserError(f"SAMOptimWrapper: needs a SAM optimizer (type='SAM'), got {type(optimizer).__name__}")
        if accumulative_counts != 1:
            raise UserError("SAMOptimWrapper: gradient accumulation is not supported (accumulative_counts must be 1)")
        super().__init__(optimizer, accumulative_counts=1, **kwargs)
        self._replay: tuple[Any, Any, Any] | None = None
        self.second_passes = 0  # updates that ran the second (perturbed) pass; training logs and tests read it

    @contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        """mmengine's context, plus a record of the batch the model's loss forward is called with."""
        forward = model._run_forward

        def recording(data: Any, mode: str) -> Any:
            self._replay = (model, forward, data) if mode == "loss" else None
            return forward(data, mode)

        model._run_forward = recording  # an instance attribute shadows the method for this step only
        try:
            with super().optim_context(model):
                yield
        finally:
            del model._run_forward

    def update_params(
        self, loss: torch.Tensor, step_kwargs: dict | None = None, zero_kwargs: dict | None = None
    ) -> None:
        """SAM's update: gradient at w, climb, gradient at the perturbed weights, step from w."""
        if self._replay is None:
            raise RuntimeError("SAMOptimWrapper: update_params without a recorded forward (call train_step)")
        model, forward, data = self._replay
        self._replay = None
        self.backward(loss)
        self.optimizer.first_step(zero_grad=True)
        disable_running_stats(model)
        try:
            second = getattr(model, "module", model).parse_losses(forward(data, "loss"))[0]
            second.backward()
        finally:
            enable_running_stats(model)
        if self.clip_grad_kwargs:
            self._clip_grad()
        self.optimizer.second_step(zero_grad=True)
        self.second_passes += 1
