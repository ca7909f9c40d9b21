"""mmdet's photometric distortion applied on the training device, after collation.

mmdet's PhotoMetricDistortion converts every 640x640 training image to float32 and through HSV and
back on the data-loading core: about half of a core's time per image goes there (see
benchmarks/bench_data_pipeline.py). Here the loader only draws the distortion's parameters
(`DrawPhotoMetricDistortion`, the same draws from the same RNG in the same order) and ships the
image as uint8; `FaceDataPreprocessor` applies the distortion on the trial's device (the GPU, where
it costs next to nothing) in float32, with OpenCV's float HSV formulas, so the images the model sees
are mmdet's up to float rounding. No library offers OpenCV's float HSV conversion on tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.registry import MODELS
from torch import Tensor

FLT_EPSILON = 1.1920929e-07  # OpenCV's epsilon in its float HSV conversion
PHOTOMETRIC_KEY = "photometric"
# OpenCV's HSV -> BGR: per hue sector, which of (v, v(1-s), v(1-sf), v(1-s(1-f))) is b, g, r.
HSV_SECTORS = ((1, 3, 0), (1, 0, 2), (3, 0, 1), (0, 2, 1), (0, 1, 3), (2, 1, 0))


def bgr_to_hsv(img: Tensor) -> Tensor:
    """(3, H, W) float BGR -> HSV as OpenCV's float conversion: H in degrees [0, 360), S = range / V."""
    b, g, r = img
    v = img.amax(0)
    diff = v - img.amin(0)
    s = diff / (v.abs() + FLT_EPSILON)
    scale = 60.0 / (diff + FLT_EPSILON)
    h = torch.where(v == r, (g - b) * scale, torch.where(v == g, (b - r) * scale + 120, (r - g) * scale + 240))
    h = torch.where(h < 0, h + 360, h)
    return torch.stack((h, s, v))


def hsv_to_bgr(hsv: Tensor) -> Tensor:
    """(3, H, W) HSV (H in degrees) -> float BGR as OpenCV's float conversion."""
    h, s, v = hsv
    h = torch.remainder(h * (6.0 / 360.0), 6.0)
    sector = h.floor()
    f = h - sector
    tab = torch.stack((v, v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))))
    index = torch.tensor(HSV_SECTORS, device=hsv.device)[sector.long().clamp(0, 5)]  # (H, W, 3)
    bgr = torch.gather(tab, 0, index.permute(2, 0, 1))
    return torch.where(s == 0, v.expand_as(bgr), bgr)


def photometric_distortion(img: Tensor, params: dict[str, Any]) -> Tensor:
    """mmdet's PhotoMetricDistortion steps on a (3, H, W) float BGR image, with drawn params."""
    img = img.float()
    if params["brightness"]:
        img = img + params["delta"]
    if params["mode"] == 1 and params["contrast"]:
        img = img * params["alpha"]
    hsv = bgr_to_hsv(img)
    if params["saturation"]:
        sat = hsv[1] * params["saturation_value"]
        hsv = torch.stack((hsv[0], sat.clamp(0, 1) if params["saturation_value"] > 1 else sat, hsv[2]))
    if params["hue"]:
        hue = hsv[0] + params["hue_value"]
        hue = torch.where(hue > 360, hue - 360, hue)
        hue = torch.where(hue < 0, hue + 360, hue)
        hsv = torch.stack((hue, hsv[1], hsv[2]))
    img = hsv_to_bgr(hsv)
    if params["mode"] == 0 and params["contrast"]:
        img = img * params["alpha"]
    if params["swap"]:
        img = img[list(params["order"])]
    return img


@MODELS.register_module()
class FaceDataPreprocessor(DetDataPreprocessor):
    """mmdet's DetDataPreprocessor that first applies each training image's photometric distortion.

    The parameters travel in the data sample's metainfo under 'photometric' (put there by
    DrawPhotoMetricDistortion); images without them (validation, inference) pass unchanged.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        """Distort (training only, on this module's device), then mmdet's normalise, pad and batch."""
        if training and isinstance(data.get("inputs"), list) and data.get("data_samples"):
            data = self.cast_data(data)
            inputs = []
            for img, sample in zip(data["inputs"], data["data_samples"], strict=True):
                params = sample.metainfo.get(PHOTOMETRIC_KEY)
                inputs.append(img if params is None else photometric_distortion(img, params))
            data = {**data, "inputs": inputs}
        return super().forward(data, training)
