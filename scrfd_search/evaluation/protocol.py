"""Easy/medium/hard AP by the official WIDER FACE protocol, vectorised.

The official tool (the Python port wondervictor/WiderFace-Evaluation) loops over 1,000 score
thresholds per image. Here every quantity it sums is rewritten as a count of per-prediction events:
at threshold t, an image's proposals are its non-ignored predictions with score >= t, and its recalled
faces are the kept faces whose best-scoring matched prediction has score >= t. Both counts are
independent of the order in which an image's predictions are visited once that order is by
descending score (as the official tool assumes of its input files), so summing over images reduces to
one histogram over threshold bins and a cumulative sum. The result equals the official one to the
last bit: same float64 arithmetic for IoU, score normalisation, thresholds, and voc_ap.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scrfd_search.evaluation.ground_truth import SUBSETS, ImageKey, WiderFaceGT
from scrfd_search.evaluation.predictions import PredictionSet

logger = logging.getLogger(__name__)

THRESHOLD_COUNT = 1000
IOU_THRESHOLD = 0.5
# thresh_t = 1 - (t + 1) / 1000 with the same float64 operations as the official loop, so that
# `score >= thresh_t` compares against bit-identical values.
SCORE_THRESHOLDS: np.ndarray = 1 - (np.arange(THRESHOLD_COUNT) + 1) / THRESHOLD_COUNT
_ASCENDING_THRESHOLDS = SCORE_THRESHOLDS[::-1].copy()
_NEVER = THRESHOLD_COUNT  # bin of a prediction or face below every threshold


@dataclass(frozen=True, eq=False)
class PRCurve:
    """Precision and recall at each of the 1,000 score thresholds (descending thresholds)."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


@dataclass(frozen=True, eq=False)
class WiderFaceResult:
    """APs (fractions) per subset, the PR curves behind them, and what was evaluated."""

    ap: dict[str, float]
    curves: dict[str, PRCurve]
    num_images: int
    num_predictions: int
    num_faces: dict[str, int]


def overlaps_plus_one(boxes: np.ndarray, query_boxes: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) x1 y1 x2 y2 boxes with (K, 4) query boxes, widths counted as x2 - x1 + 1.

    Same operations in the same order as the official box_overlaps, so the float64 results match it.
    """
    bx1, by1, bx2, by2 = (boxes[:, i : i + 1] for i in range(4))
    qx1, qy1, qx2, qy2 = (query_boxes[:, i] for i in range(4))
    query_area = (qx2 - qx1 + 1) * (qy2 - qy1 + 1)
    iw = np.minimum(bx2, qx2) - np.maximum(bx1, qx1) + 1
    ih = np.minimum(by2, qy2) - np.maximum(by1, qy1) + 1
    intersect = iw * ih
    union = (bx2 - bx1 + 1) * (by2 - by1 + 1) + query_area - intersect
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((iw > 0) & (ih > 0), intersect / union, 0.0)


def _xywh_to_corners(boxes: np.ndarray) -> np.ndarray:
    """x y w h to x1 y1 x2 y2 with x2 = x + w (no -1), exactly as the official tool converts both sides."""
    corners = boxes[:, :4].copy()
    corners[:, 2] = corners[:, 2] + corners[:, 0]
    corners[:, 3] = corners[:, 3] + corners[:, 1]
    return corners


def best_face_matches(pred_xywh: np.ndarray, gt_xywh: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Per prediction, the index of its best-IoU face (first on ties), or -1 when that IoU < threshold."""
    overlaps = overlaps_plus_one(_xywh_to_corners(pred_xywh), _xywh_to_corners(gt_xywh))
    best = overlaps.argmax(axis=1)
    best_iou = overlaps[np.arange(len(best)), best]
    return np.where(best_iou >= iou_threshold, best, -1)


def score_range(score_arrays: list[np.ndarray]) -> tuple[float, float]:
    """(min, max - min) for the official normalisation: min starts at 1 and max at 0 before the scan."""
    nonempty = [scores for scores in score_arrays if scores.size]
    max_score = max([0.0] + [float(scores.max()) for scores in nonempty])
    min_score = min([1.0] + [float(scores.min()) for scores in nonempty])
    return min_score, max_score - min_score


def threshold_bins(normalised_scores: np.ndarray) -> np.ndarray:
    """Index of the first (highest) threshold each score reaches (score >= thresh_t); 1000 if none or NaN."""
    reached = np.searchsorted(_ASCENDING_THRESHOLDS, normalised_scores, side="right")
    reached[np.isnan(normalised_scores)] = 0
    return THRESHOLD_COUNT - reached


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, as the official voc_ap (NaN precision propagates backwards)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    # np.maximum.accumulate over the reversed array is the official backward loop, NaN included.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    changes = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


