# scrfd_resnet50: written by tools/make_baseline_configs.py; do not edit.
# SCRFD-34GF's PAFPN neck and SCRFD head on mmdet's ResNet-50 backbone, SCRFD's data and 640-epoch
# recipe. Backbone weights: from scratch (no ImageNet weights were at hand when this was written; add
#   init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')
# to model.backbone, or rerun the tool with --pretrained, to start from ImageNet).
# FLOPs by component: scrfd-search flops configs/baselines/scrfd_resnet50.py
_base_ = [
    '../_base_/models/scrfd.py',
    '../_base_/datasets/wider_face_scrfd.py',
    '../_base_/schedules/scrfd_640e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        style='pytorch',
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None,
    ),
    neck=dict(in_channels=[256, 512, 1024, 2048], out_channels=128),
    bbox_head=dict(
        in_channels=128,
        feat_channels=256,
        stacked_convs=2,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        shared_tower=True,
        depthwise=False,
        with_kps=False,
        box_scale=True,
    ),
)
optim_wrapper = dict(optimizer=dict(lr=0.02))
work_dir = 'work_dirs/scrfd_resnet50'
