# scrfd_500m: the released SCRFD architecture, trained with the reference's full 640-epoch schedule.
# Written by tools/make_published_configs.py (from scrfd_search/space/published.py); do not edit.
# Its ArchSpec is scrfd_500m.json beside this file. Train with: python tools/train.py configs/scrfd/scrfd_500m.py
_base_ = [
    '../_base_/models/scrfd.py',
    '../_base_/datasets/wider_face_scrfd.py',
    '../_base_/schedules/scrfd_640e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        type='SCRFDMobileNet',
        stem_width=16,
        depths=[2, 3, 2, 6],
        widths=[40, 72, 152, 288],
        norm_cfg=dict(type='BN', requires_grad=True),
    ),
    neck=dict(in_channels=[40, 72, 152, 288], out_channels=16),
    bbox_head=dict(
        in_channels=16,
        feat_channels=64,
        stacked_convs=2,
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        shared_tower=True,
        depthwise=True,
        with_kps=False,
        box_scale=True,
    ),
)
work_dir = 'work_dirs/scrfd_500m'
