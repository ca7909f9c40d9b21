"""Import released SCRFD weights into a checkpoint of this project's detector.

Two sources: insightface's released ONNX files (BatchNorm folded into the convs, most tensor names
lost) and checkpoints of the reference's own mmdet 2.x code (its parameter names). ONNX convs are
matched to the detector's convs in execution order, shape by shape, and wherever the ONNX file kept
a reference parameter name that name must map onto the same layer; checkpoint tensors are renamed
by the reference's module layout. A BatchNorm that follows a bias-free conv becomes the identity
carrying the folded bias. After an ONNX import the detector is run beside onnxruntime on a random
input; the checkpoint is written only if they agree.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from scrfd_search.builders import build_model
from scrfd_search.errors import UserError
from scrfd_search.export.released_format import released_head_module, released_output_names
from scrfd_search.head_settings import STRIDES
from scrfd_search.io_utils import atomic_write_bytes
from scrfd_search.space.arch import ArchSpec

SELF_CHECK_TOLERANCE = 1e-4
SELF_CHECK_SEED = 0
DEFAULT_CHECK_HW = (640, 640)  # used when the ONNX input has free height and width
TRACE_HW = (64, 64)  # the small input used to record the order in which the detector runs its convs
# Buffers of the reference head that have no counterpart here: the integral projection of its
# distribution-focal-loss variant, which the released models do not use (loss_dfl=False).
REFERENCE_UNUSED = re.compile(r"^bbox_head\.integral\.project$")


@dataclass(frozen=True)
class ConvSlot:
    """One execution of one of the detector's convs (a shared head conv runs once per stride)."""

    conv: str  # module name of the nn.Conv2d
    norm: str | None  # module name of the BatchNorm right after it, if any
    shape: tuple[int, ...]
    has_bias: bool


@dataclass(frozen=True)
class OnnxConv:
    """One Conv node of an ONNX graph with its weights and a Scale (Mul by a constant) after it."""

    node: str  # the node's output name
    weight_name: str
    weight: np.ndarray
    bias: np.ndarray | None
    scale: float | None


# ------------------------------------------------------------------ the detector's side


def _norm_after(model: nn.Module, conv_name: str) -> str | None:
    """The name of the norm layer that directly follows conv_name in its parent module, if any."""
    parent_name, _, last = conv_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    prefix = f"{parent_name}." if parent_name else ""
    candidate = None
    if last == "conv" and getattr(parent, "with_norm", False):  # mmcv ConvModule
        candidate = f"{prefix}{parent.norm_name}"
    elif (match := re.fullmatch(r"conv(\d)", last)) and hasattr(parent, f"norm{match[1]}_name"):  # ResNet blocks
        candidate = f"{prefix}{getattr(parent, f'norm{match[1]}_name')}"
    elif last.isdigit() and isinstance(parent, nn.Sequential) and int(last) + 1 < len(parent):  # downsample
        candidate = f"{prefix}{int(last) + 1}"
    if candidate is None:
        return None
    norm = model.get_submodule(candidate)
    if isinstance(norm, _BatchNorm):
        return candidate
    if isinstance(norm, nn.GroupNorm):
        raise UserError(
            f"{conv_name} is followed by a GroupNorm, which an ONNX file cannot fold into its convs "
            "(released ONNX models have BatchNorm heads: use an ArchSpec with head.norm 'bn')"
        )
    return None


def conv_slots(model: nn.Module) -> list[ConvSlot]:
    """The detector's convs in the order its forward pass runs them (recorded with hooks)."""
    names = {m: n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(names[mod])) for m in names]
    try:
        with torch.no_grad():
            released_head_module(model)(torch.zeros(1, 3, *TRACE_HW))
    finally:
        for hook in hooks:
            hook.remove()
    modules = dict(model.named_modules())
    return [
        ConvSlot(name, _norm_after(model, name), tuple(modules[name].weight.shape), modules[name].bias is not None)
        for name in order
    ]


# ------------------------------------------------------------------ the ONNX side


