"""Training data pipeline throughput on one core, against decode-only and decode+crop+resize ceilings.

Writes a demo data set of WIDER-sized JPEGs (--width px wide, default 1024) to a temporary folder,
pins this process to one core (OpenCV and torch single-threaded) and measures, over --rounds
passes, every variant on each image in turn (so a busy neighbour slows all variants alike; the
median pass is reported):

  decode            read the file and cv2.imdecode it (what LoadImageFromFile does): the ceiling
  decode+crop+resize  plus SCRFD's square crop (same scale choices, padded where it leaves the
                    image) resized to --img-size, the cheapest way known (crop_and_resize): the
                    ceiling of any pipeline with those steps
  (crop inside, no pad)  the same with the square kept inside the image: a cheaper ceiling that
                    SCRFD's large crops (up to twice the short side) cannot reach; for reference
  before            the training pipeline as it was: every crop cut and padded into a filled array,
                    then resized; mmdet's np.flip view; mmdet's float32 PhotoMetricDistortion
  after             the training pipeline now (train_pipeline()): the crop resized straight from
                    the image, cv2.flip, the photometric parameters drawn here and applied later
                    on the trial's device (its cost there is printed separately)

and then how many cores one trial needs to feed a GPU that trains at each --gpu-rates images/s.

    .venv/bin/python benchmarks/bench_data_pipeline.py [--images 48] [--width 1024] [--img-size 640]
        [--rounds 5] [--gpu-rates 250,500,1000,2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from scrfd_search.builders import register_modules
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.data.pipelines import LARGE_CROPS, dataset_config
from scrfd_search.data.transforms import FaceRandomFlip, RandomSquareCrop, crop_and_resize


class BaselineSquareCrop(RandomSquareCrop):
    """The square crop as it was: every crop copied into a freshly filled array."""

    def _crop_image(self, img: np.ndarray, patch: np.ndarray) -> np.ndarray:
        """np.full of the whole patch, then a copy of the part inside the image."""
        left, top, right, bottom = (int(v) for v in patch)
        out = np.full((bottom - top, right - left) + img.shape[2:], self.pad_value, dtype=img.dtype)
        src_x1, src_y1 = max(left, 0), max(top, 0)
        src_x2, src_y2 = min(right, img.shape[1]), min(bottom, img.shape[0])
        if src_x2 > src_x1 and src_y2 > src_y1:
            out[src_y1 - top : src_y2 - top, src_x1 - left : src_x2 - left] = img[src_y1:src_y2, src_x1:src_x2]
        return out


class BaselineFaceRandomFlip(FaceRandomFlip):
    """The flip as it was: mmdet's (an np.flip view), then the keypoints."""

    def _flip(self, results: dict) -> None:
        """mmdet's RandomFlip._flip, then the keypoint mirroring of FaceRandomFlip."""
        from mmdet.datasets.transforms import RandomFlip

        from scrfd_search.data.transforms import flip_keypoints

        RandomFlip._flip(self, results)
        if results.get("gt_keypoints") is not None:
            results["gt_keypoints"] = flip_keypoints(
                results["gt_keypoints"], results["img"].shape[:2], results["flip_direction"]
            )


def baseline_pipeline(pipeline: list[dict]) -> list[dict]:
    """The pipeline with the crop, flip and photometric steps as they were before the uint8 rewrite."""
    swap = {
        "RandomSquareCrop": "BaselineSquareCrop",
        "FaceRandomFlip": "BaselineFaceRandomFlip",
        "DrawPhotoMetricDistortion": "PhotoMetricDistortion",
    }
    steps = [{**step, "type": swap.get(step["type"], step["type"])} for step in pipeline]
    return [{**step, "lazy": False} if step["type"] == "BaselineSquareCrop" else step for step in steps]


def register_baselines() -> None:
    """Put the baseline transforms in mmdet's registry (once)."""
    from mmdet.registry import TRANSFORMS

    for cls in (BaselineSquareCrop, BaselineFaceRandomFlip):
        if TRANSFORMS.get(cls.__name__) is None:
            TRANSFORMS.register_module(module=cls)


def pin_to_one_core() -> int:
    """Run this process on one core with single-threaded OpenCV and torch; return the core."""
    import torch

    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    return core


def decode(path: str) -> np.ndarray:
    """Read and decode one JPEG as LoadImageFromFile does (BGR uint8)."""
    return cv2.imdecode(np.frombuffer(Path(path).read_bytes(), np.uint8), cv2.IMREAD_COLOR)


