"""Face transforms for mmdet 3.x pipelines: keypoint-aware loading, resize, flip and packing,
SCRFD's large square crop (sample redistribution), and mmdet's photometric distortion on uint8.

Keypoints travel as `results['gt_keypoints']`: float32 (N, 5, 3) holding x, y, visible (1/0), in the
order left eye, right eye, nose, left mouth corner, right mouth corner (left = smaller x). Randomness
comes from numpy's global RNG, as in mmdet's own transforms (mmengine seeds it).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs, PhotoMetricDistortion, RandomFlip, Resize
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import autocast_box_type

from scrfd_search.data.annotations import NUM_KEYPOINTS
from scrfd_search.data.pipelines import LARGE_CROPS

# Index permutation applied to landmarks under a horizontal flip: the eyes and the mouth corners
# trade places, the nose stays.
HFLIP_KEYPOINT_ORDER = (1, 0, 2, 4, 3)
MAX_SCALE_ROUNDS = 64  # the reference retries forever; bound it and then keep the image uncropped


def empty_keypoints() -> np.ndarray:
    """A (0, 5, 3) float32 keypoint array."""
    return np.zeros((0, NUM_KEYPOINTS, 3), dtype=np.float32)


def hide_keypoints_outside(keypoints: np.ndarray, width: float, height: float) -> np.ndarray:
    """Mark keypoints outside [0, width] x [0, height] invisible and zero every invisible point."""
    kps = keypoints.copy()
    inside = (kps[..., 0] >= 0) & (kps[..., 0] <= width) & (kps[..., 1] >= 0) & (kps[..., 1] <= height)
    kps[..., 2] = np.where(inside & (kps[..., 2] > 0), 1.0, 0.0)
    kps[kps[..., 2] == 0] = 0.0
    return kps


@TRANSFORMS.register_module()
class LoadFaceAnnotations(LoadAnnotations):
    """mmdet LoadAnnotations that also loads instance['keypoints'] into gt_keypoints (N, 5, 3)."""

    def __init__(self, with_keypoints: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.with_keypoints = with_keypoints

    def _load_keypoints(self, results: dict) -> None:
        """Stack the instances' keypoints; faces without landmarks carry zeros (invisible)."""
        kps = [
            np.asarray(i.get("keypoints", np.zeros((NUM_KEYPOINTS, 3))), np.float32)
            for i in results.get("instances", [])
        ]
        results["gt_keypoints"] = np.stack(kps).reshape(-1, NUM_KEYPOINTS, 3) if kps else empty_keypoints()

    def transform(self, results: dict) -> dict:
        """Load boxes, labels, ignore flags and (optionally) keypoints."""
        results = super().transform(results)
        if self.with_keypoints:
            self._load_keypoints(results)
        return results

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", with_keypoints={self.with_keypoints})"


def _random_offset(extent: int, side: int) -> int:
    """Crop origin along one axis, as the reference draws it: inside the image when the crop is
    smaller, reaching beyond it (into the padding) when larger."""
    if extent == side:
        return 0
    if extent > side:
        return int(np.random.randint(0, extent - side))
    return int(np.random.randint(extent - side, 0))


