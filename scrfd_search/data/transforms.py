"""Face transforms for mmdet 3.x pipelines: keypoint-aware loading, resize, flip and packing,
SCRFD's large square crop (sample redistribution), and the draw of mmdet's photometric distortion
(applied on the training device by scrfd_search.models.preprocessor).

Keypoints travel as `results['gt_keypoints']`: float32 (N, 5, 3) holding x, y, visible (1/0), in the
order left eye, right eye, nose, left mouth corner, right mouth corner (left = smaller x). Randomness
comes from numpy's global RNG, as in mmdet's own transforms (mmengine seeds it).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs, PhotoMetricDistortion, RandomFlip, Resize
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import autocast_box_type

from scrfd_search.data.annotations import NUM_KEYPOINTS
from scrfd_search.data.pipelines import LARGE_CROPS
from scrfd_search.models.preprocessor import PHOTOMETRIC_KEY

# Index permutation applied to landmarks under a horizontal flip: the eyes and the mouth corners
# trade places, the nose stays.
HFLIP_KEYPOINT_ORDER = (1, 0, 2, 4, 3)
# A square crop that RandomSquareCrop(lazy=True) leaves for FaceResize to cut and scale in one step.
PENDING_CROP_KEY = "pending_square_crop"
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

    With `lazy`, the image is not cut here: the patch is left in results for the FaceResize that
    must follow, which resizes a crop inside the image straight from a view of it (no copy).
    """

    def __init__(
        self,
        crop_choice: Sequence[float] = LARGE_CROPS,
        max_tries: int = 250,
        pad_value: float = 128,
        bbox_clip_border: bool = True,
        lazy: bool = False,
    ) -> None:
        if not crop_choice or min(crop_choice) <= 0:
            raise ValueError(f"crop_choice must be positive ratios, got {crop_choice!r}")
        self.crop_choice = tuple(float(c) for c in crop_choice)
        self.max_tries = int(max_tries)
        self.pad_value = pad_value
        self.bbox_clip_border = bbox_clip_border
        self.lazy = lazy

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
        # in numpy, then one box object: mmdet's per-op tensor methods cost more than the arithmetic
        boxes = results["gt_bboxes"].numpy()[keep] - np.array([left, top, left, top], dtype=np.float32)
        if self.bbox_clip_border:
            boxes = np.clip(boxes, 0, side)
        results["gt_bboxes"] = type(results["gt_bboxes"])(boxes)
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
        if self.lazy:
            results[PENDING_CROP_KEY] = (int(patch[0]), int(patch[1]), int(patch[2] - patch[0]), self.pad_value)
            side = int(patch[2] - patch[0])
            results["img_shape"] = (side, side)
            return results
        results["img"] = self._crop_image(img, patch)
        results["img_shape"] = results["img"].shape[:2]
        return results

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(crop_choice={self.crop_choice}, max_tries={self.max_tries}, "
            f"pad_value={self.pad_value}, bbox_clip_border={self.bbox_clip_border}, lazy={self.lazy})"
        )


def crop_and_resize(
    img: np.ndarray, left: int, top: int, side: int, size: tuple[int, int], pad_value: float
) -> np.ndarray:
    """cv2.resize of the square patch (left, top, side) of img, padded with pad_value, to size (w, h).

    A patch inside the image is resized from a view (no copy); one that leaves the image is padded
    by OpenCV in one pass. The pixels are exactly those of resizing a filled copy of the patch: an
    affine warp of only the covered part would be cheaper, but differs by a grey level here and
    there, and short search runs turned out sensitive to that (a demo training stalled).
    """
    height, width = img.shape[:2]
    x1, y1 = min(max(left, 0), width), min(max(top, 0), height)
    x2, y2 = max(min(left + side, width), x1), max(min(top + side, height), y1)
    inside = img[y1:y2, x1:x2]
    pads = (y1 - top, top + side - y2, x1 - left, left + side - x2)
    if any(pads):
        if inside.size == 0:
            inside = np.full((side, side) + img.shape[2:], pad_value, dtype=img.dtype)
        else:
            value = [float(pad_value)] * (img.shape[2] if img.ndim == 3 else 1)
            inside = cv2.copyMakeBorder(inside, *pads, cv2.BORDER_CONSTANT, value=value)
    return cv2.resize(inside, size, interpolation=cv2.INTER_LINEAR)


