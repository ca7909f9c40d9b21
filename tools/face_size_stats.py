"""Regenerate scrfd_search/data/face_sizes.json from the real WIDER FACE val ground truth.

Usage: .venv/bin/python tools/face_size_stats.py [GT_DIR] [--out PATH]

GT_DIR defaults to ../shared/widerface_gt beside the repository. The result is a small summary
(quantiles, thresholds) that the synthetic demo-data generator samples face sizes from. WIDER FACE
images are all 1024 px wide, so sizes are expressed relative to that width.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.io

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scrfd_search.io_utils import atomic_write_json  # noqa: E402

WIDER_IMAGE_WIDTH = 1024
QUANTILE_STEPS = 101  # quantiles at 0, 0.01, ..., 1
CROWD_BINS = (1, 2, 4, 8, 16, 32)  # lower ends of the faces-per-image bins sizes are summarised by
SUBSETS = ("easy", "medium", "hard")
ATTRIBUTES = ("blur", "occlusion")  # WIDER's labels: 0 none, 1 partial/normal, 2 heavy


def load_faces(gt_dir: Path) -> dict[str, np.ndarray]:
    """Per-face arrays over the whole val set: box (x y w h), invalid flag, blur and occlusion labels, and
    subset membership."""
    val = scipy.io.loadmat(gt_dir / "wider_face_val.mat")
    keeps = {s: scipy.io.loadmat(gt_dir / f"wider_{s}_val.mat")["gt_list"] for s in SUBSETS}
    boxes, invalid, counts, crowd = [], [], [], []
    labels: dict[str, list[np.ndarray]] = {name: [] for name in ATTRIBUTES}
    kept: dict[str, list[np.ndarray]] = {s: [] for s in SUBSETS}
    for e in range(val["event_list"].shape[0]):
        for i in range(val["file_list"][e, 0].shape[0]):
            box = val["face_bbx_list"][e, 0][i, 0].astype(np.float64).reshape(-1, 4)
            if not box.any():  # an image without faces is stored as one row of zeros
                counts.append(0)
                continue
            counts.append(len(box))
            boxes.append(box)
            crowd.append(np.full(len(box), len(box)))
            invalid.append(val["invalid_label_list"][e, 0][i, 0].ravel().astype(bool))
            for name in ATTRIBUTES:
                labels[name].append(val[f"{name}_label_list"][e, 0][i, 0].ravel().astype(int))
            for s in SUBSETS:
                member = np.zeros(len(box), dtype=bool)
                member[keeps[s][e, 0][i, 0].ravel().astype(int) - 1] = True
                kept[s].append(member)
    return {
        "boxes": np.concatenate(boxes),
        "invalid": np.concatenate(invalid),
        "counts": np.asarray(counts),
        "faces_in_image": np.concatenate(crowd),
        **{name: np.concatenate(values) for name, values in labels.items()},
        **{f"keep_{s}": np.concatenate(kept[s]) for s in SUBSETS},
    }


def best_threshold(sizes: np.ndarray, kept: np.ndarray) -> float:
    """The size t for which `size >= t` agrees best with the subset's keep list."""
    candidates = np.unique(sizes)
    order = np.argsort(sizes)
    sorted_sizes, sorted_kept = sizes[order], kept[order]
    # errors(t) = kept faces below t + dropped faces at or above t
    kept_below = np.concatenate([[0], np.cumsum(sorted_kept)])
    dropped_at_or_above = (~sorted_kept).sum() - np.concatenate([[0], np.cumsum(~sorted_kept)])
    first_index = np.searchsorted(sorted_sizes, candidates, side="left")
    errors = kept_below[first_index] + dropped_at_or_above[first_index]
    return float(candidates[int(np.argmin(errors))])