def load_onnx(path: Path) -> Any:
    """The ONNX model proto, or one UserError saying the file is not an ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
        raise UserError(
            f"{path}: not an ONNX model ({str(exc).splitlines()[0] if str(exc) else 'cannot parse'})"
        ) from None
    if not proto.graph.node or not any(n.op_type == "Conv" for n in proto.graph.node):
        raise UserError(f"{path}: not an ONNX detector (expected a graph with Conv nodes)")
    return proto


def onnx_convs(proto: Any) -> list[OnnxConv]:
    """Every Conv node in graph order with its weight, bias and the constant of a Mul right after it."""
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attr.t)
    consumers: dict[str, list[Any]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    convs = []
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        if node.input[1] not in constants:
            raise UserError(f"ONNX node {node.output[0]}: its conv weight {node.input[1]} is not a constant")
        bias = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        scale = None
        for user in consumers.get(node.output[0], []):
            if user.op_type == "Mul":
                other = [i for i in user.input if i != node.output[0]]
                if other and other[0] in constants and constants[other[0]].size == 1:
                    scale = float(constants[other[0]].reshape(()))
        convs.append(OnnxConv(node.output[0], node.input[1], constants[node.input[1]], bias, scale))
    return convs


# ------------------------------------------------------------------ reference (mmdet 2.x) names


def _stride_index(key: str, where: str) -> int:
    """Head set index for a reference ModuleDict key: '0' (shared by all strides) or '(8, 8)' / '8'."""
    if key == "0":
        return 0
    match = re.fullmatch(r"\(?(\d+)(?:, \d+\))?", key)
    if not match or int(match[1]) not in STRIDES:
        raise UserError(f"{where}: unexpected stride key {key!r} (expected '0', '(8, 8)', '(16, 16)' or '(32, 32)')")
    return STRIDES.index(int(match[1]))


MOBILENET_UNIT = {
    "0": "depthwise_conv.conv",
    "1": "depthwise_conv.bn",
    "3": "pointwise_conv.conv",
    "4": "pointwise_conv.bn",
}
RESNET_STEM = {"0": "0.conv", "1": "0.bn", "3": "1.conv", "4": "1.bn", "6": "2.conv", "7": "2.bn"}
HEAD_PREDICTORS = {"stride_cls": "conv_cls", "stride_reg": "conv_reg", "stride_kps": "conv_kps"}


def reference_key(key: str, arch: ArchSpec) -> str | None:
    """This project's parameter name for a reference (insightface mmdet 2.x) one; None for unused buffers.

    Reference layout: MobileNetV1 units are Sequential(dw conv, BN, ReLU, pw conv, BN, ReLU) and its
    stem Sequential(conv_bn, conv_dw); ResNetV1e's deep stem is one Sequential of (conv, BN, ReLU) x 3;
    the head keeps towers in cls_stride_convs and predictors in stride_cls/stride_reg/stride_kps,
    ModuleDicts keyed '0' (shared) or by stride.
    """
    key = key.removeprefix("module.")
    if REFERENCE_UNUSED.match(key):
        return None
    parts = key.split(".")
    if parts[0] == "backbone" and arch.block == "depthwise":
        if parts[1] == "stem" and parts[2] == "0" and parts[3] in ("0", "1"):
            return ".".join(["backbone.stem.0", "conv" if parts[3] == "0" else "bn", *parts[4:]])
        if parts[1] == "stem" and parts[2] == "1" and parts[3] in MOBILENET_UNIT:
            return ".".join(["backbone.stem.1", MOBILENET_UNIT[parts[3]], *parts[4:]])
        if parts[1].startswith("layer") and len(parts) > 3 and parts[3] in MOBILENET_UNIT:
            return ".".join(["backbone", parts[1], parts[2], MOBILENET_UNIT[parts[3]], *parts[4:]])
        return key
    if parts[0] == "backbone" and parts[1] == "stem" and parts[2] in RESNET_STEM and len(parts) == 4:
        return ".".join(["backbone.stem", RESNET_STEM[parts[2]], *parts[3:]])
    if parts[0] == "bbox_head" and len(parts) > 2:
        if parts[1] == "reg_stride_convs":
            raise UserError(
                f"{key}: the reference model has a separate box tower (cls_reg_share=False), which this "
                "project's head does not have"
            )
        if parts[1] == "cls_stride_convs":
            return ".".join(["bbox_head.towers", str(_stride_index(parts[2], key)), *parts[3:]])
        if parts[1] in HEAD_PREDICTORS:
            return ".".join([f"bbox_head.{HEAD_PREDICTORS[parts[1]]}", str(_stride_index(parts[2], key)), *parts[3:]])
    return key


def _reference_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a reference checkpoint (its 'state_dict', or the file itself when it is one)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise UserError(
            f"{path}: not a PyTorch checkpoint that loads safely ({str(exc).splitlines()[0][:160]}); "
            "expected an ONNX file or an mmdet 2.x checkpoint of insightface's SCRFD"
        ) from None
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: holds no state_dict of tensors (expected an mmdet 2.x checkpoint)")
    return state


def state_from_reference_checkpoint(path: Path, model: nn.Module, arch: ArchSpec) -> dict[str, torch.Tensor]:
    """The detector's state dict filled from a reference checkpoint, renamed; one error on any misfit."""
    ours = model.state_dict()
    renamed: dict[str, tuple[str, torch.Tensor]] = {}
    for key, value in _reference_state_dict(path).items():
        name = reference_key(key, arch)
        if name is not None:
            renamed[name] = (key, value)
    for name, (key, value) in renamed.items():
        if name not in ours:
            raise UserError(f"{path}: {key} has no counterpart in the architecture (looked for {name})")
        if tuple(value.shape) != tuple(ours[name].shape):
            raise UserError(
                f"{path}: layer {key} does not fit the architecture: checkpoint shape {tuple(value.shape)}, "
                f"architecture {name} shape {tuple(ours[name].shape)}"
            )
    missing = [n for n in ours if n not in renamed]
    if missing:
        raise UserError(f"{path}: the architecture's {missing[0]} is not in the checkpoint ({len(missing)} missing)")
    return {name: value.to(ours[name].dtype) for name, (_, value) in renamed.items()}