@TRANSFORMS.register_module()
class FaceResize(Resize):
    """mmdet Resize that also scales gt_keypoints (and hides those clipped off the border).

    A square crop left pending by RandomSquareCrop(lazy=True) is cut and resized here in one step.
    """

    def _resize_img(self, results: dict) -> None:
        """mmdet's image resize, or the pending square crop resized straight from the full image."""
        pending = results.pop(PENDING_CROP_KEY, None)
        if pending is None:
            super()._resize_img(results)
            return
        if self.keep_ratio:
            raise ValueError("FaceResize: a pending square crop needs keep_ratio=False")
        left, top, side, pad_value = pending
        img = crop_and_resize(results["img"], left, top, side, tuple(results["scale"]), pad_value)
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["scale_factor"] = (img.shape[1] / side, img.shape[0] / side)
        results["keep_ratio"] = False

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

    def _choose_direction(self) -> str | None:
        """mmcv's choice (a direction, or None for no flip) with the same single draw from numpy's RNG.

        mmcv calls np.random.choice(directions, p=...), which draws one random_sample() and picks the
        first cumulative probability above it; the array set-up around that costs more than the flip.
        """
        directions = list(self.direction) if isinstance(self.direction, (list, tuple)) else [self.direction]
        probs = list(self.prob) if isinstance(self.prob, list) else [self.prob / len(directions)] * len(directions)
        probs.append(1.0 - sum(probs))
        total, cumulative = sum(probs), 0.0
        draw = np.random.random_sample()
        for choice, prob in zip([*directions, None], probs, strict=True):
            cumulative += prob
            if draw < cumulative / total:
                return choice
        return None

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
    """mmdet PackDetInputs that also packs gt_keypoints into gt_instances.keypoints (N, 5, 3) float.

    The image is packed as a channels-first view of the HWC array, not a contiguous copy: the data
    preprocessor copies it anyway (BGR -> RGB, float, on the device), so the loader need not.
    """

    mapping_table = {**PackDetInputs.mapping_table, "gt_keypoints": "keypoints"}

    def transform(self, results: dict) -> dict:
        """mmdet's packing, with the image as a (C, H, W) view."""
        img = results.pop("img", None)
        packed = super().transform(results)
        if img is not None:
            img = np.ascontiguousarray(img if img.ndim == 3 else img[..., None])
            packed["inputs"] = torch.from_numpy(img).permute(2, 0, 1)
        return packed


@TRANSFORMS.register_module()
class DrawPhotoMetricDistortion(PhotoMetricDistortion):
    """Draw mmdet's PhotoMetricDistortion parameters for this image; apply them later, on the device.

    The draws are mmdet's own (`_random_flags`: numpy's global RNG, same order), stored in
    results['photometric'] for `FaceDataPreprocessor`, which applies the same steps to the batch on
    the trial's device. The loader then ships uint8 images (a quarter of float32's bytes) and spends
    no time on the float HSV round trip.
    """

    def transform(self, results: dict) -> dict:
        """Add this image's photometric parameters to results (the image is left as it is)."""
        (mode, brightness, contrast, saturation, hue, swap, delta, alpha, sat_value, hue_value, order) = (
            self._random_flags()
        )
        results[PHOTOMETRIC_KEY] = {
            "mode": int(mode),
            "brightness": bool(brightness),
            "contrast": bool(contrast),
            "saturation": bool(saturation),
            "hue": bool(hue),
            "swap": bool(swap),
            "delta": float(delta),
            "alpha": float(alpha),
            "saturation_value": float(sat_value),
            "hue_value": float(hue_value),
            "order": [int(i) for i in order],
        }
        return results