def decode_crop_resize(path: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Decode, then the size x size resize of a square of a LARGE_CROPS share of the short side at a
    random position (pad where it leaves the image), made the cheapest way known (crop_and_resize)."""
    img = decode(path)
    height, width = img.shape[:2]
    side = max(1, int(rng.choice(LARGE_CROPS) * min(height, width)))
    left = int(rng.integers(min(0, width - side), max(0, width - side) + 1))
    top = int(rng.integers(min(0, height - side), max(0, height - side) + 1))
    return crop_and_resize(img, left, top, side, (size, size), 128)


def decode_crop_resize_inside(path: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """As decode_crop_resize, with the square capped at the short side and kept inside the image
    (no padding): the cheaper ceiling of a crop that never leaves the image (not SCRFD's)."""
    img = decode(path)
    height, width = img.shape[:2]
    side = max(1, int(min(1.0, rng.choice(LARGE_CROPS)) * min(height, width)))
    left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    return crop_and_resize(img, left, top, side, (size, size), 128)


def build_dataset(root: Path, img_size: int, baseline: bool):
    """The WIDER-layout training dataset with the current (or the baseline) pipeline."""
    from mmdet.registry import DATASETS

    cfg = dataset_config(str(root), split="train", img_size=img_size)
    if baseline:
        cfg["pipeline"] = baseline_pipeline(cfg["pipeline"])
    return DATASETS.build(cfg)


def interleaved_rates(variants: dict[str, Callable[[int], object]], count: int, rounds: int) -> dict[str, list]:
    """Images/s of each variant per round, timing the variants image by image in rotating order.

    On a shared machine a busy moment then slows every variant alike instead of one whole pass.
    """
    names = list(variants)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        for i in range(count):
            shift = (i + round_index) % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                variants[name](i)
                spent[name] += time.perf_counter() - start
        for name in names:
            rates[name].append(count / spent[name])
    return rates


def device_photometric_ms(args: argparse.Namespace) -> str:
    """Milliseconds FaceDataPreprocessor's distortion takes per image on this core (and on a GPU if any)."""
    import torch

    from scrfd_search.models.preprocessor import photometric_distortion

    params = {
        "mode": 1,
        "brightness": True,
        "contrast": True,
        "saturation": True,
        "hue": True,
        "swap": True,
        "delta": 10.0,
        "alpha": 1.2,
        "saturation_value": 1.3,
        "hue_value": 9.0,
        "order": [2, 0, 1],
    }  # fmt: skip  (every step on: the most expensive draw)
    generator = torch.Generator().manual_seed(args.seed)
    img = torch.randint(0, 256, (3, args.img_size, args.img_size), dtype=torch.uint8, generator=generator)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out = []
    for device in devices:
        x = img.to(device)
        photometric_distortion(x, params)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            photometric_distortion(x, params)
        if device == "cuda":
            torch.cuda.synchronize()
        out.append(f"{device} {(time.perf_counter() - start) / 20 * 1000:.1f} ms")
    return ", ".join(out) + " (all steps on; paid by the training process, not the loader)"


def main(argv: list[str] | None = None) -> int:
    """Generate the images, measure every variant, print the rates, ratios and the cores-per-GPU table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48, help="images in the data set (default 48)")
    parser.add_argument("--width", type=int, default=1024, help="image width in px (default 1024, WIDER's)")
    parser.add_argument("--img-size", type=int, default=640, help="training input size (default 640)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved passes per variant (default 5)")
    parser.add_argument(
        "--gpu-rates", default="250,500,1000,2000", help="GPU training rates in images/s for the cores table"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the augmentation (default 0)")
    args = parser.parse_args(argv)
    register_modules()
    import scrfd_search.data.datasets  # noqa: F401  (registers WiderFaceDataset)
    import scrfd_search.data.transforms  # noqa: F401  (registers the face transforms)

    register_baselines()
    core = pin_to_one_core()
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        root = Path(tmp) / "demo"
        config = DemoConfig(
            num_train=args.images, num_val=1, seed=args.seed, min_width=args.width, max_width=args.width
        )
        write_demo_dataset(root, config)
        after = build_dataset(root, args.img_size, baseline=False)
        before = build_dataset(root, args.img_size, baseline=True)
        paths = [after.get_data_info(i)["img_path"] for i in range(len(after))]
        heights = [decode(p).shape[0] for p in paths]
        print(
            f"{len(paths)} JPEGs {args.width} px wide (heights {min(heights)}-{max(heights)}), "
            f"input {args.img_size} px, one core (#{core}), "
            f"median of {args.rounds} passes, variants interleaved per image"
        )
        rng = np.random.default_rng(args.seed)
        np.random.seed(args.seed)  # the mmdet transforms draw from numpy's global RNG
        variants: dict[str, Callable[[int], object]] = {
            "decode": lambda i: decode(paths[i]),
            "decode+crop+resize": lambda i: decode_crop_resize(paths[i], args.img_size, rng),
            "  (crop inside, no pad)": lambda i: decode_crop_resize_inside(paths[i], args.img_size, rng),
            "before (float photometric)": before.__getitem__,
            "after (photometric on device)": after.__getitem__,
        }
        interleaved_rates(variants, min(4, len(paths)), 1)  # warm the page cache and the lazy imports
        rates = interleaved_rates(variants, len(paths), args.rounds)
    median = {name: statistics.median(values) for name, values in rates.items()}
    ceiling = median["decode+crop+resize"]
    print(f"\n{'variant':<28} {'images/s/core':>13} {'min':>7} {'max':>7} {'of decode':>9} {'of d+c+r':>9}")
    for name, value in median.items():
        print(
            f"{name:<28} {value:>13.1f} {min(rates[name]):>7.1f} {max(rates[name]):>7.1f} "
            f"{value / median['decode']:>9.2f} {value / ceiling:>9.2f}"
        )
    new, old = median["after (photometric on device)"], median["before (float photometric)"]
    inside = median["  (crop inside, no pad)"]
    print(
        f"\nafter / before: {new / old:.2f}x; after reaches {new / ceiling:.2f} of decode+crop+resize (goal 0.75), "
        f"{new / inside:.2f} of the no-padding variant, {new / median['decode']:.2f} of decode alone"
    )
    print(f"\nthe photometric step moved to the device, per {args.img_size} px image: {device_photometric_ms(args):s}")
    print("\ncores one trial needs to feed a GPU (data loading only; one more core drives the GPU):")
    print(f"{'GPU images/s':>12} {'before':>8} {'after':>8}")
    for rate in (float(r) for r in args.gpu_rates.split(",") if r.strip()):
        print(f"{rate:>12g} {math.ceil(rate / old):>8d} {math.ceil(rate / new):>8d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
