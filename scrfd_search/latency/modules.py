"""The torch module of each latency-table part, and the runners that time a module on a backend.

Every part is cut from the modules the detector itself is built from (the backbone, PAFPN and
SCRFDHead that mmdet builds from config_builder's dicts), so the table times the same layers.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scrfd_search.builders import register_modules
from scrfd_search.config_builder import backbone_config, head_config, merge_dicts, model_defaults
from scrfd_search.errors import UserError
from scrfd_search.space.arch import BOTTLENECK_EXPANSION, ArchSpec, HeadSpec, NeckSpec, StageSpec

ONNX_OPSET = 17  # as the project's ONNX export
SMALL = 8  # channels of the stages a part does not use (they are built, never run)
OUTPUT_CHANNELS = (1, 4, 10)  # score, box, keypoints per anchor: the released outputs' layout


def _template(block: str, head: HeadSpec | None = None, neck: int = SMALL) -> ArchSpec:
    """A valid ArchSpec whose config dicts carry the settings a part needs."""
    return ArchSpec(
        block=block,
        stem_width=SMALL,
        stages=tuple(StageSpec(1, SMALL) for _ in range(4)),  # type: ignore[arg-type]
        neck=NeckSpec(neck),
        head=head or HeadSpec(num_convs=1, width=16),
    )


def _build(cfg: dict) -> Any:
    """An mmdet module from its config dict, in eval mode."""
    from mmdet.registry import MODELS  # deferred: heavy
    from mmengine.config import ConfigDict

    register_modules()
    return MODELS.build(ConfigDict(cfg)).eval()


def _backbone(block: str, stem: int, depths: list[int], widths: list[int]) -> Any:
    """The project's backbone for block with these stem, depths and widths (not checked for order)."""
    cfg = backbone_config(_template(block))
    return _build({**cfg, "stem_width": stem, "depths": depths, "widths": widths})


def _stem_exponent(block: str) -> int:
    """log2 of the stem's output stride (the ResNet stem pools, the MobileNet one does not)."""
    return 1 if block == "depthwise" else 2


def _head(tower: str, predictors: str, neck: int, width: int, num_convs: int) -> Any:
    """An SCRFDHead with the flags a tower name (gn16-dw, bn) and a predictor name (kps-scale) encode."""
    norm, _, dw = tower.partition("-")
    groups = int(norm[2:]) if norm.startswith("gn") else 16
    head = HeadSpec(
        num_convs=num_convs,
        width=width,
        norm="gn" if norm.startswith("gn") else "bn",
        gn_groups=groups,
        depthwise=dw == "dw",
        keypoints=predictors.startswith("kps"),
        box_scale=predictors.endswith("-scale"),
    )
    return _build(merge_dicts(model_defaults()["bbox_head"], head_config(_template("basic", head, neck))))


def part_module(kind: str, coords: tuple[int, ...], input_shape: tuple[int, int], batch: int) -> tuple[Any, tuple]:
    """(module in eval mode, example inputs) of one table part at the table's input shape and batch."""
    import torch  # deferred: heavy

    h, w = input_shape

    def feature(channels: int, exponent: int) -> Any:
        return torch.randn(batch, channels, h >> exponent, w >> exponent, generator=torch.Generator().manual_seed(0))

    name, _, rest = kind.partition("/")
    if name == "stem":
        return _backbone(rest, coords[0], [1] * 4, [SMALL] * 4).stem, (feature(3, 0),)
    if name in ("first", "repeat"):
        block, k = rest.split("/")[0], int(rest.split("/")[1])
        expansion = BOTTLENECK_EXPANSION if block == "bottleneck" else 1
        depths, widths, stem = [1] * 4, [SMALL] * 4, SMALL
        if name == "first":
            channels, width = coords
            widths[k] = width
            if k == 0:
                stem = channels
            else:
                widths[k - 1] = channels // expansion
            exponent = _stem_exponent(block) if k == 0 else k + 1
            layer = getattr(_backbone(block, stem, depths, widths), f"layer{k + 1}")
            return layer[0], (feature(channels, exponent),)
        depths[k], widths[k] = 2, coords[0]
        layer = getattr(_backbone(block, stem, depths, widths), f"layer{k + 1}")
        return layer[1], (feature(coords[0] * expansion, k + 2),)
    if name == "lateral":
        level = int(rest)
        channels, neck = coords
        in_channels = [SMALL] * 4
        in_channels[level] = channels
        pafpn = _build({**model_defaults()["neck"], "in_channels": in_channels, "out_channels": neck})
        return pafpn.lateral_convs[level - 1], (feature(channels, level + 2),)
    if name == "neck_body":
        return _neck_body(coords[0]), tuple(feature(coords[0], e) for e in (3, 4, 5))
    if name in ("head_first", "head_unit"):
        neck, width = coords if name == "head_first" else (coords[0], coords[0])
        head = _head(rest, "box", neck, width, 1 if name == "head_first" else 2)
        unit = head.towers[0][0 if name == "head_first" else 1]
        return _levels(unit), tuple(feature(neck if name == "head_first" else width, e) for e in (3, 4, 5))
    if name == "head_pred":
        head = _head("bn", rest, coords[0], SMALL, 0)  # no tower: the predictors read the neck directly
        return _predictors(head), tuple(feature(coords[0], e) for e in (3, 4, 5))
    raise ValueError(f"unknown latency table kind {kind!r}")


