"""WIDER FACE evaluation speed and memory on the real validation ground truth.

Builds two synthetic prediction sets from the real gt (every face found with probability 0.85,
jittered, plus random false positives): about 12 boxes per image, and 300 per image. Each is written
in the submission format to a temporary folder, then read and evaluated (best of --repeats), with the
peak traced memory of one read+evaluate. The slow, literal transcription of the official algorithm
(scrfd_search.evaluation.reference) runs on the 12-per-image set in the same run for the speed-up
ratio and to check the APs agree.

    .venv/bin/python benchmarks/bench_eval.py [--gt ../shared/widerface_gt] [--repeats 3]
        [--reference-images 3226] [--seed 0]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from scrfd_search.evaluation import (
    SUBSETS,
    WiderFaceGT,
    evaluate,
    load_ground_truth,
    read_predictions,
    write_prediction_file,
)
from scrfd_search.evaluation.reference import evaluate_reference

DEFAULT_GT = Path(__file__).resolve().parents[2] / "shared" / "widerface_gt"


def synthetic_detections(image, rng: np.random.Generator, per_image: int | None) -> tuple[np.ndarray, np.ndarray]:
    """x1 y1 x2 y2 boxes and scores: found faces jittered by ~10% of their size, then false positives.

    per_image None: about 2 false positives per image; otherwise false positives fill up to per_image.
    """
    faces = image.boxes[rng.random(image.num_faces) < 0.85]
    size = np.maximum(faces[:, 2:], 1)
    xy = faces[:, :2] + rng.normal(0, 0.1, faces[:, :2].shape) * size
    wh = size * np.exp(rng.normal(0, 0.1, size.shape))
    hit_scores = np.clip(rng.normal(0.75, 0.15, len(faces)), 0.02, 1.0)
    if per_image is not None:
        xy, wh, hit_scores = xy[:per_image], wh[:per_image], hit_scores[:per_image]
    false_count = rng.poisson(2) if per_image is None else per_image - len(xy)
    false_xy = rng.uniform(0, 1000, (false_count, 2))
    false_wh = rng.uniform(4, 120, (false_count, 2))
    false_scores = rng.uniform(0.02, 0.6, false_count)
    xy, wh = np.vstack([xy, false_xy]), np.vstack([wh, false_wh])
    boxes = np.round(np.column_stack([xy, xy + wh]), 1)
    return boxes, np.round(np.concatenate([hit_scores, false_scores]), 3)


def write_set(gt: WiderFaceGT, folder: Path, per_image: int | None, seed: int) -> int:
    """Write one prediction file per gt image; return the number of boxes written."""
    rng = np.random.default_rng(seed)
    total = 0
    for image in gt.images:
        boxes, scores = synthetic_detections(image, rng, per_image)
        write_prediction_file(folder, image.event, image.name, boxes, scores)
        total += len(scores)
    return total


def best_of(repeats: int, function) -> tuple[float, object]:
    """Fastest wall time of repeats calls, and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_set(gt_dir: Path, gt: WiderFaceGT, folder: Path, repeats: int) -> dict:
    """Time read, evaluate and read+evaluate on one written set; trace the peak memory of one pass."""
    read_s, predictions = best_of(repeats, lambda: read_predictions(folder, gt))
    eval_s, result = best_of(repeats, lambda: evaluate(gt, predictions))
    tracemalloc.start()
    evaluate(load_ground_truth(gt_dir), read_predictions(folder, gt))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"read_s": read_s, "eval_s": eval_s, "peak_mib": peak / 2**20, "predictions": predictions, "result": result}


def print_set(name: str, boxes: int, gt: WiderFaceGT, figures: dict) -> None:
    """Print one set's timings and APs."""
    ap = figures["result"].ap
    print(f"{name}: {len(gt)} images, {boxes} predictions ({boxes / len(gt):.1f} per image)")
    print(
        f"  read {figures['read_s']:.3f} s + evaluate {figures['eval_s']:.3f} s = "
        f"{figures['read_s'] + figures['eval_s']:.3f} s; peak traced memory (gt load + read + evaluate) "
        f"{figures['peak_mib']:.0f} MiB"
    )
    print("  AP " + ", ".join(f"{subset} {100 * ap[subset]:.2f}" for subset in SUBSETS))


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", type=Path, default=DEFAULT_GT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--reference-images", type=int, default=None, help="run the reference on the first N images only (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    load_s, gt = best_of(args.repeats, lambda: load_ground_truth(args.gt))
    print(f"ground truth: {len(gt)} images, {gt.num_faces()} faces, loaded in {load_s:.3f} s")
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        small, large = Path(tmp) / "per_image_12", Path(tmp) / "per_image_300"
        small_boxes = write_set(gt, small, None, args.seed)
        large_boxes = write_set(gt, large, 300, args.seed + 1)
        small_figures = bench_set(args.gt, gt, small, args.repeats)
        print_set("~12 per image", small_boxes, gt, small_figures)
        large_figures = bench_set(args.gt, gt, large, 1)
        print_set("300 per image", large_boxes, gt, large_figures)

    reference_gt = gt if args.reference_images is None else WiderFaceGT(gt.images[: args.reference_images])
    detections = small_figures["predictions"].detections
    fast_s, fast = best_of(args.repeats, lambda: evaluate(reference_gt, detections))
    start = time.perf_counter()
    slow = evaluate_reference(reference_gt, detections)
    slow_s = time.perf_counter() - start
    worst = max(abs(fast.ap[s] - slow[s][0]) for s in SUBSETS)
    print(
        f"reference (literal official loops) on ~12 per image, {len(reference_gt)} images: {slow_s:.1f} s "
        f"vs fast evaluate {fast_s:.3f} s -> speed-up x{slow_s / fast_s:.0f}; largest AP difference {worst:.1e}"
    )
    print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
