"""mmdet pipeline and dataset configs for SCRFD training and testing (plain dicts, no heavy imports)."""

from __future__ import annotations

from collections.abc import Sequence

# SCRFD's sample redistribution: square crops up to twice the short side, so that after resizing
# to the training size faces shrink and more of them land on the stride-8 anchors.
LARGE_CROPS: tuple[float, ...] = (0.3, 0.45, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
# The conventional crop list (RetinaFace/TinaFace-style): crops no larger than the image.
SMALL_CROPS: tuple[float, ...] = (0.3, 0.45, 0.6, 0.8, 1.0)

TEST_META_KEYS = ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")
# "photometric": the distortion drawn per image, applied on the device by FaceDataPreprocessor
TRAIN_META_KEYS = TEST_META_KEYS + ("flip", "flip_direction", "photometric")
# Modules a config's custom_imports must list so that the types below are registered in mmdet.
CUSTOM_IMPORTS = ("scrfd_search.data.datasets", "scrfd_search.data.transforms")
# The official layout's annotation folder; the evaluation kit's .mat ground truth is expected there too.
GT_SUBDIR = "wider_face_split"


def train_pipeline(
    img_size: int = 640,
    crop_choice: Sequence[float] = LARGE_CROPS,
    with_keypoints: bool = False,
    bbox_clip_border: bool = True,
    photometric_on_device: bool = True,
) -> list[dict]:
    """The reference training pipeline: load, crop, resize to a square, flip, photometric, pack.

    With photometric_on_device (for GPU training) the loader only draws the photometric parameters
    and FaceDataPreprocessor applies them to the batch on the GPU (scrfd_search.models.preprocessor);
    otherwise (CPU training, where the training process is the bottleneck) the loader applies mmdet's
    PhotoMetricDistortion itself. Both draw the same parameters from the same RNG.
    `bbox_clip_border` False keeps boxes that stick out of the crop unclipped in crop and resize, as
    the reference's full-schedule 2.5GF and 10GF configs do.
    """
    return [
        dict(type="LoadImageFromFile"),
        dict(type="LoadFaceAnnotations", with_bbox=True, with_keypoints=with_keypoints),
        dict(
            type="RandomSquareCrop",
            crop_choice=tuple(float(c) for c in crop_choice),
            lazy=True,
            bbox_clip_border=bbox_clip_border,
        ),
        dict(type="FaceResize", scale=(img_size, img_size), keep_ratio=False, clip_object_border=bbox_clip_border),
        dict(type="FaceRandomFlip", prob=0.5),
        dict(
            type="DrawPhotoMetricDistortion" if photometric_on_device else "PhotoMetricDistortion",
            brightness_delta=32,
            contrast_range=(0.5, 1.5),
            saturation_range=(0.5, 1.5),
            hue_delta=18,
        ),
        dict(type="PackFaceInputs", meta_keys=TRAIN_META_KEYS),
    ]


def test_pipeline(img_size: int = 640) -> list[dict]:
    """Resize keeping the aspect ratio to fit img_size x img_size; annotations stay in image pixels."""
    return [
        dict(type="LoadImageFromFile"),
        dict(type="FaceResize", scale=(img_size, img_size), keep_ratio=True),
        dict(type="LoadFaceAnnotations", with_bbox=True, with_keypoints=True),
        dict(type="PackFaceInputs", meta_keys=TEST_META_KEYS),
    ]


def dataset_config(
    data_root: str,
    split: str = "train",
    img_size: int = 640,
    crop_choice: Sequence[float] = LARGE_CROPS,
    with_keypoints: bool = False,
    layout: str = "wider",
    min_size: float | None = None,
    bbox_clip_border: bool = True,
    photometric_on_device: bool = True,
) -> dict:
    """A dataset config for `data_root` in the official ('wider') or RetinaFace ('retinaface') layout.

    The train split gets the training pipeline; any other split the test pipeline and test_mode.
    """
    if layout == "wider":
        cfg = dict(
            type="WiderFaceDataset",
            ann_file=f"{GT_SUBDIR}/wider_face_{split}_bbx_gt.txt",
            data_prefix=dict(img=f"WIDER_{split}/images/"),
        )
    elif layout == "retinaface":
        cfg = dict(
            type="RetinaFaceDataset",
            ann_file=f"{split}/labelv2.txt",
            data_prefix=dict(img=f"{split}/images/"),
        )
    else:
        raise ValueError(f"layout must be 'wider' or 'retinaface', got {layout!r}")
    is_train = split == "train"
    cfg.update(
        data_root=str(data_root),
        test_mode=not is_train,
        min_size=min_size,
        pipeline=(
            train_pipeline(img_size, crop_choice, with_keypoints, bbox_clip_border, photometric_on_device)
            if is_train
            else test_pipeline(img_size)
        ),
    )
    return cfg
