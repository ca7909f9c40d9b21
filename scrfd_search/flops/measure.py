"""FLOPs and parameters of a built detector, measured with fvcore and split by component."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from scrfd_search.flops.report import COMPONENTS, DEFAULT_INPUT_SHAPE, FlopsReport

if TYPE_CHECKING:
    from torch import nn

# Module-name prefix (in the detector) of each component.
COMPONENT_MODULES: dict[str, str] = {
    "stem": "backbone.stem",
    "c2": "backbone.layer1",
    "c3": "backbone.layer2",
    "c4": "backbone.layer3",
    "c5": "backbone.layer4",
    "neck": "neck",
    "head": "bbox_head",
}
# mmdet's own ResNet (configs/baselines/) has no `stem` module: its stem is conv1 + bn1 (and a pooling).
STEM_ALIASES = ("backbone.conv1", "backbone.bn1")


def _dense_forward(detector: Any) -> nn.Module:
    """Wrap a detector's backbone -> neck -> head forward (no post-processing) as one module."""
    from torch import nn

    for part in ("backbone", "neck", "bbox_head"):
        if not isinstance(getattr(detector, part, None), nn.Module):
            raise ValueError(f"cannot measure FLOPs: the model has no '{part}' module")

    class DenseForward(nn.Module):
        """Backbone, neck and head of a detector, keeping their module names."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = detector.backbone
            self.neck = detector.neck
            self.bbox_head = detector.bbox_head

        def forward(self, images: Any) -> Any:
            """Raw head outputs for a batch of images."""
            return self.bbox_head(self.neck(self.backbone(images)))

    return DenseForward()


def component_of(name: str) -> str | None:
    """The component a module or parameter name belongs to, or None."""
    for component, prefix in COMPONENT_MODULES.items():
        if name == prefix or name.startswith(prefix + "."):
            return component
    if any(name == a or name.startswith(a + ".") for a in STEM_ALIASES):
        return "stem"
    return None


def _params_by_component(model: nn.Module) -> dict[str, int]:
    """Parameter counts per component (a shared parameter counted once); fail on any stray one."""
    params = dict.fromkeys(COMPONENTS, 0)
    for name, param in model.named_parameters():
        component = component_of(name)
        if component is None:
            raise ValueError(f"parameter {name!r} belongs to none of the components {', '.join(COMPONENTS)}")
        params[component] += param.numel()
    return params


def _flops_by_component(model: nn.Module, input_shape: tuple[int, int]) -> dict[str, int]:
    """Trace model on a zero (1, 3, H, W) batch and split fvcore's count by module prefix."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    device = next(model.parameters()).device
    images = torch.zeros(1, 3, *input_shape, device=device)
    analysis = FlopCountAnalysis(model, images)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    by_module = analysis.by_module()
    flops = {c: int(by_module.get(prefix, 0)) for c, prefix in COMPONENT_MODULES.items()}
    flops["stem"] += sum(int(by_module.get(alias, 0)) for alias in STEM_ALIASES)
    total = int(analysis.total())
    if sum(flops.values()) != total:
        stray = {
            name: n
            for name, n in by_module.items()
            if n and name.count(".") <= 1 and component_of(name) is None and name not in ("", "backbone")
        }
        raise AssertionError(
            f"fvcore counted {total} FLOPs but only {sum(flops.values())} fall in the components "
            f"{', '.join(COMPONENTS)} (unattributed modules: {stray or 'ops outside any component'})"
        )
    return flops


def measure_flops_timed(
    detector: nn.Module,
    input_shape: tuple[int, int] = DEFAULT_INPUT_SHAPE,
    *,
    threads: int | None = 1,
) -> tuple[FlopsReport, float]:
    """measure_flops, plus the seconds the fvcore trace took (model building excluded)."""
    import torch

    input_shape = (int(input_shape[0]), int(input_shape[1]))
    previous_threads = torch.get_num_threads()
    with torch.no_grad():
        model = _dense_forward(detector)
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        if threads:
            torch.set_num_threads(threads)
        try:
            start = time.perf_counter()
            flops = _flops_by_component(model, input_shape)
            seconds = time.perf_counter() - start
        finally:
            torch.set_num_threads(previous_threads)
            for module, training in modes:  # leave a caller's model as it was
                module.training = training
        params = _params_by_component(model)
    gflops = {c: flops[c] / 1e9 for c in COMPONENTS}
    return FlopsReport(gflops=gflops, params=params, input_shape=input_shape), seconds


def measure_flops(
    detector: nn.Module,
    input_shape: tuple[int, int] = DEFAULT_INPUT_SHAPE,
    *,
    threads: int | None = 1,
) -> FlopsReport:
    """FLOPs (fvcore, one multiply-add = one FLOP) and parameters per component, at input (H, W).

    Takes a built detector with backbone, neck and bbox_head modules (for an ArchSpec:
    `config_builder.build_model(arch, init_weights=False)`); it is traced in eval mode on a zero
    image. `threads`: torch threads during the trace (None keeps torch's setting). One by default:
    the forward of a candidate is small, and on cores shared with other jobs OpenMP's spinning
    threads made it ~10x slower (benchmarks/flops_speed.py).
    """
    return measure_flops_timed(detector, input_shape, threads=threads)[0]