def summarize(faces: dict[str, np.ndarray]) -> dict:
    """Quantiles of relative face size, aspect ratio and faces per image, and subset thresholds."""
    boxes, valid = faces["boxes"], ~faces["invalid"]
    w, h = np.maximum(boxes[:, 2], 0), np.maximum(boxes[:, 3], 0)
    size = np.sqrt(w * h)
    rel = size[valid & (size > 0)] / WIDER_IMAGE_WIDTH
    big_enough = valid & (w >= 10) & (h >= 10)  # aspect ratios of tiny boxes are mostly rounding
    q = np.linspace(0, 1, QUANTILE_STEPS)
    q21 = np.linspace(0, 1, 21)
    return {
        "source": "WIDER FACE val ground truth (wider_face_val.mat, wider_{easy,medium,hard}_val.mat)",
        "generated_by": "tools/face_size_stats.py",
        "reference_image_width": WIDER_IMAGE_WIDTH,
        "num_images": int(len(faces["counts"])),
        "num_faces": int(len(boxes)),
        "num_valid_faces": int(valid.sum()),
        "size_definition": "sqrt(w*h) / reference_image_width, valid faces",
        "relative_size_quantiles": [round(float(v), 6) for v in np.quantile(rel, q)],
        "aspect_ratio_quantiles": [round(float(v), 4) for v in np.quantile(h[big_enough] / w[big_enough], q21)],
        "faces_per_image_quantiles": [float(v) for v in np.quantile(faces["counts"], q21)],
        "invalid_fraction": round(float(faces["invalid"].mean()), 5),
        "subset_min_relative_size": {
            s: round(best_threshold(size[valid], faces[f"keep_{s}"][valid]) / WIDER_IMAGE_WIDTH, 6) for s in SUBSETS
        },
        "subset_kept_fraction": {s: round(float(faces[f"keep_{s}"].mean()), 5) for s in SUBSETS},
        **height_rule(faces, h, valid),
        "attributes_by_size_class": attributes_by_size_class(faces),
        "crowd_bins": list(CROWD_BINS),
        "relative_size_quantiles_by_crowd": sizes_by_crowd(faces, rel_all=size / WIDER_IMAGE_WIDTH),
    }


def sizes_by_crowd(faces: dict[str, np.ndarray], rel_all: np.ndarray) -> list[list[float]]:
    """Per faces-per-image bin (CROWD_BINS), 21 quantiles of relative size: crowds hold the small faces."""
    valid = ~faces["invalid"] & (rel_all > 0)
    edges = [*CROWD_BINS[1:], np.inf]
    out = []
    for lo, hi in zip(CROWD_BINS, edges, strict=True):
        member = valid & (faces["faces_in_image"] >= lo) & (faces["faces_in_image"] < hi)
        out.append([round(float(v), 6) for v in np.quantile(rel_all[member], np.linspace(0, 1, 21))])
    return out


def height_rule(faces: dict[str, np.ndarray], h: np.ndarray, valid: np.ndarray) -> dict[str, dict[str, float]]:
    """Per subset, the height t for which `height >= t` best matches the keep list (relative to the
    reference width), and the share of valid faces on which that rule and the list agree."""
    thresholds = {s: best_threshold(h[valid], faces[f"keep_{s}"][valid]) for s in SUBSETS}
    agreement = {s: float(((h >= thresholds[s]) == faces[f"keep_{s}"])[valid].mean()) for s in SUBSETS}
    return {
        "subset_min_relative_height": {s: round(t / WIDER_IMAGE_WIDTH, 6) for s, t in thresholds.items()},
        "subset_height_rule_agreement": {s: round(a, 5) for s, a in agreement.items()},
    }


def size_classes(faces: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Valid faces by the hardest subset they first appear in: easy, medium only, hard only, or none."""
    valid = ~faces["invalid"]
    easy, medium, hard = (faces[f"keep_{s}"] for s in SUBSETS)
    return {
        "easy": valid & easy,
        "medium": valid & medium & ~easy,
        "hard": valid & hard & ~medium,
        "none": valid & ~hard,
    }


def attributes_by_size_class(faces: dict[str, np.ndarray]) -> dict[str, dict[str, list[float]]]:
    """Per size class, the fractions of faces with each blur and occlusion label (0, 1, 2)."""
    return {
        name: {
            attr: [round(float((faces[attr][member] == level).mean()), 4) for level in range(3)] for attr in ATTRIBUTES
        }
        for name, member in size_classes(faces).items()
    }


def main(argv: list[str] | None = None) -> int:
    """Read the .mat files, summarize, write the JSON atomically."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gt_dir", nargs="?", type=Path, default=REPO.parent / "shared" / "widerface_gt")
    parser.add_argument("--out", type=Path, default=REPO / "scrfd_search" / "data" / "face_sizes.json")
    args = parser.parse_args(argv)
    if not (args.gt_dir / "wider_face_val.mat").is_file():
        print(f"face_size_stats: error: {args.gt_dir}/wider_face_val.mat not found", file=sys.stderr)
        return 2
    stats = summarize(load_faces(args.gt_dir))
    atomic_write_json(args.out, stats)
    thresholds = stats["subset_min_relative_height"]
    print(f"wrote {args.out}: {stats['num_valid_faces']} valid faces, relative height thresholds {thresholds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
