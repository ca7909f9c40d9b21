"""Run a SCRFD detector on images: from a checkpoint (the head's own predict path) or a released-style ONNX file.

Two ways to feed an image. `letterbox` is insightface's SCRFD runtime: keep the aspect ratio, fit into
size x size, pad right and bottom with black pixels. `wider_input` is the reference's WIDER FACE test
(tools/test_widerface.py): mode 0 rescales to fit 640 x 640 and pads the normalised image with zeros
to 640 x 640; mode 2 keeps the original scale and pads to a multiple of 32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import mmcv
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import distance2bbox
from mmengine.config import ConfigDict
from torchvision.ops import nms

from scrfd_search.config_builder import MAX_DETECTIONS, PIXEL_MEAN, PIXEL_STD, SIZE_DIVISOR
from scrfd_search.errors import UserError
from scrfd_search.export.checkpoints import load_detector
from scrfd_search.export.released_format import OUTPUT_CHANNELS, STRIDES, released_output_names
from scrfd_search.space.arch import ArchSpec

ANCHORS_PER_LOCATION = 2
WIDER_MODES = (0, 2)  # the reference's test_widerface.py: 0 = 640 scale, 2 = original scale
WIDER_SCALE = 640
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True, eq=False)
class ModelInput:
    """A normalised RGB batch of one image and how it maps back: original = input / scale."""

    tensor: torch.Tensor  # (1, 3, H, W) float32, (pixel - 127.5) / 128
    scale_xy: tuple[float, float]
    content_hw: tuple[int, int]  # the resized image inside the padded input
    original_hw: tuple[int, int]


@dataclass(frozen=True, eq=False)
class Detections:
    """One image's faces in original pixels: (N, 4) x1 y1 x2 y2, (N,) scores, (N, 5, 2) landmarks or None."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray | None

    def to_json(self) -> list[dict[str, Any]]:
        """One object per face: box, score and (when predicted) the five landmarks."""
        faces = []
        for i in range(len(self.scores)):
            face: dict[str, Any] = {"box": [round(float(v), 3) for v in self.boxes[i]], "score": float(self.scores[i])}
            if self.keypoints is not None:
                face["landmarks"] = [[round(float(x), 3), round(float(y), 3)] for x, y in self.keypoints[i]]
            faces.append(face)
        return faces


def _normalise(image_bgr: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W) float tensor of RGB (pixel - mean) / std."""
    rgb = image_bgr[..., ::-1].astype(np.float32)
    normalised = (rgb - np.float32(PIXEL_MEAN[0])) / np.float32(PIXEL_STD[0])
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))[None]


def letterbox(image_bgr: np.ndarray, size: int | tuple[int, int]) -> ModelInput:
    """insightface's SCRFD input: keep the ratio, fit into size x size (or H x W), pad right/bottom with black."""
    h, w = image_bgr.shape[:2]
    size_h, size_w = (size, size) if isinstance(size, int) else size
    if h / w > size_h / size_w:
        new_h, new_w = size_h, int(size_h / (h / w))
    else:
        new_w, new_h = size_w, int(size_w * (h / w))
    scale = new_h / h  # insightface divides both coordinates by this one factor
    canvas = np.zeros((size_h, size_w, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image_bgr, (new_w, new_h))
    return ModelInput(_normalise(canvas), (scale, scale), (new_h, new_w), (h, w))


def wider_input(image_bgr: np.ndarray, mode: int) -> ModelInput:
    """The reference's WIDER FACE test input (mode 0: fit 640 x 640; mode 2: original scale)."""
    h, w = image_bgr.shape[:2]
    if mode == 0:
        resized, _ = mmcv.imrescale(image_bgr, (WIDER_SCALE, WIDER_SCALE), return_scale=True)
        target = (WIDER_SCALE, WIDER_SCALE)
    elif mode == 2:
        resized = image_bgr
        target = tuple(-(-d // SIZE_DIVISOR) * SIZE_DIVISOR for d in (h, w))
    else:
        raise UserError(f"--wider-mode: {mode} is not one of {', '.join(map(str, WIDER_MODES))}")
    rh, rw = resized.shape[:2]
    tensor = torch.zeros(1, 3, *target)  # the reference pads after normalising: zeros, i.e. grey pixels
    tensor[..., :rh, :rw] = _normalise(resized)
    return ModelInput(tensor, (rw / w, rh / h), (rh, rw), (h, w))


def read_image(path: Path) -> np.ndarray | None:
    """The image as BGR uint8, or None when it cannot be decoded."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return image if image is not None and image.size else None


class CheckpointDetector:
    """This project's detector with a checkpoint's weights, run through the head's predict path."""

    def __init__(self, arch: ArchSpec, checkpoint: Path | None, device: str = "cpu") -> None:
        self.arch = arch
        self.model = load_detector(arch, checkpoint).to(device)
        self.device = device

    def __call__(self, item: ModelInput, score_thr: float, nms_iou: float) -> Detections:
        """Detect faces in one prepared image."""
        h, w = item.tensor.shape[2:]
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w),
                pad_shape=(h, w),
                batch_input_shape=(h, w),
                ori_shape=item.original_hw,
                scale_factor=item.scale_xy,
            )
        )
        self.model.bbox_head.test_cfg = ConfigDict(
            nms_pre=-1,
            min_bbox_size=0,
            score_thr=score_thr,
            nms=dict(type="nms", iou_threshold=nms_iou),
            max_per_img=MAX_DETECTIONS,
        )
        with torch.no_grad():
            result = self.model.predict(item.tensor.to(self.device), [sample], rescale=True)[0].pred_instances
        result = result.cpu()
        keypoints = result.keypoints.numpy().astype(np.float64) if "keypoints" in result else None
        return Detections(result.bboxes.numpy().astype(np.float64), result.scores.numpy().astype(np.float64), keypoints)