@TRANSFORMS.register_module()
class RandomSquareCrop(BaseTransform):
    """SCRFD's square crop: side = a random choice of `crop_choice` x the image's short side, at a
    random position that may extend beyond the image (filled with `pad_value`).

    A face is kept only if its centre lies strictly inside the crop; kept boxes and keypoints are
    shifted (and clipped when `bbox_clip_border`); keypoints that leave the crop become invisible.
    A position is accepted once it keeps at least one valid (non-ignored) face; an image without
    valid faces takes the first position. After `max_tries` failures a new scale is drawn (or, when
    no choice exceeds 1, the scale grows by 1.2), as in the reference.
    """

    def __init__(
        self,
        crop_choice: Sequence[float] = LARGE_CROPS,
        max_tries: int = 250,
        pad_value: float = 128,
        bbox_clip_border: bool = True,
    ) -> None:
        if not crop_choice or min(crop_choice) <= 0:
            raise ValueError(f"crop_choice must be positive ratios, got {crop_choice!r}")
        self.crop_choice = tuple(float(c) for c in crop_choice)
        self.max_tries = int(max_tries)
        self.pad_value = pad_value
        self.bbox_clip_border = bbox_clip_border

    def _find_patch(self, width: int, height: int, centers: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
        """Draw (left, top, right, bottom) until a crop keeps a valid face centre; None if never."""
        short_side = min(width, height)
        grow_instead = max(self.crop_choice) <= 1.0
        scale = 0.0
        for round_index in range(MAX_SCALE_ROUNDS):
            if round_index == 0 or not grow_instead:
                scale = float(np.random.choice(self.crop_choice))
            else:
                scale *= 1.2
            side = max(1, int(scale * short_side))
            for _ in range(self.max_tries):
                left, top = _random_offset(width, side), _random_offset(height, side)
                patch = np.array([left, top, left + side, top + side])
                if not valid.any() or (valid & self._centers_inside(centers, patch)).any():
                    return patch
        return None

    @staticmethod
    def _centers_inside(centers: np.ndarray, patch: np.ndarray) -> np.ndarray:
        """Which centres lie strictly inside the patch."""
        return (
            (centers[:, 0] > patch[0])
            & (centers[:, 1] > patch[1])
            & (centers[:, 0] < patch[2])
            & (centers[:, 1] < patch[3])
        )

    def _crop_image(self, img: np.ndarray, patch: np.ndarray) -> np.ndarray:
        """Cut the patch out of img, filling what lies outside the image with pad_value.

        A patch inside the image is returned as a view (the resize that follows reads it in place);
        a larger one is padded by OpenCV in one pass (a filled array plus a copy costs twice that).
        """
        left, top, right, bottom = (int(v) for v in patch)
        height, width = img.shape[:2]
        src_x1, src_y1 = min(max(left, 0), width), min(max(top, 0), height)
        src_x2, src_y2 = max(min(right, width), src_x1), max(min(bottom, height), src_y1)
        inside = img[src_y1:src_y2, src_x1:src_x2]
        pads = (src_y1 - top, bottom - src_y2, src_x1 - left, right - src_x2)
        if not any(pads):
            return inside
        if inside.size == 0 or img.dtype != np.uint8:
            out = np.full((bottom - top, right - left) + img.shape[2:], self.pad_value, dtype=img.dtype)
            out[pads[0] : pads[0] + inside.shape[0], pads[2] : pads[2] + inside.shape[1]] = inside
            return out
        value = [float(self.pad_value)] * (img.shape[2] if img.ndim == 3 else 1)
        return cv2.copyMakeBorder(inside, *pads, cv2.BORDER_CONSTANT, value=value)

    def _crop_annotations(self, results: dict, patch: np.ndarray, keep: np.ndarray) -> None:
        """Keep the faces whose centre is inside; shift (and clip) their boxes and keypoints."""
        left, top = int(patch[0]), int(patch[1])
        side = int(patch[2] - patch[0])
        boxes = results["gt_bboxes"][keep]
        boxes.translate_([-left, -top])
        if self.bbox_clip_border:
            boxes.clip_((side, side))
        results["gt_bboxes"] = boxes
        for key in ("gt_bboxes_labels", "gt_ignore_flags"):
            if key in results:
                results[key] = results[key][keep]
        if "gt_keypoints" in results:
            kps = results["gt_keypoints"][keep].copy()
            kps[..., 0] -= left
            kps[..., 1] -= top
            results["gt_keypoints"] = hide_keypoints_outside(kps, side, side)

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Crop img, gt_bboxes, labels, ignore flags and keypoints to a random square."""
        img = results["img"]
        height, width = img.shape[:2]
        boxes = results["gt_bboxes"].numpy() if "gt_bboxes" in results else np.zeros((0, 4))
        ignore = results.get("gt_ignore_flags", np.zeros(len(boxes), dtype=bool)).astype(bool)
        centers = (boxes[:, :2] + boxes[:, 2:]) / 2
        patch = self._find_patch(width, height, centers, ~ignore)
        if patch is None:
            return results
        if "gt_bboxes" in results:
            self._crop_annotations(results, patch, self._centers_inside(centers, patch))
        results["img"] = self._crop_image(img, patch)
        results["img_shape"] = results["img"].shape[:2]
        return results

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(crop_choice={self.crop_choice}, max_tries={self.max_tries}, "
            f"pad_value={self.pad_value}, bbox_clip_border={self.bbox_clip_border})"
        )


@TRANSFORMS.register_module()
class FaceResize(Resize):
    """mmdet Resize that also scales gt_keypoints (and hides those clipped off the border)."""

    def transform(self, results: dict) -> dict:
        """Resize the image and boxes as mmdet does, then the keypoints by the same factors."""
        results = super().transform(results)
        if results.get("gt_keypoints") is not None:
            w_scale, h_scale = results["scale_factor"]
            kps = results["gt_keypoints"].copy()
            kps[..., 0] *= w_scale
            kps[..., 1] *= h_scale
            if self.clip_object_border:
                h, w = results["img_shape"][:2]
                kps = hide_keypoints_outside(kps, w, h)
            results["gt_keypoints"] = kps.astype(np.float32)
        return results


def flip_keypoints(keypoints: np.ndarray, img_shape: tuple[int, int], direction: str) -> np.ndarray:
    """Mirror (N, 5, 3) keypoints like mmdet mirrors boxes; left/right landmarks trade indices."""
    h, w = img_shape[:2]
    kps = keypoints.copy()
    visible = kps[..., 2] > 0
    if direction in ("horizontal", "diagonal"):
        kps[..., 0] = np.where(visible, w - kps[..., 0], 0.0)
        kps = kps[:, list(HFLIP_KEYPOINT_ORDER)]
        visible = kps[..., 2] > 0
    if direction in ("vertical", "diagonal"):
        kps[..., 1] = np.where(visible, h - kps[..., 1], 0.0)
    return kps


@TRANSFORMS.register_module()
class FaceRandomFlip(RandomFlip):
    """mmdet RandomFlip that also mirrors gt_keypoints and swaps eyes 0<->1, mouth corners 3<->4."""

    def _flip(self, results: dict) -> None:
        """Flip image, boxes and keypoints.

        The image is flipped by OpenCV into a new contiguous array: mmdet's np.flip view makes every
        later step (photometric lookups, packing) copy it first, which costs 40 times the flip.
        """
        direction = results["flip_direction"]
        codes = {"horizontal": 1, "vertical": 0, "diagonal": -1}
        if direction not in codes:
            raise ValueError(f"FaceRandomFlip: unknown flip direction {direction!r}")
        results["img"] = cv2.flip(results["img"], codes[direction])
        if results.get("gt_bboxes") is not None:
            results["gt_bboxes"].flip_(results["img"].shape[:2], direction)
        self._record_homography_matrix(results)
        if results.get("gt_keypoints") is not None:
            results["gt_keypoints"] = flip_keypoints(
                results["gt_keypoints"], results["img"].shape[:2], results["flip_direction"]
            )


@TRANSFORMS.register_module()
class PackFaceInputs(PackDetInputs):
    """mmdet PackDetInputs that also packs gt_keypoints into gt_instances.keypoints (N, 5, 3) float."""

    mapping_table = {**PackDetInputs.mapping_table, "gt_keypoints": "keypoints"}


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """A lookup table from float values: rounded and clipped to 0..255."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


@TRANSFORMS.register_module()
class LutPhotoMetricDistortion(PhotoMetricDistortion):
    """mmdet's PhotoMetricDistortion computed on the uint8 image with lookup tables.

    The same random draws in the same order (mmdet's `_random_flags`, numpy's global RNG) and the same
    steps: brightness + delta, contrast x alpha before or after the HSV stage, saturation x s, hue + h
    degrees, then a random channel permutation, each with probability 1/2. What differs: the image
    stays uint8, so every step clips to 0..255 and hue moves in OpenCV's 2-degree steps; mmdet works
    in float32 and lets values leave 0..255 (a brightened white becomes 287). In exchange the step
    costs a few table lookups instead of two float HSV conversions (always done by mmdet, even when
    neither saturation nor hue changes), and the packed batch is a quarter of the bytes.
    """

    def transform(self, results: dict) -> dict:
        """Distort results['img'] (uint8 BGR) in the distribution of mmdet's transform."""
        img = results["img"]
        if img.dtype != np.uint8:
            raise TypeError(f"LutPhotoMetricDistortion: expected a uint8 image, got {img.dtype}")
        (mode, brightness, contrast, saturation, hue, swap, delta, alpha, sat_value, hue_value, order) = (
            self._random_flags()
        )
        levels = np.arange(256, dtype=np.float64)
        before = levels + delta if brightness else levels
        if mode == 1 and contrast:  # mmdet: mode 1 applies contrast before the HSV stage
            before = np.clip(before, 0, 255) * alpha
        before_lut = _to_uint8(before)
        after_lut = _to_uint8(levels * alpha) if mode == 0 and contrast else None
        if saturation or hue:
            img = cv2.LUT(img, before_lut)
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)  # uint8: H in 0..179 (2-degree units), S and V 0..255
            h, s, v = cv2.split(hsv)
            if hue:
                shift = int(np.rint(hue_value / 2))
                h = cv2.LUT(h, ((np.arange(256) + shift) % 180).astype(np.uint8))
            if saturation:
                s = cv2.LUT(s, _to_uint8(levels * sat_value))
            img = cv2.cvtColor(cv2.merge((h, s, v)), cv2.COLOR_HSV2BGR)
            if after_lut is not None:
                img = cv2.LUT(img, after_lut)
        else:  # no HSV stage: both tables compose into one
            img = cv2.LUT(img, before_lut if after_lut is None else after_lut[before_lut])
        if swap:
            channels = cv2.split(img)
            img = cv2.merge([channels[i] for i in order])
        results["img"] = img
        return results
