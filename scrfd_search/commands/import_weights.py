"""Import released SCRFD weights: an insightface ONNX file or a checkpoint of the reference's mmdet 2.x code.

Writes OUT, a checkpoint of this project's detector for ARCH.json that `detect`, `export --arch
--checkpoint`, `train --load-from` and tools/test.py accept. ONNX convs (BatchNorm folded in) are
matched to the architecture's convs in execution order, shape by shape, and by name wherever the
file kept the reference's parameter names; a reference checkpoint is renamed by the reference's
module layout. An ONNX import then runs the detector beside onnxruntime on a random input and
writes OUT only if every output agrees within 1e-4 (else the error names the first differing
layer). An architecture that does not fit is one error naming the first mismatching layer and both
shapes; nothing is written then.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    parser.add_argument("src", type=Path, metavar="SRC", help="a released .onnx file or a reference mmdet 2.x .pth")
    parser.add_argument(
        "--arch", type=Path, required=True, help="the ArchSpec JSON it holds, e.g. configs/scrfd/scrfd_500m_bnkps.json"
    )
    parser.add_argument("--out", type=Path, required=True, help="the checkpoint to write (.pth)")


def run(args: argparse.Namespace) -> int:
    """Import, self-check, write; print what was done."""
    from scrfd_search.weights import import_weights  # torch, onnx: keeps --help fast

    report = import_weights(args.src, args.arch, args.out)
    if report.max_abs_diff is not None:
        h, w = report.check_hw or (0, 0)
        check = f"outputs match onnxruntime within {report.max_abs_diff:.1e} on a random {h}x{w} input"
    else:
        check = "every tensor renamed and shape-checked"
    what = "convs" if report.source_kind == "onnx" else "tensors"
    print(f"{args.out}: {report.tensors} {what} from {args.src}; {check}")
    return 0