# ------------------------------------------------------------------ ONNX -> state dict


def _shape_error(path: Path, index: int, slots: list[ConvSlot], convs: list[OnnxConv]) -> UserError:
    """The one error for an ONNX file whose conv list does not fit the architecture."""
    ours = f"{slots[index].conv} {slots[index].shape}" if index < len(slots) else "no layer"
    theirs = f"{convs[index].weight_name} {tuple(convs[index].weight.shape)}" if index < len(convs) else "no layer"
    return UserError(
        f"{path}: does not fit the architecture ({len(convs)} convs in the ONNX file, {len(slots)} in the "
        f"architecture); first mismatch at conv #{index + 1}: architecture {ours}, ONNX {theirs}"
    )


def state_from_onnx(path: Path, proto: Any, model: nn.Module, arch: ArchSpec) -> dict[str, torch.Tensor]:
    """The detector's state dict filled from an ONNX file's convs (matched in execution order)."""
    slots = conv_slots(model)
    convs = onnx_convs(proto)
    for index in range(max(len(slots), len(convs))):
        if index >= len(slots) or index >= len(convs) or slots[index].shape != tuple(convs[index].weight.shape):
            raise _shape_error(path, index, slots, convs)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    seen: dict[str, np.ndarray] = {}
    reg_runs = 0
    for slot, conv in zip(slots, convs, strict=True):
        named = reference_key(conv.weight_name, arch) if "." in conv.weight_name else None
        if named is not None and named != f"{slot.conv}.weight":
            raise UserError(
                f"{path}: ONNX tensor {conv.weight_name} sits where the architecture has {slot.conv} "
                f"(expected it at {named})"
            )
        if slot.conv in seen and not np.array_equal(seen[slot.conv], conv.weight):  # a shared head conv
            raise UserError(f"{path}: {conv.weight_name} differs between strides, but {slot.conv} is shared")
        seen[slot.conv] = conv.weight
        bias = torch.from_numpy(conv.bias.copy()) if conv.bias is not None else torch.zeros(slot.shape[0])
        state[f"{slot.conv}.weight"] = torch.from_numpy(conv.weight.copy())
        if slot.has_bias:
            state[f"{slot.conv}.bias"] = bias
        elif slot.norm is not None:
            eps = model.get_submodule(slot.norm).eps
            state[f"{slot.norm}.weight"] = torch.ones(slot.shape[0])
            state[f"{slot.norm}.bias"] = bias
            state[f"{slot.norm}.running_mean"] = torch.zeros(slot.shape[0])
            state[f"{slot.norm}.running_var"] = torch.full((slot.shape[0],), 1.0 - eps)
        elif conv.bias is not None and np.any(conv.bias):
            raise UserError(f"{path}: {conv.weight_name} has a bias, but {slot.conv} has neither bias nor norm")
        if slot.conv.startswith("bbox_head.conv_reg."):
            level, reg_runs = reg_runs, reg_runs + 1
            if arch.head.box_scale:
                state[f"bbox_head.scales.{level}.scale"] = torch.tensor(conv.scale if conv.scale is not None else 1.0)
            elif conv.scale is not None:
                raise UserError(
                    f"{path}: the ONNX file scales the stride-{STRIDES[level]} box output by {conv.scale:g}, "
                    "but the architecture has no Scale (head.box_scale is false)"
                )
    return state