def _neck_body(neck: int) -> Any:
    """The PAFPN without its lateral convs, on three neck-width inputs (C3, C4, C5)."""
    import torch  # deferred: heavy

    pafpn = _build({**model_defaults()["neck"], "in_channels": [neck] * 4, "out_channels": neck})
    pafpn.lateral_convs = torch.nn.ModuleList(torch.nn.Identity() for _ in pafpn.lateral_convs)

    class NeckBody(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pafpn = pafpn

        def forward(self, c3: Any, c4: Any, c5: Any) -> tuple:
            return tuple(self.pafpn((c3, c3, c4, c5)))  # input 0 (C2) is never read (start_level 1)

    return NeckBody().eval()


def _levels(unit: Any) -> Any:
    """One head tower unit run on each of the three levels."""
    import torch  # deferred: heavy

    class Levels(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unit = unit

        def forward(self, *levels: Any) -> tuple:
            return tuple(self.unit(x) for x in levels)

    return Levels().eval()


def _predictors(head: Any) -> Any:
    """The head's predictors on each level, reshaped as the released outputs (score through a sigmoid)."""
    import torch  # deferred: heavy

    class Predictors(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = head

        def forward(self, *levels: Any) -> tuple:
            outs = []
            for level, x in enumerate(levels):
                maps = [self.head.conv_cls[0](x), self.head.scales[level](self.head.conv_reg[0](x)).float()]
                if self.head.with_kps:
                    maps.append(self.head.conv_kps[0](x))
                for channels, t in zip(OUTPUT_CHANNELS, maps, strict=False):
                    t = t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, channels)
                    outs.append(t.sigmoid() if channels == 1 else t)
            return tuple(outs)

    return Predictors().eval()


def onnx_bytes(module: Any, inputs: tuple) -> bytes:
    """The module as ONNX (the TorchScript exporter, as the project's export), fixed input shapes."""
    import torch  # deferred: heavy

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(
            module,
            inputs,
            buf,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[f"input{i}" for i in range(len(inputs))],
            do_constant_folding=True,
        )
    return buf.getvalue()


def ort_options(threads: int, device: str) -> tuple[Any, list[str]]:
    """onnxruntime session options (`threads` intra-op threads, one inter-op thread) and providers."""
    import onnxruntime  # deferred: heavy

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if device != "cuda":
        return options, ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise UserError(
            "--device cuda: this onnxruntime has no CUDAExecutionProvider "
            "(install onnxruntime-gpu, or use --backend torch)"
        )
    return options, ["CUDAExecutionProvider", "CPUExecutionProvider"]


def ort_session(model: bytes | str, threads: int, device: str) -> Any:
    """An onnxruntime session for model (bytes or a path) with ort_options."""
    import onnxruntime  # deferred: heavy

    options, providers = ort_options(threads, device)
    return onnxruntime.InferenceSession(model, sess_options=options, providers=providers)


def set_torch_threads(threads: int) -> None:
    """Fix torch's intra-op threads (process-wide) for timing."""
    import torch  # deferred: heavy

    torch.set_num_threads(threads)


@dataclass
class Prepared:
    """What one timed target needs, kept small between rounds: ONNX bytes and feeds, or a torch module."""

    backend: str
    device: str
    threads: int
    onnx: bytes | None = None
    feeds: dict[str, Any] | None = None
    module: Any = None
    inputs: tuple = ()

    def runner(self) -> Callable[[], Any]:
        """A no-argument callable running the target once (a new session for onnxruntime)."""
        if self.backend == "onnxruntime":
            return _bound_runner(ort_session(self.onnx, self.threads, self.device), self.feeds or {}, self.device)  # type: ignore[arg-type]
        return torch_runner(self.module, self.inputs, self.device, self.threads)


def _bound_runner(session: Any, feeds: dict[str, Any], device: str) -> Callable[[], Any]:
    """session run with inputs placed once and outputs left on the device (IO binding).

    Inside a detector a part's input is already where it runs and its output is not copied out;
    binding keeps those copies out of the part's time, as they are out of the detector's.
    """
    import onnxruntime  # deferred: heavy

    binding = session.io_binding()
    place = "cuda" if device == "cuda" else "cpu"
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, onnxruntime.OrtValue.ortvalue_from_numpy(array, place, 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, place)
    return lambda: session.run_with_iobinding(binding)


def overhead_module() -> tuple[Any, tuple]:
    """A module that does next to nothing (a ReLU on 512 numbers): its time is a run's fixed cost."""
    import torch  # deferred: heavy

    return torch.nn.ReLU().eval(), (torch.zeros(1, 8, 8, 8),)


def torch_runner(module: Any, inputs: tuple, device: str, threads: int) -> Callable[[], Any]:
    """A callable running module on inputs under inference mode, synchronising a GPU."""
    import torch  # deferred: heavy

    set_torch_threads(threads)
    module = module.to(device)
    moved = tuple(t.to(device) for t in inputs)

    def run() -> Any:
        with torch.inference_mode():
            out = module(*moved)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return run


def prepare_module(module: Any, inputs: tuple, backend: str, device: str, threads: int) -> Prepared:
    """A module and its inputs made ready to time: exported to ONNX for onnxruntime."""
    if backend == "onnxruntime":
        names = [f"input{i}" for i in range(len(inputs))]
        return Prepared(
            backend,
            device,
            threads,
            onnx_bytes(module, inputs),
            dict(zip(names, (t.numpy() for t in inputs), strict=True)),
        )
    return Prepared(backend, device, threads, module=module, inputs=inputs)


def prepare_part(
    kind: str,
    coords: tuple[int, ...],
    backend: str,
    device: str,
    threads: int,
    batch: int,
    input_shape: tuple[int, int],
) -> Prepared:
    """One table part made ready to time on the backend."""
    module, inputs = part_module(kind, coords, input_shape, batch)
    return prepare_module(module, inputs, backend, device, threads)
