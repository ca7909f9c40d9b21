"""SCRFD's square crop and the keypoint-aware resize, flip and pack transforms."""

from __future__ import annotations

import numpy as np
import pytest
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes

from scrfd_search.data import pipelines
from scrfd_search.data.pipelines import LARGE_CROPS, train_pipeline
from scrfd_search.data.transforms import (
    FaceRandomFlip,
    FaceResize,
    LoadFaceAnnotations,
    PackFaceInputs,
    RandomSquareCrop,
)

PAD = 128


def coordinate_image(width: int, height: int) -> np.ndarray:
    """Channel 0 = x, channel 1 = y, channel 2 = 255 marks 'inside the image' (padding is 128)."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = np.arange(width)[None, :]
    img[..., 1] = np.arange(height)[:, None]
    img[..., 2] = 255
    return img


def keypoints_in(boxes: np.ndarray) -> np.ndarray:
    """Five visible landmarks inside each box (eyes, nose, mouth corners)."""
    out = np.zeros((len(boxes), 5, 3), np.float32)
    rel = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        out[i, :, 0] = x1 + rel[:, 0] * (x2 - x1)
        out[i, :, 1] = y1 + rel[:, 1] * (y2 - y1)
        out[i, :, 2] = 1
    return out


def make_results(img: np.ndarray, boxes, ignore=None, keypoints=None) -> dict:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return dict(
        img=img,
        img_shape=img.shape[:2],
        ori_shape=img.shape[:2],
        gt_bboxes=HorizontalBoxes(boxes),
        gt_bboxes_labels=np.zeros(n, np.int64),
        gt_ignore_flags=np.zeros(n, bool) if ignore is None else np.asarray(ignore, bool),
        gt_keypoints=keypoints_in(boxes) if keypoints is None else keypoints,
    )


def crop_origin(out_img: np.ndarray) -> tuple[int, int]:
    """(left, top) of the crop in source-image coordinates, read from a cropped coordinate_image."""
    ys, xs = np.nonzero(out_img[..., 2] == 255)
    oy, ox = ys.min(), xs.min()
    return int(out_img[oy, ox, 0]) - int(ox), int(out_img[oy, ox, 1]) - int(oy)


BOXES = np.array(
    [
        [10, 10, 40, 45],  # ordinary
        [180, 60, 205, 90],  # crosses the right border (centre inside the image)
        [90, 140, 120, 175],  # crosses the bottom border
        [60, 60, 64, 64],  # tiny
        [120, 20, 150, 50],  # ignored
    ],
    np.float32,
)
IGNORE = [False, False, False, False, True]


@pytest.mark.parametrize("seed", range(12))
def test_crop_keeps_faces_by_centre_shifts_and_clips(seed):
    img = coordinate_image(200, 160)
    results = make_results(img, BOXES, IGNORE)
    np.random.seed(seed)
    out = RandomSquareCrop(crop_choice=LARGE_CROPS)(results)
    side = out["img"].shape[0]
    assert out["img"].shape == (side, side, 3) and out["img_shape"] == (side, side)
    assert side in {int(c * 160) for c in LARGE_CROPS}
    left, top = crop_origin(out["img"])
    centres = (BOXES[:, :2] + BOXES[:, 2:]) / 2
    inside = (
        (centres[:, 0] > left) & (centres[:, 0] < left + side) & (centres[:, 1] > top) & (centres[:, 1] < top + side)
    )
    assert inside[~np.asarray(IGNORE)].any()  # at least one valid face survives
    expected = np.clip(BOXES[inside] - [left, top, left, top], 0, side)
    np.testing.assert_allclose(out["gt_bboxes"].numpy(), expected)
    assert out["gt_ignore_flags"].tolist() == np.asarray(IGNORE)[inside].tolist()
    assert len(out["gt_bboxes_labels"]) == inside.sum()
    kps = keypoints_in(BOXES)[inside]
    kps[..., 0] -= left
    kps[..., 1] -= top
    visible = (kps[..., 0] >= 0) & (kps[..., 0] <= side) & (kps[..., 1] >= 0) & (kps[..., 1] <= side)
    assert out["gt_keypoints"][..., 2].tolist() == visible.astype(float).tolist()
    np.testing.assert_allclose(out["gt_keypoints"][visible][:, :2], kps[visible][:, :2], atol=1e-4)
    assert not out["gt_keypoints"][~visible].any()  # hidden landmarks are zeroed
    # Pixels outside the source image are padding.
    outside = out["img"][..., 2] != 255
    assert (out["img"][outside] == PAD).all()


def test_crop_larger_than_image_pads_with_128():
    img = np.full((60, 100, 3), 7, np.uint8)
    np.random.seed(0)
    out = RandomSquareCrop(crop_choice=(2.0,))(make_results(img, [[40, 20, 60, 40]]))
    assert out["img"].shape == (120, 120, 3)
    assert (out["img"] == 7).sum() == 60 * 100 * 3
    assert (out["img"] == PAD).sum() == (120 * 120 - 60 * 100) * 3
    ys, xs = np.nonzero(out["img"][..., 0] == 7)
    np.testing.assert_allclose(out["gt_bboxes"].numpy(), [[40 + xs.min(), 20 + ys.min(), 60 + xs.min(), 40 + ys.min()]])


def test_crop_of_an_image_without_faces():
    np.random.seed(1)
    out = RandomSquareCrop(crop_choice=(0.5,))(make_results(np.zeros((100, 200, 3), np.uint8), np.zeros((0, 4))))
    assert out["img"].shape == (50, 50, 3)
    assert out["gt_bboxes"].numpy().shape == (0, 4) and out["gt_keypoints"].shape == (0, 5, 3)


def test_crop_grows_the_scale_when_no_small_crop_can_keep_a_face():
    # The face's centre sits on the image's left edge: only a crop reaching past the image keeps it,
    # which the reference reaches by growing the scale 1.2x per round when no choice exceeds 1.
    img = coordinate_image(100, 100)
    np.random.seed(0)
    out = RandomSquareCrop(crop_choice=(0.3,))(make_results(img, [[-5, 40, 5, 60]]))
    assert out["img"].shape[0] > 100
    assert len(out["gt_bboxes"]) == 1


def test_crop_is_deterministic_under_numpy_seed():
    def run(seed):
        np.random.seed(seed)
        out = RandomSquareCrop()(make_results(coordinate_image(200, 160), BOXES, IGNORE))
        return out["img"].tobytes(), out["gt_bboxes"].numpy().tobytes(), out["gt_keypoints"].tobytes()

    assert run(5) == run(5)
    assert len({run(s) for s in range(6)}) > 1


def test_flip_mirrors_keypoints_and_swaps_left_right():
    img = np.zeros((50, 100, 3), np.uint8)
    kps = np.array([[[20, 10, 1], [30, 10, 1], [25, 15, 1], [21, 20, 1], [29, 20, 1]]], np.float32)
    results = make_results(img, [[15, 5, 35, 25]], keypoints=kps.copy())
    out = FaceRandomFlip(prob=1.0)(results)
    assert out["flip"] and out["flip_direction"] == "horizontal"
    np.testing.assert_allclose(out["gt_bboxes"].numpy(), [[65, 5, 85, 25]])
    expected = np.array([[[70, 10, 1], [80, 10, 1], [75, 15, 1], [71, 20, 1], [79, 20, 1]]], np.float32)
    np.testing.assert_allclose(out["gt_keypoints"], expected)
    assert out["gt_keypoints"][0, 0, 0] < out["gt_keypoints"][0, 1, 0]  # index 0 is still the left eye


def test_flip_leaves_absent_keypoints_absent():
    kps = np.zeros((1, 5, 3), np.float32)
    out = FaceRandomFlip(prob=1.0)(make_results(np.zeros((50, 100, 3), np.uint8), [[15, 5, 35, 25]], keypoints=kps))
    assert not out["gt_keypoints"].any()


def test_resize_scales_keypoints_with_boxes():
    results = make_results(np.zeros((50, 100, 3), np.uint8), [[10, 10, 30, 30]])
    before = results["gt_keypoints"].copy()
    out = FaceResize(scale=(64, 64), keep_ratio=False)(results)
    assert out["img"].shape[:2] == (64, 64)
    np.testing.assert_allclose(out["gt_bboxes"].numpy(), [[6.4, 12.8, 19.2, 38.4]], rtol=1e-5)
    np.testing.assert_allclose(out["gt_keypoints"][..., 0], before[..., 0] * 0.64, rtol=1e-5)
    np.testing.assert_allclose(out["gt_keypoints"][..., 1], before[..., 1] * 1.28, rtol=1e-5)


def test_pack_puts_keypoints_into_gt_and_ignored_instances():
    results = make_results(np.zeros((40, 40, 3), np.uint8), [[1, 1, 10, 10], [20, 20, 30, 30]], ignore=[0, 1])
    packed = PackFaceInputs()(results)
    gt, ignored = packed["data_samples"].gt_instances, packed["data_samples"].ignored_instances
    assert gt.keypoints.shape == (1, 5, 3) and gt.keypoints.is_floating_point()
    assert ignored.keypoints.shape == (1, 5, 3)
    np.testing.assert_allclose(gt.keypoints.numpy(), results["gt_keypoints"][:1])


def test_load_face_annotations_reads_keypoints():
    kps = np.arange(15, dtype=np.float32).reshape(5, 3)
    results = dict(instances=[dict(bbox=[0, 0, 5, 5], bbox_label=0, ignore_flag=0, keypoints=kps)])
    out = LoadFaceAnnotations(with_keypoints=True)(results)
    assert out["gt_keypoints"].shape == (1, 5, 3) and out["gt_keypoints"].dtype == np.float32
    np.testing.assert_array_equal(out["gt_keypoints"][0], kps)
    empty = LoadFaceAnnotations(with_keypoints=True)(dict(instances=[]))
    assert empty["gt_keypoints"].shape == (0, 5, 3)


def test_pipeline_configs_build_from_the_mmdet_registry():
    for cfg in train_pipeline(320, with_keypoints=True) + pipelines.test_pipeline(320):
        assert TRANSFORMS.build(cfg) is not None
    types = [c["type"] for c in train_pipeline(640)]
    assert types == [
        "LoadImageFromFile",
        "LoadFaceAnnotations",
        "RandomSquareCrop",
        "FaceResize",
        "FaceRandomFlip",
        "DrawPhotoMetricDistortion",
        "PackFaceInputs",
    ]
    assert train_pipeline(640)[3]["scale"] == (640, 640) and train_pipeline(640)[3]["keep_ratio"] is False
