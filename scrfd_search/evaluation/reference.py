"""The slow, literal form of the official WIDER FACE evaluation, kept only to verify the fast one.

It follows the structure of the official Python port (wondervictor/WiderFace-Evaluation):
norm_score, bbox_overlaps, image_eval, img_pr_info, dataset_pr_info, voc_ap, with plain loops and
the same per-threshold scans, so that it can be checked against the official code by reading.
Two things the official tool leaves to its input are made explicit: each image's predictions are
visited in descending score order (a stable sort; the official tool assumes sorted files), and an
image without predictions counts as no detections (the official tool needs a file per image).
The tests and benchmarks/bench_eval.py compare scrfd_search.evaluation.protocol.evaluate with it.
Do not use it for real evaluations: it is about 100 times slower.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scrfd_search.evaluation.ground_truth import SUBSETS, ImageKey, WiderFaceGT


def norm_score(predictions: dict[ImageKey, np.ndarray]) -> None:
    """Min-max normalise the score column in place over all images (min starts at 1, max at 0)."""
    max_score, min_score = 0, 1
    for boxes in predictions.values():
        if len(boxes) == 0:
            continue
        max_score = max(np.max(boxes[:, -1]), max_score)
        min_score = min(np.min(boxes[:, -1]), min_score)
    span = max_score - min_score
    for boxes in predictions.values():
        if len(boxes) == 0:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            boxes[:, -1] = (boxes[:, -1] - min_score) / span


def bbox_overlaps(boxes: np.ndarray, query_boxes: np.ndarray) -> np.ndarray:
    """IoU of every box with every query box, x1 y1 x2 y2 with the +1 pixel convention, one pair at a time."""
    overlaps = np.zeros((boxes.shape[0], query_boxes.shape[0]))
    for k in range(query_boxes.shape[0]):
        qx1, qy1, qx2, qy2 = (float(v) for v in query_boxes[k])
        query_area = (qx2 - qx1 + 1) * (qy2 - qy1 + 1)
        for n in range(boxes.shape[0]):
            bx1, by1, bx2, by2 = (float(v) for v in boxes[n])
            iw = min(bx2, qx2) - max(bx1, qx1) + 1
            if iw > 0:
                ih = min(by2, qy2) - max(by1, qy1) + 1
                if ih > 0:
                    union = (bx2 - bx1 + 1) * (by2 - by1 + 1) + query_area - iw * ih
                    overlaps[n, k] = iw * ih / union
    return overlaps


def image_eval(
    pred: np.ndarray, gt: np.ndarray, keep_flags: np.ndarray, iou_thresh: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction (in order): recalled kept faces so far, and 1 for a proposal or -1 when ignored."""
    pred_boxes = pred[:, :4].copy()
    gt_boxes = gt.copy()
    pred_boxes[:, 2] += pred_boxes[:, 0]
    pred_boxes[:, 3] += pred_boxes[:, 1]
    gt_boxes[:, 2] += gt_boxes[:, 0]
    gt_boxes[:, 3] += gt_boxes[:, 1]
    overlaps = bbox_overlaps(pred_boxes, gt_boxes)

    face_state = np.zeros(gt.shape[0])  # 0 untouched, 1 recalled, -1 matched but not kept
    pred_recall = np.zeros(pred.shape[0])
    proposal_list = np.ones(pred.shape[0])
    for h in range(pred.shape[0]):
        best_iou, best = overlaps[h].max(), overlaps[h].argmax()
        if best_iou >= iou_thresh:
            if keep_flags[best] == 0:
                face_state[best] = -1
                proposal_list[h] = -1
            elif face_state[best] == 0:
                face_state[best] = 1
        pred_recall[h] = np.count_nonzero(face_state == 1)
    return pred_recall, proposal_list


def img_pr_info(thresh_num: int, pred: np.ndarray, proposal_list: np.ndarray, pred_recall: np.ndarray) -> np.ndarray:
    """Per threshold: (proposals, recalled faces) among the predictions up to the last one passing it."""
    pr_info = np.zeros((thresh_num, 2))
    for t in range(thresh_num):
        thresh = 1 - (t + 1) / thresh_num
        passing = np.where(pred[:, 4] >= thresh)[0]
        if len(passing) == 0:
            continue
        last = passing[-1]
        pr_info[t, 0] = np.count_nonzero(proposal_list[: last + 1] == 1)
        pr_info[t, 1] = pred_recall[last]
    return pr_info


def dataset_pr_info(thresh_num: int, pr_curve: np.ndarray, count_face: int) -> np.ndarray:
    """Turn summed (proposals, recalled) into (precision, recall) per threshold."""
    curve = np.zeros((thresh_num, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        for t in range(thresh_num):
            curve[t, 0] = pr_curve[t, 1] / pr_curve[t, 0]
            curve[t, 1] = pr_curve[t, 1] / count_face
    return curve


def voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """Area under the precision envelope, the envelope built by a backward loop."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    changes = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


def evaluate_reference(
    gt: WiderFaceGT,
    predictions: Mapping[ImageKey, np.ndarray],
    iou_thresh: float = 0.5,
    thresh_num: int = 1000,
) -> dict[str, tuple[float, np.ndarray, np.ndarray]]:
    """Per subset: (AP, precision per threshold, recall per threshold), the slow literal way."""
    preds = {key: np.array(boxes, dtype=np.float64).reshape(-1, 5) for key, boxes in predictions.items()}
    norm_score(preds)
    for key, boxes in preds.items():
        preds[key] = boxes[np.argsort(-boxes[:, 4], kind="stable")]
    results = {}
    for subset in SUBSETS:
        count_face = 0
        pr_curve = np.zeros((thresh_num, 2))
        for image in gt.images:
            pred = preds.get(image.key, np.zeros((0, 5)))
            keep_index = image.keep[subset]
            count_face += len(keep_index)
            if len(image.boxes) == 0 or len(pred) == 0:
                continue
            keep_flags = np.zeros(image.boxes.shape[0])
            keep_flags[keep_index] = 1
            pred_recall, proposal_list = image_eval(pred, np.array(image.boxes), keep_flags, iou_thresh)
            pr_curve += img_pr_info(thresh_num, pred, proposal_list, pred_recall)
        curve = dataset_pr_info(thresh_num, pr_curve, count_face)
        results[subset] = (voc_ap(curve[:, 1], curve[:, 0]), curve[:, 0], curve[:, 1])
    return results
