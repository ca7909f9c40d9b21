"""The released SCRFD ONNX models' output convention: names, shapes and the module that produces them."""

from __future__ import annotations

from typing import Any

from scrfd_search.head_settings import STRIDES

# The released models' output groups (insightface's SCRFD runtime reads them in this order).
OUTPUT_GROUPS = ("score", "bbox", "kps")
OUTPUT_CHANNELS = {"score": 1, "bbox": 4, "kps": 10}


def released_output_names(with_keypoints: bool) -> list[str]:
    """Output names in the released models' order: each group (score, bbox, kps), then each stride."""
    groups = OUTPUT_GROUPS if with_keypoints else OUTPUT_GROUPS[:2]
    return [f"{group}_{stride}" for group in groups for stride in STRIDES]


def released_head_module(detector: Any) -> Any:
    """backbone -> neck -> head of an mmdet detector with the released SCRFD ONNX models' outputs.

    Per stride S, with A = H/S * W/S * 2 anchors (row-major locations, two anchors each):
    score_S (1, A, 1) sigmoid face score; bbox_S (1, A, 4) left/top/right/bottom distances from the
    anchor centre in units of S; kps_S (1, A, 10) five (x, y) offsets from the centre in units of S.
    """
    import torch

    class ReleasedOutputs(torch.nn.Module):
        """The dense part of the detector, without decoding or NMS, in the released layout."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.neck, self.bbox_head = detector.backbone, detector.neck, detector.bbox_head

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            """score_*, bbox_*, (kps_*) per stride 8, 16, 32."""
            outputs = self.bbox_head(self.neck(self.backbone(images)))
            flat = []
            for group, per_level in zip(OUTPUT_GROUPS, outputs, strict=False):
                for t in per_level:
                    t = t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, OUTPUT_CHANNELS[group])
                    flat.append(t.sigmoid() if group == "score" else t)
            return tuple(flat)

    return ReleasedOutputs().eval()
