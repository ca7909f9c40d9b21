"""The SCRFD head's anchors, ATSS assignment and losses (the reference's configs).

The one home of these numbers for the training configs, the head's own defaults, data-stats' count
of ATSS positives and the released models' output names.
"""

STRIDES = (8, 16, 32)
ANCHOR_GENERATOR = {
    "type": "AnchorGenerator",
    "ratios": [1.0],
    "scales": [1, 2],
    "base_sizes": [16, 64, 256],
    "strides": list(STRIDES),
}
ATSS_TOPK = 9
LOSS_CLS = {"type": "QualityFocalLoss", "use_sigmoid": True, "beta": 2.0, "loss_weight": 1.0}
LOSS_BBOX = {"type": "DIoULoss", "loss_weight": 2.0}
LOSS_KPS = {"type": "SmoothL1Loss", "beta": 1.0 / 9.0, "loss_weight": 0.1}
