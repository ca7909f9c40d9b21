# scrfd_34g: the released SCRFD architecture, trained with the reference's full 640-epoch schedule.
# Written by tools/make_published_configs.py (from scrfd_search/space/published.py); do not edit.
# Its ArchSpec is scrfd_34g.json beside this file. Train with: python tools/train.py configs/scrfd/scrfd_34g.py
_base_ = [
    '../_base_/models/scrfd.py',
    '../_base_/datasets/wider_face_scrfd.py',
    '../_base_/schedules/scrfd_640e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        type='SCRFDResNet',
        block='bottleneck',
        zero_init_residual=True,
        stem_width=56,
        depths=[17, 16, 2, 8],
        widths=[56, 56, 144, 184],
        norm_cfg=dict(type='BN', requires_grad=True),
    ),
    neck=dict(in_channels=[224, 224, 576, 736], out_channels=128),
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
work_dir = 'work_dirs/scrfd_34g'
