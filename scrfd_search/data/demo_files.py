"""The demo data set's files: the official WIDER FACE text and .mat ground truth, and RetinaFace labels.

The val split gets the four evaluation .mat files. Their keep lists follow the rule the official ones
follow (measured in tools/face_size_stats.py: 97.9-99.8 % of WIDER's val faces agree): a valid face
counts in a subset when its box height reaches the subset's threshold, relative to image width
(WIDER's 51, 31 and 11 px of 1024 for easy, medium and hard) times the demo's size_scale. Blur and
occlusion enter as they do in WIDER: through their frequencies in each size class, not the rule.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import scipy.io

from scrfd_search.data.demo_scene import EVENTS, DemoImage, load_face_sizes
from scrfd_search.data.pipelines import GT_SUBDIR
from scrfd_search.evaluation.ground_truth import SUBSETS

MAT_HEADER = b"MATLAB 5.0 MAT-file, written by scrfd-search demo-data (synthetic WIDER FACE ground truth)"
MAT_DESCRIPTION_BYTES = 116  # the MAT-file v5 header's text field

# ---------------------------------------------------------------- annotation files


def wider_txt(images: list[DemoImage]) -> str:
    """The official `wider_face_*_bbx_gt.txt` text."""
    lines = []
    for im in images:
        lines += [im.rel_path, str(len(im.faces))]
        if not im.faces:
            lines.append("0 0 0 0 0 0 0 0 0 0")
        for f in im.faces:
            x1, y1, x2, y2 = (int(v) for v in f.box)
            attrs = (f.blur, 0, 0, int(f.invalid), f.occlusion, f.pose)
            lines.append(" ".join(str(v) for v in (x1, y1, x2 - x1, y2 - y1, *attrs)))
    return "\n".join(lines) + "\n"


def retinaface_txt(images: list[DemoImage]) -> str:
    """The RetinaFace/SCRFD `labelv2.txt` text: landmarks for valid faces, ignore flag for invalid."""
    lines = []
    for im in images:
        lines.append(f"# {im.rel_path} {im.width} {im.height}")
        for f in im.faces:
            box = " ".join(str(int(v)) for v in f.box)
            if f.invalid:
                lines.append(f"{box} 1")
            else:
                lms = " ".join(f"{x:.2f} {y:.2f} 0.0" for x, y in f.landmarks)
                lines.append(f"{box} {lms}")
    return "\n".join(lines) + "\n"


def subset_min_height(subset: str, width: int, size_scale: float, stats: dict) -> float:
    """The smallest box height (px) a face of an image `width` px wide needs to count in a subset."""
    return stats["subset_min_relative_height"][subset] * size_scale * width


def keep_indices(im: DemoImage, subset: str, size_scale: float, stats: dict) -> list[int]:
    """1-based indices of the faces a subset counts: valid faces at least the subset's height."""
    min_height = subset_min_height(subset, im.width, size_scale, stats)
    return [i + 1 for i, f in enumerate(im.faces) if not f.invalid and f.height >= min_height]


def _cell(items: list) -> np.ndarray:
    """A MATLAB cell column (n, 1) of the given items."""
    cell = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell[i, 0] = item
    return cell


def _face_columns(im: DemoImage) -> dict[str, np.ndarray]:
    """Per-image arrays as the official .mat stores them; a face-less image is one row of zeros."""
    if not im.faces:
        zeros = np.zeros((1, 1), np.uint8)
        labels = dict.fromkeys(("blur", "expression", "illumination", "invalid", "occlusion", "pose"), zeros)
        return {"face_bbx": np.zeros((1, 4), np.int32), **labels}
    boxes = np.array([[f.box[0], f.box[1], f.box[2] - f.box[0], f.box[3] - f.box[1]] for f in im.faces], np.int32)

    def column(values: list[int]) -> np.ndarray:
        return np.array(values, np.uint8).reshape(-1, 1)

    return {
        "face_bbx": boxes,
        "blur": column([f.blur for f in im.faces]),
        "expression": column([0] * len(im.faces)),
        "illumination": column([0] * len(im.faces)),
        "invalid": column([int(f.invalid) for f in im.faces]),
        "occlusion": column([f.occlusion for f in im.faces]),
        "pose": column([f.pose for f in im.faces]),
    }


def val_mat_dict(images: list[DemoImage]) -> dict[str, np.ndarray]:
    """The contents of wider_face_val.mat: per-event cells of file names, boxes (x y w h) and labels."""
    events = [e for e in EVENTS if any(im.event == e for im in images)]
    by_event = [[im for im in images if im.event == e] for e in events]
    columns = [[_face_columns(im) for im in ims] for ims in by_event]
    mat = {
        "event_list": _cell(events),
        "file_list": _cell([_cell([im.name for im in ims]) for ims in by_event]),
        "face_bbx_list": _cell([_cell([c["face_bbx"] for c in cols]) for cols in columns]),
    }
    for label in ("blur", "expression", "illumination", "invalid", "occlusion", "pose"):
        mat[f"{label}_label_list"] = _cell([_cell([c[label] for c in cols]) for cols in columns])
    return mat


def subset_mat_dict(images: list[DemoImage], subset: str, size_scale: float, stats: dict) -> dict[str, np.ndarray]:
    """wider_{subset}_val.mat: the val contents plus gt_list, per image the kept faces (1-based)."""
    events = [e for e in EVENTS if any(im.event == e for im in images)]
    gt_list = []
    for event in events:
        keeps = []
        for im in (im for im in images if im.event == event):
            idx = keep_indices(im, subset, size_scale, stats)
            dtype = np.uint8 if len(im.faces) <= 255 else np.uint16  # the smallest type, as MATLAB stores it
            keeps.append(np.array(idx, dtype).reshape(-1, 1))
        gt_list.append(_cell(keeps))
    return {**val_mat_dict(images), "gt_list": _cell(gt_list)}


def mat_bytes(mdict: dict[str, np.ndarray]) -> bytes:
    """A compressed MAT v5 file with a fixed header text (scipy stamps the time; we want stable bytes)."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, mdict, do_compression=True, oned_as="column")
    data = bytearray(buffer.getvalue())
    data[:MAT_DESCRIPTION_BYTES] = MAT_HEADER.ljust(MAT_DESCRIPTION_BYTES, b" ")[:MAT_DESCRIPTION_BYTES]
    return bytes(data)


# ---------------------------------------------------------------- writing the folder


def write_file(path: Path, data: bytes | str) -> None:
    """Write a file inside the (private, temporary) output tree, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_split(root: Path, split: str, images: list[DemoImage]) -> None:
    """Images, the official text file, the RetinaFace labelv2.txt (images linked, not copied)."""
    for im in images:
        write_file(root / f"WIDER_{split}" / "images" / im.rel_path, im.jpeg)
    write_file(root / GT_SUBDIR / f"wider_face_{split}_bbx_gt.txt", wider_txt(images))
    write_file(root / split / "labelv2.txt", retinaface_txt(images))
    os.symlink(os.path.join("..", f"WIDER_{split}", "images"), root / split / "images")


def write_val_mats(root: Path, images: list[DemoImage], size_scale: float) -> None:
    """The four evaluation ground-truth files, beside the text annotations."""
    stats = load_face_sizes()
    folder = root / GT_SUBDIR
    write_file(folder / "wider_face_val.mat", mat_bytes(val_mat_dict(images)))
    for subset in SUBSETS:
        mdict = subset_mat_dict(images, subset, size_scale, stats)
        write_file(folder / f"wider_{subset}_val.mat", mat_bytes(mdict))
