"""The faster training pipeline augments as the old one did: the same crops, flips and landmarks for
the same seed, and the same photometric distortion (drawn by the loader, applied on the device)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmdet.datasets.transforms import PhotoMetricDistortion
from mmdet.registry import DATASETS

from scrfd_search.builders import register_modules
from scrfd_search.data.demo import DemoConfig, write_demo_dataset
from scrfd_search.data.pipelines import dataset_config
from scrfd_search.data.transforms import (
    DrawPhotoMetricDistortion,
    FaceRandomFlip,
    RandomSquareCrop,
    crop_and_resize,
)
from scrfd_search.models.preprocessor import PHOTOMETRIC_KEY, FaceDataPreprocessor, photometric_distortion

DRAWS = 200


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


def test_lazy_crop_and_resize_equals_resizing_the_padded_crop() -> None:
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (5, 5), 2)
    patches = [
        (50, 20, 250), (-100, -60, 500), (200, 100, 600), (-30, 10, 160), (0, 0, 300), (150, -200, 450), (500, 0, 50)
    ]  # fmt: skip
    for left, top, side in patches:
        expected = cv2.resize(filled_crop(img, (left, top, left + side, top + side), 128), (128, 128))
        got = crop_and_resize(img, left, top, side, (128, 128), 128)
        assert np.array_equal(got, expected), (left, top, side)


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


def on_device(img: np.ndarray, params: dict) -> np.ndarray:
    """What FaceDataPreprocessor makes of a uint8 HWC image with drawn params, back as HWC float."""
    chw = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    return photometric_distortion(chw, params).numpy().transpose(1, 2, 0)


def test_photometric_on_the_device_is_mmdets_distortion(demo_data: Path) -> None:
    pictures = [cv2.resize(p, (96, 96), interpolation=cv2.INTER_AREA) for p in images(demo_data)]
    mmdet_t, draw_t = PhotoMetricDistortion(), DrawPhotoMetricDistortion()
    old_stats, new_stats, worst = [], [], []
    for draw in range(DRAWS):
        img = pictures[draw % len(pictures)]
        np.random.seed(draw)
        old = mmdet_t.transform({"img": img.copy()})["img"]
        after_old = np.random.random()
        np.random.seed(draw)
        drawn = draw_t.transform({"img": img})
        assert np.random.random() == after_old  # the same random draws, in the same order
        assert drawn["img"] is img  # the loader's image is left as it is
        new = on_device(img, drawn[PHOTOMETRIC_KEY])
        diff = np.abs(new - old)
        # float rounding; a pixel whose hue lands exactly on a sector edge may round the other way
        assert np.mean(diff > 0.01) < 1e-3, (draw, diff.max())
        worst.append(float(np.quantile(diff, 0.999)))
        old_stats.append(channel_stats(img, old))
        new_stats.append(channel_stats(img, new))
    old_stats, new_stats = np.array(old_stats), np.array(new_stats)
    # the distributions the model sees: per-channel mean shift and std ratio, quantile by quantile
    qs = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
    for column in range(6):
        assert np.allclose(np.quantile(new_stats[:, column], qs), np.quantile(old_stats[:, column], qs), atol=1e-3)
    # the distortion does change colours: brightness alone moves means by up to 32 levels
    assert np.quantile(np.abs(new_stats[:, :3]), 0.9) > 10 and max(worst) < 0.01


def test_training_preprocessor_applies_the_drawn_distortion_and_validation_none() -> None:
    from mmdet.structures import DetDataSample

    pre = FaceDataPreprocessor(mean=[127.5] * 3, std=[128.0] * 3, bgr_to_rgb=True, pad_size_divisor=32)
    img = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    params = {
        "mode": 0, "brightness": True, "contrast": True, "saturation": False, "hue": False, "swap": False,
        "delta": 20.0, "alpha": 1.25, "saturation_value": 1.0, "hue_value": 0.0, "order": [0, 1, 2],
    }  # fmt: skip
    sample = DetDataSample(metainfo={"img_shape": (64, 64), PHOTOMETRIC_KEY: params})
    trained = pre({"inputs": [img], "data_samples": [sample]}, training=True)["inputs"][0]
    validated = pre({"inputs": [img], "data_samples": [sample]}, training=False)["inputs"][0]
    expected = ((img.float() + 20.0) * 1.25)[[2, 1, 0]]  # brightness, contrast; then BGR -> RGB
    assert torch.allclose(trained, (expected - 127.5) / 128.0, atol=1e-3)
    assert torch.allclose(validated, (img.float()[[2, 1, 0]] - 127.5) / 128.0)


def pipeline_outputs(root: Path, photometric: str, seed: int, count: int) -> list[dict]:
    """Packed training samples of the demo set with the given photometric transform type."""
    register_modules()
    import scrfd_search.data.datasets  # noqa: F401  (registers WiderFaceDataset)

    cfg = dataset_config(str(root), split="train", img_size=128, with_keypoints=True)
    lazy = photometric == "DrawPhotoMetricDistortion"  # the old pipeline cut (and padded) every crop
    cfg["pipeline"] = [
        {**step, "type": photometric} if "PhotoMetric" in step["type"] else step for step in cfg["pipeline"]
    ]
    cfg["pipeline"] = [{**s, "lazy": lazy} if s["type"] == "RandomSquareCrop" else s for s in cfg["pipeline"]]
    dataset = DATASETS.build(cfg)
    np.random.seed(seed)
    return [dataset[i % len(dataset)] for i in range(count)]


def test_pipeline_crops_flips_and_landmarks_are_those_of_the_old_pipeline(demo_data: Path) -> None:
    old = pipeline_outputs(demo_data, "PhotoMetricDistortion", seed=7, count=96)
    new = pipeline_outputs(demo_data, "DrawPhotoMetricDistortion", seed=7, count=96)
    flips = []
    for a, b in zip(old, new, strict=True):
        sa, sb = a["data_samples"], b["data_samples"]
        assert sa.img_shape == sb.img_shape and sa.flip == sb.flip
        assert np.array_equal(sa.gt_instances.bboxes.numpy(), sb.gt_instances.bboxes.numpy())
        assert np.array_equal(np.asarray(sa.gt_instances.keypoints), np.asarray(sb.gt_instances.keypoints))
        assert a["inputs"].dtype.is_floating_point and b["inputs"].dtype == torch.uint8
        assert a["inputs"].shape == b["inputs"].shape == (3, 128, 128)
        # the device applies the drawn distortion: the image the model sees is the old pipeline's
        on = photometric_distortion(b["inputs"], sb.metainfo[PHOTOMETRIC_KEY])
        assert torch.mean((torch.abs(on - a["inputs"]) > 0.01).float()) < 1e-3
        flips.append(sb.flip)
    # flips at rate 1/2: within 4 standard deviations over 96 samples
    assert abs(np.mean(flips) - 0.5) < 4 * np.sqrt(0.25 / len(flips))


def test_a_training_step_on_drawn_photometric_batches(demo_data: Path) -> None:
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import OptimWrapper

    from scrfd_search.builders import build_model
    from scrfd_search.space.published import PUBLISHED

    samples = pipeline_outputs(demo_data, "DrawPhotoMetricDistortion", seed=1, count=2)
    assert all(PHOTOMETRIC_KEY in s["data_samples"].metainfo for s in samples)
    model = build_model(PUBLISHED["scrfd_500m"]).train()
    assert isinstance(model.data_preprocessor, FaceDataPreprocessor)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    losses = model.train_step(pseudo_collate(samples), optim)
    assert all(torch.isfinite(v).all() for v in losses.values())
