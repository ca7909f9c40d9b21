# SCRFD model defaults: anchors, losses, ATSS assigner, test settings.
# Written by scrfd-search (scrfd_search/config_writer.py); do not edit.

model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        type='FaceDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[128.0, 128.0, 128.0],
        bgr_to_rgb=True,
        pad_size_divisor=32,
    ),
    neck=dict(type='PAFPN', start_level=1, add_extra_convs='on_output', num_outs=3),
    bbox_head=dict(
        type='SCRFDHead',
        num_classes=1,
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            scales=[1, 2],
            base_sizes=[16, 64, 256],
            strides=[8, 16, 32],
        ),
        bbox_coder=dict(type='DistancePointBBoxCoder'),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type='DIoULoss', loss_weight=2.0),
        loss_kps=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=0.1),
    ),
    train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9, ignore_iof_thr=0.5), allowed_border=-1),
    test_cfg=dict(
        nms_pre=-1,
        min_bbox_size=0,
        score_thr=0.02,
        nms=dict(type='nms', iou_threshold=0.45),
        max_per_img=1000,
    ),
)