class OnnxDetector:
    """An ONNX file in the released SCRFD convention, decoded from anchor centres, with NMS."""

    def __init__(self, path: Path, session_options: Any = None, providers: list[str] | None = None) -> None:
        import onnxruntime

        if not path.is_file():
            raise UserError(f"--onnx {path}: no such file")
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), sess_options=session_options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
            raise UserError(f"--onnx {path}: not an ONNX model ({str(exc).splitlines()[0][:200]})") from None
        self.path = path
        outputs = self.session.get_outputs()
        if len(outputs) not in (6, 9):
            raise UserError(
                f"--onnx {path}: has {len(outputs)} outputs; expected the released SCRFD layout "
                f"({', '.join(released_output_names(True))}, or without kps_*)"
            )
        self.with_keypoints = len(outputs) == 9
        shape = self.session.get_inputs()[0].shape
        self.fixed_hw = tuple(shape[2:]) if all(isinstance(d, int) for d in shape[2:]) else None

    def raw(self, tensor: torch.Tensor) -> list[np.ndarray]:
        """The session's outputs for one input, each as (anchors, channels)."""
        if self.fixed_hw is not None and tuple(tensor.shape[2:]) != self.fixed_hw:
            raise UserError(
                f"--onnx {self.path}: takes only {self.fixed_hw[0]}x{self.fixed_hw[1]} inputs, got "
                f"{tensor.shape[2]}x{tensor.shape[3]} (use --size {self.fixed_hw[1]} or an ONNX file with free H and W)"
            )
        outputs = self.session.run(None, {self.session.get_inputs()[0].name: tensor.numpy()})
        names = released_output_names(self.with_keypoints)
        return [
            np.asarray(o).reshape(-1, OUTPUT_CHANNELS[n.rsplit("_", 1)[0]]) for n, o in zip(names, outputs, strict=True)
        ]

    def __call__(self, item: ModelInput, score_thr: float, nms_iou: float) -> Detections:
        """Detect faces in one prepared image."""
        h, w = item.tensor.shape[2:]
        outputs = self.raw(item.tensor)
        boxes, scores, kps = [], [], []
        for level, stride in enumerate(STRIDES):
            score = torch.from_numpy(outputs[level][:, 0].copy())
            ys, xs = torch.meshgrid(torch.arange(h // stride), torch.arange(w // stride), indexing="ij")
            centres = torch.stack([xs, ys], -1).reshape(-1, 1, 2).expand(-1, ANCHORS_PER_LOCATION, 2)
            centres = (centres.reshape(-1, 2) * stride).float()
            keep = score >= score_thr
            dist = torch.from_numpy(outputs[3 + level].copy())[keep] * stride
            boxes.append(distance2bbox(centres[keep], dist))
            scores.append(score[keep])
            if self.with_keypoints:
                offsets = torch.from_numpy(outputs[6 + level].copy())[keep].reshape(-1, 5, 2) * stride
                kps.append(centres[keep][:, None] + offsets)
        all_boxes, all_scores = torch.cat(boxes), torch.cat(scores)
        order = nms(all_boxes, all_scores, nms_iou)[:MAX_DETECTIONS]
        scale = torch.tensor(item.scale_xy, dtype=torch.float32)
        out_boxes = (all_boxes[order].reshape(-1, 2, 2) / scale).reshape(-1, 4)
        out_kps = (torch.cat(kps)[order] / scale).numpy().astype(np.float64) if self.with_keypoints else None
        return Detections(out_boxes.numpy().astype(np.float64), all_scores[order].numpy().astype(np.float64), out_kps)


def draw(image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
    """A copy of the image with each face's box, score and landmarks drawn."""
    canvas = image_bgr.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 500))
    colours = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))  # eyes, nose, mouth corners
    for i, (box, score) in enumerate(zip(detections.boxes, detections.scores, strict=True)):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        cv2.putText(
            canvas,
            f"{score:.2f}",
            (x1, max(0, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            (0, 255, 0),
            thickness,
        )
        if detections.keypoints is not None:
            for (x, y), colour in zip(detections.keypoints[i], colours, strict=True):
                cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
    return canvas


def collect_images(inputs: list[str | os.PathLike], exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """(image file, its path relative to the output folder without suffix) for files and folders (recursive).

    Files under `exclude` (the output folder, when it lies inside an input folder) are left out.
    """
    skip = exclude.resolve() if exclude is not None else None
    found: list[tuple[Path, Path]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and (skip is None or not p.resolve().is_relative_to(skip))
            )
            found += [(p, p.relative_to(path).with_suffix("")) for p in files]
        elif path.is_file():
            found.append((path, Path(path.stem)))
        else:
            raise UserError(f"{path}: no such file or folder (expected images or folders of images)")
    if not found:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    seen: dict[Path, Path] = {}
    for image, rel in found:
        if rel in seen:
            raise UserError(f"{image} and {seen[rel]} would write the same output {rel}.json (rename one)")
        seen[rel] = image
    return found
