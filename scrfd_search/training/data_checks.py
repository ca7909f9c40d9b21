"""What a run checks in its data before it starts, and the warm-up length its data size allows."""

from __future__ import annotations

from pathlib import Path

from scrfd_search.config_builder import (
    DataSettings,
)
from scrfd_search.data.annotations import parse_retinaface_txt, parse_wider_txt
from scrfd_search.data.pipelines import dataset_config
from scrfd_search.errors import UserError
from scrfd_search.evaluation.ground_truth import FACES_FILE, SUBSET_FILES

REFERENCE_WARMUP_ITERS = 1500


def check_data(data: DataSettings) -> None:
    """Raise UserError naming the first missing piece: data folder, annotation file, image folder, gt file."""
    root = Path(data.data_root)
    if not root.is_dir():
        raise UserError(f"{root}: data folder not found (expected the WIDER FACE layout: WIDER_train/, ...)")
    for split in ("train", "val"):
        layout = dataset_config(str(root), split=split, layout=data.layout)
        ann = (data.train_ann if split == "train" else data.val_ann) or layout["ann_file"]
        img = (data.train_img if split == "train" else data.val_img) or layout["data_prefix"]["img"]
        if not (root / ann).is_file():
            raise UserError(f"{root}: missing {ann} (the {split} annotation file {root / ann} was not found)")
        img = img.rstrip("/")
        if not (root / img).is_dir():
            raise UserError(f"{root}: missing {img} (the {split} image folder {root / img} was not found)")
    gt_dir = Path(data.gt_dir)
    if not gt_dir.is_dir():
        raise UserError(f"{gt_dir}: ground-truth folder not found (expected the WIDER FACE val .mat files)")
    for name in (FACES_FILE, *SUBSET_FILES.values()):
        if not (gt_dir / name).is_file():
            raise UserError(f"{gt_dir / name}: validation ground-truth file not found")


def warmup_iters_for(data: DataSettings, epochs: int, reference: int = REFERENCE_WARMUP_ITERS) -> int:
    """The reference's warm-up length, capped at a tenth of the run's iterations.

    Short runs on small data (search trials, demo sets) would otherwise spend most of their steps warming up.
    """
    ann = data.train_ann or dataset_config(data.data_root, split="train", layout=data.layout)["ann_file"]
    parse = parse_wider_txt if data.layout == "wider" else parse_retinaface_txt
    images = len(parse(Path(data.data_root) / ann))
    if data.max_train_images is not None:
        images = min(images, data.max_train_images)
    iterations = epochs * max(1, -(-images // data.batch_size))
    return min(reference, max(1, iterations // 10))
