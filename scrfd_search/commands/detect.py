"""Detect faces in images with a checkpoint (--checkpoint with --arch or --config) or an ONNX file (--onnx).

Inference as insightface's SCRFD runtime does it: keep the aspect ratio, fit into --size x --size
(default 640), pad right and bottom; keep faces scoring >= --score-thr (0.5), NMS at --nms-iou (0.4).
Per image, OUT/<name>.json (x1 y1 x2 y2 box, score, five landmarks per face, in image pixels) and
OUT/<name>.png with the faces drawn; images in folders keep their sub-folders under OUT.

--wider writes the WIDER FACE prediction layout instead (OUT/<event>/<image>.txt, which
`scrfd-search eval-widerface` scores) with the reference's WIDER FACE test settings: score 0.02,
NMS 0.45, the image rescaled to fit 640 x 640 (--wider-mode 0) or at its original scale (2), as the
reference's tools/test_widerface.py modes 0 and 2. An unreadable image is reported and skipped (exit
status 1 at the end); the others are still processed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrfd_search.errors import UserError
from scrfd_search.evaluation.predictions import write_prediction_file
from scrfd_search.io_utils import atomic_write_bytes, atomic_write_json
from scrfd_search.space.arch import ArchSpec

WIDER_SCORE_THR = 0.02
WIDER_NMS_IOU = 0.45
DEFAULT_SCORE_THR = 0.5
DEFAULT_NMS_IOU = 0.4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders of images")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint of this project's detector (.pth)")
    parser.add_argument("--arch", type=Path, help="the checkpoint's ArchSpec JSON")
    parser.add_argument("--config", type=Path, help="or the checkpoint's config (.py), which names its ArchSpec")
    parser.add_argument(
        "--onnx", type=Path, help="an ONNX file in the released SCRFD convention (instead of --checkpoint)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--size", type=int, default=640, help="input size: fit and pad to SIZE x SIZE (default 640)")
    parser.add_argument(
        "--score-thr",
        type=float,
        default=None,
        help=f"keep faces scoring at least this (default {DEFAULT_SCORE_THR}; --wider {WIDER_SCORE_THR})",
    )
    parser.add_argument(
        "--nms-iou",
        type=float,
        default=None,
        help=f"NMS IoU threshold (default {DEFAULT_NMS_IOU}; --wider {WIDER_NMS_IOU})",
    )
    parser.add_argument("--wider", action="store_true", help="write WIDER FACE prediction files (event folders)")
    parser.add_argument(
        "--wider-mode",
        type=int,
        default=0,
        choices=(0, 2),
        help="with --wider: 0 = rescale to fit 640x640, 2 = original scale (the reference's test modes; default 0)",
    )


def _arch_for(args: argparse.Namespace) -> object:
    """The ArchSpec from --arch, from --config's scrfd_arch, or from the checkpoint's own metadata."""
    import pickle

    import torch
    from mmengine.config import Config

    if args.arch is not None and args.config is not None:
        raise UserError("give --arch or --config, not both")
    if args.arch is not None:
        return ArchSpec.load(args.arch)
    if args.config is not None:
        if not args.config.is_file():
            raise UserError(f"--config {args.config}: no such file")
        data = Config.fromfile(str(args.config), import_custom_modules=False).to_dict()
        if "scrfd_arch" not in data:
            raise UserError(f"--config {args.config}: holds no scrfd_arch (not written by scrfd-search; use --arch)")
        return ArchSpec.from_dict(data["scrfd_arch"], str(args.config))
    try:
        data = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise UserError(f"--checkpoint {args.checkpoint}: not a PyTorch checkpoint ({exc})") from None
    meta = data.get("meta", {}) if isinstance(data, dict) else {}
    if "scrfd_arch" not in meta:
        raise UserError(f"--checkpoint {args.checkpoint}: does not name its architecture; give --arch or --config")
    return ArchSpec.from_dict(meta["scrfd_arch"], f"{args.checkpoint} (meta)")


def _check(args: argparse.Namespace) -> None:
    """Reject inconsistent options before any work."""
    if (args.checkpoint is None) == (args.onnx is None):
        raise UserError("expected either --checkpoint (with --arch or --config) or --onnx (exactly one)")
    if args.onnx is not None and (args.arch is not None or args.config is not None):
        raise UserError("--arch/--config describe a checkpoint; an --onnx file needs neither")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UserError(f"--checkpoint {args.checkpoint}: no such file")
    if args.size < 32 or args.size % 32:
        raise UserError(f"--size: {args.size} must be a multiple of 32 (the largest stride), at least 32")
    for flag, value in (("--score-thr", args.score_thr), ("--nms-iou", args.nms_iou)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise UserError(f"{flag}: {value} must be between 0 and 1")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out}: exists and is not a folder")


def run(args: argparse.Namespace) -> int:
    """Detect, write the per-image results, report skipped images."""
    import cv2
    from mmengine.utils import ProgressBar

    from scrfd_search.inference import (  # torch, onnxruntime: keeps --help fast
        CheckpointDetector,
        OnnxDetector,
        collect_images,
        draw,
        letterbox,
        read_image,
        wider_input,
    )

    _check(args)
    images = collect_images(args.inputs, exclude=args.out)
    detector = (
        OnnxDetector(args.onnx) if args.onnx is not None else CheckpointDetector(_arch_for(args), args.checkpoint)
    )
    score_thr = args.score_thr if args.score_thr is not None else (WIDER_SCORE_THR if args.wider else DEFAULT_SCORE_THR)
    nms_iou = args.nms_iou if args.nms_iou is not None else (WIDER_NMS_IOU if args.wider else DEFAULT_NMS_IOU)
    bar = ProgressBar(len(images), file=sys.stderr) if len(images) > 1 else None
    skipped, faces = [], 0
    for path, rel in images:
        image = read_image(path)
        if image is None:
            skipped.append(path)
            print(f"\nscrfd-search detect: skipped {path}: not a readable image", file=sys.stderr)
        else:
            item = wider_input(image, args.wider_mode) if args.wider else letterbox(image, args.size)
            found = detector(item, score_thr, nms_iou)
            faces += len(found.scores)
            if args.wider:
                event = path.parent.name or "images"
                write_prediction_file(args.out, event, path.stem, found.boxes, found.scores)
            else:
                h, w = image.shape[:2]
                record = {"image": str(path), "width": w, "height": h, "score_thr": score_thr, "nms_iou": nms_iou}
                atomic_write_json(args.out / f"{rel}.json", {**record, "faces": found.to_json()})
                ok, png = cv2.imencode(".png", draw(image, found))
                if ok:
                    atomic_write_bytes(args.out / f"{rel}.png", png.tobytes())
        if bar is not None:
            bar.update()
    done = len(images) - len(skipped)
    if bar is not None:
        print(file=sys.stderr)
    if done == 0:
        raise UserError(f"none of the {len(images)} image(s) could be read (first: {skipped[0]})")
    print(
        f"{faces} face(s) in {done} image(s) written to {args.out}" + (f"; {len(skipped)} skipped" if skipped else "")
    )
    return 1 if skipped else 0
