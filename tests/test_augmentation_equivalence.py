"""The faster training pipeline augments as the old one did: same crops, flips and landmarks for the
same seed, and photometric changes (uint8 lookup tables) distributed as mmdet's float32 ones."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from mmdet.datasets.transforms import PhotoMetricDistortion
from mmdet.registry import DATASETS

from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.data.pipelines import dataset_config
from scrfd_search.data.transforms import FaceRandomFlip, LutPhotoMetricDistortion, RandomSquareCrop
from scrfd_search.detector import register_modules

DRAWS = 400


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 training images 160-256 px wide with faces and landmarks."""
    root = tmp_path_factory.mktemp("augment") / "demo"
    write_demo_dataset(root, DemoConfig(num_train=24, num_val=1, seed=4, min_width=160, max_width=256))
    return root


def images(root: Path) -> list[np.ndarray]:
    """The demo training images (BGR uint8)."""
    return [cv2.imread(str(p)) for p in sorted((root / "WIDER_train" / "images").rglob("*.jpg"))]


def filled_crop(img: np.ndarray, patch: tuple[int, int, int, int], pad: int) -> np.ndarray:
    """What a crop must hold: the patch of img, pad where it leaves the image."""
    left, top, right, bottom = patch
    out = np.full((bottom - top, right - left, 3), pad, np.uint8)
    for y in range(max(top, 0), min(bottom, img.shape[0])):
        x1, x2 = max(left, 0), min(right, img.shape[1])
        if x2 > x1:
            out[y - top, x1 - left : x2 - left] = img[y, x1:x2]
    return out


def test_crop_is_the_patch_padded_outside_the_image() -> None:
    img = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    crop = RandomSquareCrop(pad_value=128)
    patches = [
        (10, 5, 50, 45),
        (-20, -10, 70, 80),
        (40, 30, 110, 100),
        (-30, 0, 90, 120),
        (0, 0, 80, 80),
        (90, 70, 95, 75),
    ]
    for patch in patches:
        got = crop._crop_image(img, np.array(patch))
        assert np.array_equal(got, filled_crop(img, patch, 128)), patch


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_flip_matches_numpy_flip_for_image_boxes_and_landmarks(direction: str) -> None:
    from mmdet.structures.bbox import HorizontalBoxes

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    boxes = np.array([[2.0, 3.0, 12.0, 20.0]], np.float32)
    kps = np.array([[[4, 6, 1], [9, 6, 1], [7, 10, 1], [5, 15, 1], [10, 15, 0]]], np.float32)
    results = dict(img=img, gt_bboxes=HorizontalBoxes(boxes), gt_keypoints=kps, flip_direction=direction)
    FaceRandomFlip(prob=1.0, direction=direction)._flip(results)
    axes = {"horizontal": (1,), "vertical": (0,), "diagonal": (0, 1)}[direction]
    assert np.array_equal(results["img"], np.flip(img, axes)) and results["img"].flags.c_contiguous
    reference = HorizontalBoxes(boxes)
    reference.flip_((30, 40), direction)
    assert np.allclose(results["gt_bboxes"].numpy(), reference.numpy())
    if direction == "horizontal":
        assert results["gt_keypoints"][0, 0, 0] == 40 - 9  # the right eye became the left one
        assert results["gt_keypoints"][0, 3, 2] == 0  # the invisible mouth corner stays invisible


