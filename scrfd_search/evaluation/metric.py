"""`WiderFaceMetric`: the official WIDER FACE easy/medium/hard AP as an mmengine metric for mmdet 3.

By default only the images that were actually evaluated are scored (the ground truth is restricted
to them), so validating on a subset of WIDER FACE val gives that subset's AP. With
`restrict_to_processed=False` every val image counts, and images never processed count as having no
detections (the honest full-val number when a run covers only part of it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from scrfd_search.errors import UserError
from scrfd_search.evaluation.ground_truth import SUBSETS, ImageKey, load_ground_truth
from scrfd_search.evaluation.predictions import write_prediction_file, xyxy_to_xywh
from scrfd_search.evaluation.protocol import IOU_THRESHOLD, evaluate


def _field(container: Any, name: str) -> Any:
    """A field of a data sample or of its pred_instances, whether a dict or a data element."""
    if isinstance(container, dict):
        if name not in container:
            raise KeyError(f"WiderFaceMetric: data sample has no '{name}' (expected mmdet 3 detection samples)")
        return container[name]
    return getattr(container, name)


def _as_numpy(value: Any) -> np.ndarray:
    """A tensor or array-like as a float64 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def image_key(img_path: str | os.PathLike) -> ImageKey:
    """(event, image name) of an image path: its parent folder's name and its name without extension."""
    path = PurePath(img_path)
    return (path.parent.name, path.stem)


@METRICS.register_module()
class WiderFaceMetric(BaseMetric):
    """Easy/medium/hard AP (fractions) by the official WIDER FACE protocol.

    Args:
        gt_dir: folder holding wider_face_val.mat and wider_{easy,medium,hard}_val.mat.
        outfile_dir: when set, also write `<outfile_dir>/<event>/<image>.txt` prediction files.
        restrict_to_processed: score only the processed images (default) or all of val.
        iou_threshold: IoU for a match (0.5 in the official protocol).
    """

    default_prefix = "widerface"

    def __init__(
        self,
        gt_dir: str | os.PathLike,
        outfile_dir: str | os.PathLike | None = None,
        restrict_to_processed: bool = True,
        iou_threshold: float = IOU_THRESHOLD,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.gt = load_ground_truth(gt_dir)
        self.outfile_dir = outfile_dir
        self.restrict_to_processed = restrict_to_processed
        self.iou_threshold = iou_threshold

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Keep each sample's (event, image, x1 y1 x2 y2 boxes, scores), dropping non-finite or inverted boxes."""
        for sample in data_samples:
            event, image = image_key(_field(sample, "img_path"))
            instances = _field(sample, "pred_instances")
            boxes = _as_numpy(_field(instances, "bboxes")).reshape(-1, 4)
            scores = _as_numpy(_field(instances, "scores")).reshape(-1)
            # a box with x2 < x1 or y2 < y1 is no box: prediction files refuse negative sizes, so drop it here too
            keep = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
            keep &= (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
            self.results.append((event, image, boxes[keep], scores[keep], int((~keep).sum())))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """AP per subset over the collected results; optionally write the prediction files."""
        detections = {
            (event, image): np.column_stack([xyxy_to_xywh(boxes), scores]) for event, image, boxes, scores, _ in results
        }
        dropped = sum(result[4] for result in results)
        gt = self.gt.restrict(detections) if self.restrict_to_processed else self.gt
        if not gt.images:
            example = next(iter(detections), ("<event>", "<image>"))
            raise UserError(
                f"WiderFaceMetric: none of the {len(detections)} processed images is in the ground truth "
                f"(expected image paths .../<event>/<image>.jpg as in WIDER FACE val, got e.g. {'/'.join(example)})"
            )
        result = evaluate(gt, detections, self.iou_threshold)
        if self.outfile_dir is not None:
            for event, image, boxes, scores, _ in results:
                write_prediction_file(self.outfile_dir, event, image, boxes, scores)
        logger = MMLogger.get_current_instance()
        outside = len(detections) - sum(key in self.gt.index for key in detections)
        logger.info(
            f"WIDER FACE AP on {result.num_images} images ({result.num_predictions} predictions"
            + (f"; {outside} processed images are not in the ground truth" if outside else "")
            + (f"; {dropped} detections with NaN, infinite or negative sizes dropped" if dropped else "")
            + "): "
            + ", ".join(f"{subset} {100 * result.ap[subset]:.2f}" for subset in SUBSETS)
        )
        return {subset: result.ap[subset] for subset in SUBSETS}