# ------------------------------------------------------------------ self-check


def _onnx_input_hw(proto: Any) -> tuple[int, int]:
    """The ONNX input's fixed height and width, or DEFAULT_CHECK_HW when they are free."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    h, w = (dims[2].dim_value, dims[3].dim_value) if len(dims) == 4 else (0, 0)
    return (h, w) if h > 0 and w > 0 else DEFAULT_CHECK_HW


def _session(proto: Any, extra_outputs: Sequence[str] = ()) -> Any:
    """An onnxruntime CPU session of proto, optionally exposing extra intermediate tensors as outputs."""
    import onnx
    import onnxruntime

    if extra_outputs:
        proto = onnx.ModelProto.FromString(proto.SerializeToString())
        for name in extra_outputs:
            proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _first_differing_layer(proto: Any, model: nn.Module, images: torch.Tensor) -> str:
    """Name the first conv (with its norm) whose output differs from the ONNX conv it was filled from."""
    slots = conv_slots(model)
    convs = onnx_convs(proto)
    modules = dict(model.named_modules())
    taps = [slot.norm or slot.conv for slot in slots]
    recorded: list[tuple[str, np.ndarray]] = []
    # clone: the ReLU after a norm runs in place and would overwrite the recorded output
    hooks = [
        modules[name].register_forward_hook(lambda _m, _i, o, n=name: recorded.append((n, o.detach().clone().numpy())))
        for name in set(taps)
    ]
    try:
        with torch.no_grad():
            released_head_module(model)(images)
    finally:
        for hook in hooks:
            hook.remove()
    theirs = _session(proto, [c.node for c in convs]).run([c.node for c in convs], {_input_name(proto): images.numpy()})
    runs: dict[str, int] = {}
    ours_by_run = {}
    for name, value in recorded:
        ours_by_run[(name, runs.get(name, 0))] = value
        runs[name] = runs.get(name, 0) + 1
    counts: dict[str, int] = {}
    for tap, conv, got in zip(taps, convs, theirs, strict=True):
        run = counts.get(tap, 0)
        counts[tap] = run + 1
        mine = ours_by_run[(tap, run)]
        diff = float(np.max(np.abs(mine - got))) if mine.size else 0.0
        if diff > SELF_CHECK_TOLERANCE * max(1.0, float(np.max(np.abs(got)))):
            return f"{tap} (ONNX conv output {conv.node}, weight {conv.weight_name}) differs by {diff:.2e}"
    return "no single conv differs beyond the tolerance; the difference builds up after the convs"


def _input_name(proto: Any) -> str:
    """The name of the graph's image input (the first input that is not an initializer)."""
    initializers = {t.name for t in proto.graph.initializer}
    return next(i.name for i in proto.graph.input if i.name not in initializers)


