"""The demo data set (the embedded default): synthetic scenes in the official WIDER FACE layout.

`write_demo_dataset` draws the scenes (demo_scene) and writes them with their annotations in the
official layout and the RetinaFace layout (demo_files), into a folder that appears whole or not at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from scrfd_search.data.demo_files import keep_indices, write_file, write_split, write_val_mats
from scrfd_search.data.demo_scene import DemoConfig, DemoImage, generate_split, load_face_sizes
from scrfd_search.errors import UserError
from scrfd_search.evaluation.ground_truth import SUBSETS
from scrfd_search.io_utils import staged_folder

MAX_SIZE_SCALE = 20.0  # beyond this even WIDER's smallest faces would fill a demo image


def summary(config: DemoConfig, splits: dict[str, list[DemoImage]]) -> dict:
    """Counts written to demo_data.json (no timestamps, so the file is stable)."""
    stats = load_face_sizes()
    out: dict = {"generator": "scrfd-search demo-data", "config": asdict(config), "splits": {}}
    for split, images in splits.items():
        faces = [f for im in images for f in im.faces]
        entry = {
            "images": len(images),
            "faces": len(faces),
            "invalid_faces": sum(f.invalid for f in faces),
            "heavy_blur_faces": sum(f.blur == 2 and not f.invalid for f in faces),
            "heavy_occlusion_faces": sum(f.occlusion == 2 and not f.invalid for f in faces),
        }
        if split == "val":
            entry["kept"] = {
                s: sum(len(keep_indices(im, s, config.size_scale, stats)) for im in images) for s in SUBSETS
            }
        out["splits"][split] = entry
    return out


def validate(config: DemoConfig) -> None:
    """Reject impossible settings before anything is written."""
    if config.num_train < 1 or config.num_val < 1:
        raise UserError(f"--train and --val must be at least 1, got {config.num_train} and {config.num_val}")
    if not 64 <= config.min_width <= config.max_width:
        raise UserError(f"image widths must satisfy 64 <= min <= max, got {config.min_width}..{config.max_width}")
    if not 0 < config.size_scale <= MAX_SIZE_SCALE:
        raise UserError(f"--size-scale: {config.size_scale} is not in (0, {MAX_SIZE_SCALE}]")


def write_demo_dataset(out_dir: str | os.PathLike, config: DemoConfig | None = None, force: bool = False) -> dict:
    """Generate the data set (default: DemoConfig()) in a folder beside out_dir, then rename it into place."""
    config = config or DemoConfig()
    validate(config)
    out = Path(out_dir).resolve()
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out}: folder exists and is not empty (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    with staged_folder(out) as tmp:
        splits = {
            "train": generate_split("train", config.num_train, config),
            "val": generate_split("val", config.num_val, config),
        }
        for split, images in splits.items():
            write_split(tmp, split, images)
        write_val_mats(tmp, splits["val"], config.size_scale)
        info = summary(config, splits)
        write_file(tmp / "demo_data.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info