def channel_stats(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per channel: mean shift and std ratio of after against before (6 numbers)."""
    b = before.reshape(-1, 3).astype(np.float64)
    a = after.reshape(-1, 3).astype(np.float64)
    return np.concatenate([a.mean(0) - b.mean(0), a.std(0) / np.maximum(b.std(0), 1e-6)])


def test_photometric_draws_like_mmdet_and_shifts_colours_alike(demo_data: Path) -> None:
    pictures = images(demo_data)
    old_t, new_t = PhotoMetricDistortion(), LutPhotoMetricDistortion()
    old_stats, new_stats, clipped_stats = [], [], []
    for draw in range(DRAWS):
        img = pictures[draw % len(pictures)]
        np.random.seed(draw)
        old = old_t.transform({"img": img.copy()})["img"]
        after_old = np.random.random()
        np.random.seed(draw)
        new = new_t.transform({"img": img.copy()})["img"]
        assert np.random.random() == after_old  # the same random draws, in the same order
        assert new.dtype == np.uint8 and new.shape == img.shape
        old_stats.append(channel_stats(img, old))
        clipped_stats.append(channel_stats(img, np.clip(old, 0, 255)))
        new_stats.append(channel_stats(img, new))
    old_stats, new_stats, clipped_stats = np.array(old_stats), np.array(new_stats), np.array(clipped_stats)
    # draw by draw, the uint8 result is mmdet's float result clipped to 0..255, up to rounding and
    # OpenCV's 2-degree hue steps: mean shifts within 4 grey levels, std ratios within 0.06, nearly always
    mean_gap = np.abs(new_stats[:, :3] - clipped_stats[:, :3])
    std_gap = np.abs(new_stats[:, 3:] - clipped_stats[:, 3:])
    assert np.quantile(mean_gap, 0.95) < 4.0 and np.quantile(std_gap, 0.95) < 0.06, (mean_gap.max(), std_gap.max())
    # over all draws: the same ranges of colour change as mmdet's unclipped float output
    qs = (0.05, 0.25, 0.5, 0.75, 0.95)
    for channel in range(3):
        old_mean_q = np.quantile(old_stats[:, channel], qs)
        new_mean_q = np.quantile(new_stats[:, channel], qs)
        assert np.all(np.abs(old_mean_q - new_mean_q) < 6.0), (channel, old_mean_q, new_mean_q)
        old_std_q = np.quantile(old_stats[:, 3 + channel], qs)
        new_std_q = np.quantile(new_stats[:, 3 + channel], qs)
        assert np.all(np.abs(old_std_q - new_std_q) < 0.1), (channel, old_std_q, new_std_q)
    # the photometric step does change colours: brightness alone moves means by up to 32 levels
    assert np.quantile(np.abs(new_stats[:, :3]), 0.9) > 10


def pipeline_outputs(root: Path, photometric: str, seed: int, count: int) -> list[dict]:
    """Packed training samples of the demo set with the given photometric transform type."""
    register_modules()
    import scrfd_search.data.datasets  # noqa: F401  (registers WiderFaceDataset)

    cfg = dataset_config(str(root), split="train", img_size=128, with_keypoints=True)
    cfg["pipeline"] = [
        {**step, "type": photometric} if "PhotoMetric" in step["type"] else step for step in cfg["pipeline"]
    ]
    dataset = DATASETS.build(cfg)
    np.random.seed(seed)
    return [dataset[i % len(dataset)] for i in range(count)]


def test_pipeline_crops_flips_and_landmarks_are_those_of_the_old_pipeline(demo_data: Path) -> None:
    old = pipeline_outputs(demo_data, "PhotoMetricDistortion", seed=7, count=96)
    new = pipeline_outputs(demo_data, "LutPhotoMetricDistortion", seed=7, count=96)
    flips = []
    for a, b in zip(old, new, strict=True):
        sa, sb = a["data_samples"], b["data_samples"]
        assert sa.img_shape == sb.img_shape and sa.flip == sb.flip
        assert np.array_equal(sa.gt_instances.bboxes.numpy(), sb.gt_instances.bboxes.numpy())
        assert np.array_equal(np.asarray(sa.gt_instances.keypoints), np.asarray(sb.gt_instances.keypoints))
        assert a["inputs"].dtype.is_floating_point and b["inputs"].dtype == __import__("torch").uint8
        assert a["inputs"].shape == b["inputs"].shape == (3, 128, 128)
        flips.append(sb.flip)
    # flips at rate 1/2: within 4 standard deviations over 96 samples
    assert abs(np.mean(flips) - 0.5) < 4 * np.sqrt(0.25 / len(flips))
