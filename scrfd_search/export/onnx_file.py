"""ONNX export in the released models' convention, checked against PyTorch in onnxruntime."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from scrfd_search.config_builder import PIXEL_MEAN, PIXEL_STD, SIZE_DIVISOR
from scrfd_search.export.checkpoints import load_detector
from scrfd_search.export.released_format import released_head_module, released_output_names
from scrfd_search.export.selection import ExportItem
from scrfd_search.io_utils import atomic_write_bytes, atomic_write_json

ONNX_OPSET = 17  # supported by the TorchScript exporter of torch 2.13 and by current runtimes
ONNX_CHECK_SIZES = ((640, 640), (480, 640))  # (H, W) the export is verified at against PyTorch
ONNX_CHECK_BATCHES = (1, 3)  # ... at each of these batch sizes (the batch axis is dynamic)
ONNX_TOLERANCE = 1e-4


def export_onnx_bytes(
    module: Any, with_keypoints: bool, sample_hw: tuple[int, int], dynamic_batch: bool = True
) -> bytes:
    """The module as ONNX with free batch, height and width (outputs batch x anchors x channels); with
    dynamic_batch False the batch is fixed at 1, as in the released files.

    TorchScript exporter: the dynamo one needs onnxscript, not installed.
    """

    import torch

    names = released_output_names(with_keypoints)
    batch = {0: "batch"} if dynamic_batch else {}
    dynamic = {"input": {**batch, 2: "height", 3: "width"}}
    dynamic |= {n: {**batch, 1: f"anchors_{n.rsplit('_', 1)[1]}"} for n in names}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the legacy exporter announces its deprecation; GroupNorm's batch-size check is traced as a constant
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, *sample_hw),),
            buf,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["input"],
            output_names=names,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    return buf.getvalue()


def onnx_max_difference(
    module: Any,
    onnx_bytes: bytes,
    sizes: tuple[tuple[int, int], ...],
    seed: int = 0,
    batches: tuple[int, ...] = ONNX_CHECK_BATCHES,
) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's outputs on random inputs of each
    size and batch size."""
    import numpy as np
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for (h, w), batch in ((size, b) for size in sizes for b in batches):
        images = torch.randn(batch, 3, h, w, generator=generator)
        with torch.no_grad():
            expected = [t.numpy() for t in module(images)]
        got = session.run(None, {"input": images.numpy()})
        for e, g in zip(expected, got, strict=True):
            if e.shape != g.shape:
                raise RuntimeError(f"ONNX output shape {g.shape} differs from PyTorch's {e.shape} at {batch}x3x{h}x{w}")
            worst = max(worst, float(np.max(np.abs(e - g))) if e.size else 0.0)
    return worst


def onnx_note(item: ExportItem, max_diff: float) -> dict[str, Any]:
    """What onnx.json says: the tensors, the preprocessing, the weights' origin, the self-check."""
    return {
        "file": f"{item.stem}.onnx",
        "opset": ONNX_OPSET,
        "weights": str(item.checkpoint) if item.checkpoint else None,
        "freshly_initialised": item.checkpoint is None,
        "input": {
            "name": "input",
            "shape": ["batch", 3, "height", "width"],
            "preprocessing": f"RGB, (pixel - {PIXEL_MEAN[0]}) / {PIXEL_STD[0]}, H and W multiples of {SIZE_DIVISOR}",
        },
        "outputs": released_output_names(item.arch.head.keypoints),
        "output_layout": {
            "convention": "insightface's released SCRFD ONNX models (its SCRFD runtime reads them unchanged)",
            "score_S": "B x A x 1, sigmoid face score; A = (H/S) x (W/S) x 2 anchors, row-major, 2 per location",
            "bbox_S": "B x A x 4, left/top/right/bottom distances from the anchor centre in units of S",
            "kps_S": "B x A x 10, five (x, y) offsets from the anchor centre in units of S (keypoint heads only)",
            "batch": "B images per run (a dynamic axis; the released files are fixed at B = 1)",
            "anchors": "centres at (x * S, y * S) for strides S = 8, 16, 32",
        },
        "check": {
            "sizes_hw": [list(s) for s in ONNX_CHECK_SIZES],
            "batches": list(ONNX_CHECK_BATCHES),
            "max_abs_diff_vs_pytorch": max_diff,
        },
    }


def write_onnx(item: ExportItem, folder: Path) -> dict[str, Any]:
    """Export item's detector to ONNX in folder, verify it against PyTorch, and write onnx.json."""
    module = released_head_module(load_detector(item.arch, item.checkpoint))
    data = export_onnx_bytes(module, item.arch.head.keypoints, ONNX_CHECK_SIZES[0])
    max_diff = onnx_max_difference(module, data, ONNX_CHECK_SIZES)
    if max_diff > ONNX_TOLERANCE:
        raise RuntimeError(f"{item.stem}.onnx: outputs differ from PyTorch by {max_diff:.2e} (> {ONNX_TOLERANCE})")
    atomic_write_bytes(folder / f"{item.stem}.onnx", data)
    note = onnx_note(item, max_diff)
    atomic_write_json(folder / "onnx.json", note)
    return note
