"""WIDER FACE evaluation by the official protocol: ground truth, prediction files, AP, mmengine metric.

`WiderFaceMetric` is imported on first use (it pulls in mmdet and torch); everything else needs only
numpy (and scipy to read the .mat files).
"""

from __future__ import annotations

from typing import Any

from scrfd_search.evaluation.ground_truth import (
    SUBSETS,
    GTImage,
    WiderFaceGT,
    build_ground_truth,
    load_ground_truth,
)
from scrfd_search.evaluation.predictions import (
    PredictionSet,
    read_prediction_file,
    read_predictions,
    write_prediction_file,
    xyxy_to_xywh,
)
from scrfd_search.evaluation.protocol import PRCurve, WiderFaceResult, evaluate

__all__ = [
    "SUBSETS",
    "GTImage",
    "PRCurve",
    "PredictionSet",
    "WiderFaceGT",
    "WiderFaceMetric",
    "WiderFaceResult",
    "build_ground_truth",
    "evaluate",
    "load_ground_truth",
    "read_prediction_file",
    "read_predictions",
    "write_prediction_file",
    "xyxy_to_xywh",
]


def __getattr__(name: str) -> Any:
    """Import WiderFaceMetric lazily, so that importing this package does not import mmdet."""
    if name == "WiderFaceMetric":
        from scrfd_search.evaluation.metric import WiderFaceMetric

        return WiderFaceMetric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
