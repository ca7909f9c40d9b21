"""Face sizes and ATSS positive anchors per stride after the training augmentation, small-crop list
(0.3-1.0) against SCRFD's large-crop list (0.3-2.0), side by side.

Runs the training pipeline (square crop, resize to IMG x IMG, flip) over a random sample of the
split's images, once per crop list, and counts faces by size (sqrt(w*h) px: <8, 8-16, 16-32, 32-64,
64-128, >=128) and the anchors mmdet's ATSSAssigner (topk 9) makes positive at strides 8/16/32
(two square anchors per location, 16/32, 64/128, 256/512 px, as the SCRFD reference). DIR is the
official layout (wider_face_split/, WIDER_<split>/images/) or the RetinaFace layout
(<split>/labelv2.txt). As in `train` and `launch`, the split's annotations are parsed and every listed
image is decoded first: a data set with an unreadable image is refused, naming it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scrfd_search.data.pipelines import GT_SUBDIR, LARGE_CROPS, SMALL_CROPS, dataset_config
from scrfd_search.data.preflight import check_split
from scrfd_search.data.stats import collect_stats, format_table, plot_png
from scrfd_search.errors import UserError, check_seed
from scrfd_search.io_utils import atomic_write_bytes, check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare --data, --split, --img-size, --num-images, --seed and --plot."""
    parser.add_argument("--data", required=True, metavar="DIR", help="data set root (official or RetinaFace layout)")
    parser.add_argument("--split", default="train", help="split to sample (default train)")
    parser.add_argument("--img-size", type=int, default=640, metavar="PX", help="training input size (default 640)")
    parser.add_argument("--num-images", type=int, default=200, metavar="N", help="images to sample (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the sample and the augmentation (default 0)")
    parser.add_argument("--plot", metavar="PATH", help="also write a PNG figure here")


def detect_layout(root: Path, split: str) -> str:
    """'wider' or 'retinaface', from which annotation file exists; UserError if neither."""
    if (root / GT_SUBDIR / f"wider_face_{split}_bbx_gt.txt").is_file():
        return "wider"
    if (root / split / "labelv2.txt").is_file():
        return "retinaface"
    raise UserError(
        f"{root}: no annotations for split {split!r}: expected wider_face_split/wider_face_{split}_bbx_gt.txt "
        f"or {split}/labelv2.txt"
    )


def validate(args: argparse.Namespace) -> None:
    """Check the arguments before any work."""
    if not Path(args.data).is_dir():
        raise UserError(f"--data {args.data}: not a folder")
    if args.img_size < 32 or args.img_size % 32:
        raise UserError(f"--img-size {args.img_size}: expected a positive multiple of 32")
    check_seed(args.seed)
    if args.num_images < 1:
        raise UserError(f"--num-images {args.num_images}: expected at least 1")
    if args.plot and Path(args.plot).is_dir():
        raise UserError(f"--plot {args.plot}: is a folder, expected a file path")
    if args.plot:
        check_writable(Path(args.plot).parent, "--plot")


def sample_infos(args: argparse.Namespace) -> tuple[list[dict], int]:
    """Build the split's dataset (as training filters it) and pick a seeded sample of data_infos."""
    import numpy as np

    from scrfd_search.data.datasets import RetinaFaceDataset, WiderFaceDataset  # mmdet: only once needed

    layout = detect_layout(Path(args.data), args.split)
    check_split(args.data, args.split, layout)  # the data rule of train and launch: unreadable images refused
    cfg = dataset_config(args.data, args.split, args.img_size, layout=layout)
    cls = WiderFaceDataset if layout == "wider" else RetinaFaceDataset
    dataset = cls(
        data_root=cfg["data_root"],
        ann_file=cfg["ann_file"],
        data_prefix=cfg["data_prefix"],
        pipeline=[],
        test_mode=False,  # statistics of training samples: images without valid faces are dropped
    )
    if len(dataset) == 0:
        raise UserError(f"{cfg['ann_file']}: no image with a valid face in split {args.split!r}")
    rng = np.random.default_rng(args.seed)
    count = min(args.num_images, len(dataset))
    indices = sorted(rng.choice(len(dataset), size=count, replace=False).tolist())
    return [dataset.get_data_info(i) for i in indices], len(dataset)


def run(args: argparse.Namespace) -> int:
    """Collect the statistics for both crop lists, print the table, optionally write the figure."""
    validate(args)
    infos, total = sample_infos(args)
    columns = {
        f"small crops {SMALL_CROPS[0]}-{SMALL_CROPS[-1]}": collect_stats(infos, args.img_size, SMALL_CROPS, args.seed),
        f"large crops {LARGE_CROPS[0]}-{LARGE_CROPS[-1]}": collect_stats(infos, args.img_size, LARGE_CROPS, args.seed),
    }
    print(
        f"{len(infos)} of {total} {args.split} images of {args.data}, "
        f"{args.img_size}x{args.img_size} training input, seed {args.seed}"
    )
    print(format_table(columns))
    if args.plot:
        title = f"{args.data} ({args.split}, {len(infos)} images, {args.img_size}px)"
        atomic_write_bytes(args.plot, plot_png(columns, title))
        print(f"wrote {args.plot}")
    return 0