def _as_detections(
    predictions: PredictionSet | Mapping[ImageKey, np.ndarray],
) -> Mapping[ImageKey, np.ndarray]:
    """The per-image (P, 5) x y w h score arrays, validated."""
    detections = predictions.detections if isinstance(predictions, PredictionSet) else predictions
    for key, boxes in detections.items():
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise ValueError(f"predictions for {key}: expected a (P, 5) array of x y w h score, got {boxes.shape}")
        if not np.isfinite(boxes).all():
            raise ValueError(f"predictions for {key}: boxes and scores must be finite")
    return detections


def _match_all(
    gt: WiderFaceGT, detections: Mapping[ImageKey, np.ndarray], iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over all images: each prediction's threshold bin and global matched-face index (-1 if none),
    and each face's recall bin (the bin of its best-scoring matched prediction)."""
    min_score, score_span = score_range([boxes[:, 4] for boxes in detections.values()])
    if detections and score_span == 0:
        logger.warning(
            "all prediction scores are equal: the official min-max normalisation divides by zero, "
            "so no prediction passes any threshold and every AP is 0"
        )
    bins, faces = [], []
    offset = 0
    for image in gt.images:
        boxes = detections.get(image.key)
        # Images without faces or without predictions contribute nothing (the official `continue`).
        if boxes is not None and boxes.shape[0] and image.num_faces:
            with np.errstate(divide="ignore", invalid="ignore"):
                bins.append(threshold_bins((boxes[:, 4] - min_score) / score_span))
            best = best_face_matches(boxes, image.boxes, iou_threshold)
            faces.append(np.where(best >= 0, best + offset, -1))
        offset += image.num_faces
    pred_bins = np.concatenate(bins) if bins else np.zeros(0, dtype=np.int64)
    pred_faces = np.concatenate(faces) if faces else np.zeros(0, dtype=np.int64)
    face_bins = np.full(offset, _NEVER, dtype=np.int64)
    matched = pred_faces >= 0
    np.minimum.at(face_bins, pred_faces[matched], pred_bins[matched])
    return pred_bins, pred_faces, face_bins


def _kept_mask(gt: WiderFaceGT, subset: str) -> np.ndarray:
    """Boolean mask over all faces (images concatenated in order) of the faces kept in a subset."""
    mask = np.zeros(gt.num_faces(), dtype=bool)
    offset = 0
    for image in gt.images:
        mask[image.keep[subset] + offset] = True
        offset += image.num_faces
    return mask


def _cumulative_counts(bins: np.ndarray) -> np.ndarray:
    """Per threshold t, how many of the binned items have bin <= t (as float64, like the official sums)."""
    return np.cumsum(np.bincount(bins, minlength=_NEVER + 1)[:_NEVER]).astype(np.float64)


def _subset_curve(
    gt: WiderFaceGT, subset: str, pred_bins: np.ndarray, pred_faces: np.ndarray, face_bins: np.ndarray
) -> PRCurve:
    """The PR curve of one subset from the subset-independent matching."""
    kept = _kept_mask(gt, subset)
    ignored = (pred_faces >= 0) & ~kept[np.maximum(pred_faces, 0)]
    proposals = _cumulative_counts(pred_bins[~ignored])
    recalled = _cumulative_counts(face_bins[kept])
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = recalled / proposals
        recall = recalled / gt.num_faces(subset)
    return PRCurve(SCORE_THRESHOLDS.copy(), precision, recall)


def evaluate(
    gt: WiderFaceGT,
    predictions: PredictionSet | Mapping[ImageKey, np.ndarray],
    iou_threshold: float = IOU_THRESHOLD,
) -> WiderFaceResult:
    """Easy/medium/hard AP of predictions ((P, 5) x y w h score per (event, image)) by the official protocol.

    Ground-truth images with no entry count as no detections; entries for images outside the ground
    truth only take part in the score normalisation (as in the official tool).
    """
    detections = _as_detections(predictions)
    pred_bins, pred_faces, face_bins = _match_all(gt, detections, iou_threshold)
    curves = {subset: _subset_curve(gt, subset, pred_bins, pred_faces, face_bins) for subset in SUBSETS}
    ap = {subset: voc_ap(curve.recall, curve.precision) for subset, curve in curves.items()}
    num_predictions = sum(int(detections[key].shape[0]) for key in gt.index if key in detections)
    return WiderFaceResult(ap, curves, len(gt), num_predictions, {s: gt.num_faces(s) for s in SUBSETS})