def self_check(path: Path, proto: Any, model: nn.Module, arch: ArchSpec) -> float:
    """Largest difference between the detector's and onnxruntime's outputs on a random input (else UserError)."""
    hw = _onnx_input_hw(proto)
    images = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(SELF_CHECK_SEED))
    with torch.no_grad():
        ours = [t.numpy() for t in released_head_module(model.eval())(images)]
    theirs = _session(proto).run(None, {_input_name(proto): images.numpy()})
    names = released_output_names(arch.head.keypoints)
    if len(theirs) != len(ours):
        raise UserError(
            f"{path}: has {len(theirs)} outputs, the architecture gives {len(ours)} ({', '.join(names)}; "
            "keypoint heads have 9, others 6)"
        )
    worst = 0.0
    for name, mine, got in zip(names, ours, theirs, strict=True):
        mine2, got2 = mine.reshape(-1, mine.shape[-1]), np.asarray(got).reshape(-1, mine.shape[-1])
        if mine2.shape != got2.shape:
            raise UserError(f"{path}: output {name} has shape {np.shape(got)}, the architecture gives {mine.shape}")
        worst = max(worst, float(np.max(np.abs(mine2 - got2))))
    if worst > SELF_CHECK_TOLERANCE:
        where = _first_differing_layer(proto, model, images)
        raise UserError(
            f"{path}: self-check failed: outputs differ from onnxruntime by {worst:.2e} (> {SELF_CHECK_TOLERANCE}); "
            f"first differing layer: {where}"
        )
    return worst


# ------------------------------------------------------------------ the command's work


@dataclass(frozen=True)
class ImportReport:
    """What an import did: the source kind, the convs or tensors copied, the self-check's difference."""

    source_kind: str
    tensors: int
    max_abs_diff: float | None
    check_hw: tuple[int, int] | None


def _is_onnx(path: Path) -> bool:
    """Whether path names an ONNX file (by extension; anything else is read as a PyTorch checkpoint)."""
    return path.suffix.lower() == ".onnx"


def checkpoint_bytes(state: dict[str, torch.Tensor], arch: ArchSpec, source: Path, report: ImportReport) -> bytes:
    """An mmengine-style checkpoint (meta + state_dict) that mmengine's load_checkpoint and ours accept."""
    meta = {
        "dataset_meta": {"classes": ("face",)},
        "scrfd_arch": arch.to_dict(),
        "imported_from": {
            "file": str(source),
            "kind": report.source_kind,
            "self_check_max_abs_diff": report.max_abs_diff,
        },
    }
    buf = io.BytesIO()
    torch.save({"meta": meta, "state_dict": state}, buf)
    return buf.getvalue()


def import_weights(src: str | os.PathLike, arch_path: str | os.PathLike, out: str | os.PathLike) -> ImportReport:
    """Read SRC (ONNX or reference checkpoint), fill the detector for ARCH, check it, then write OUT."""
    src, out = Path(src), Path(out)
    arch = ArchSpec.load(arch_path)
    if not src.is_file():
        raise UserError(f"{src}: no such file (expected a released ONNX file or an mmdet 2.x checkpoint)")
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out}: is a folder (expected a checkpoint file name, e.g. model.pth)")
    model = build_model(arch).eval()
    if _is_onnx(src):
        proto = load_onnx(src)
        state = state_from_onnx(src, proto, model, arch)
        model.load_state_dict(state, strict=True)
        diff = self_check(src, proto, model, arch)
        report = ImportReport("onnx", len(onnx_convs(proto)), diff, _onnx_input_hw(proto))
    else:
        state = state_from_reference_checkpoint(src, model, arch)
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            outputs = released_head_module(model)(torch.zeros(1, 3, *TRACE_HW))
        if not all(torch.isfinite(t).all() for t in outputs):
            raise UserError(f"{src}: the imported detector gives non-finite outputs")
        report = ImportReport("mmdet2-checkpoint", len(state), None, None)
    atomic_write_bytes(out, checkpoint_bytes(model.state_dict(), arch, src, report))
    return report
