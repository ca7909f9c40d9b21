"""Easy/medium/hard AP of a folder of WIDER FACE prediction files, by the official protocol.

The folder holds <event>/<image>.txt files: the image name, the number of boxes, then one
`x y w h score` line per box. Images of the ground truth without a file count as having no
detections (their number is reported on stderr). The ground-truth folder holds wider_face_val.mat
and wider_{easy,medium,hard}_val.mat.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from scrfd_search.evaluation import SUBSETS, evaluate, load_ground_truth, read_predictions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare --pred, --gt and --json."""
    parser.add_argument("--pred", required=True, metavar="DIR", help="folder of <event>/<image>.txt predictions")
    parser.add_argument("--gt", required=True, metavar="DIR", help="folder of the four WIDER FACE val .mat files")
    parser.add_argument(
        "--json", action="store_true", help='print only {"easy": .., "medium": .., "hard": ..} (fractions)'
    )


def _json_number(value: float) -> float | None:
    """A float for JSON, NaN (an AP over no faces) as null."""
    return None if math.isnan(value) else value


def run(args: argparse.Namespace) -> int:
    """Read the ground truth and the predictions, evaluate, print the APs."""
    gt = load_ground_truth(args.gt)
    predictions = read_predictions(args.pred, gt, log_missing=False)
    result = evaluate(gt, predictions)
    if predictions.missing:
        print(
            f"note: {len(predictions.missing)} of {len(gt)} ground-truth images have no prediction file "
            f"(counted as no detections)",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps({subset: _json_number(result.ap[subset]) for subset in SUBSETS}))
        return 0
    print(f"{'subset':<8} {'AP (%)':>7} {'faces':>7}")
    for subset in SUBSETS:
        print(f"{subset:<8} {100 * result.ap[subset]:>7.2f} {result.num_faces[subset]:>7}")
    print(
        f"images: {result.num_images}, predictions: {result.num_predictions}, "
        f"missing prediction files: {len(predictions.missing)}"
        + (f", files for images outside the ground truth: {len(predictions.extra)}" if predictions.extra else "")
    )
    return 0
