# scrfd_10g: the released SCRFD architecture, trained with the reference's full 640-epoch schedule.
# Written by tools/make_published_configs.py (from scrfd_search/space/published.py); do not edit.
# Its ArchSpec is scrfd_10g.json beside this file. Train with: python tools/train.py configs/scrfd/scrfd_10g.py
_base_ = [
    '../_base_/models/scrfd.py',
    '../_base_/datasets/wider_face_scrfd.py',
    '../_base_/schedules/scrfd_640e.py',
    '../_base_/default_runtime.py',
]

train_pipeline = _base_.train_pipeline
train_pipeline[2].bbox_clip_border = False
train_pipeline[3].clip_object_border = False

model = dict(
    backbone=dict(
        type='SCRFDResNet',
        block='basic',
        zero_init_residual=True,
        stem_width=56,
        depths=[3, 4, 2, 3],
        widths=[56, 88, 88, 224],
        norm_cfg=dict(type='BN', requires_grad=True),
    ),
    neck=dict(in_channels=[56, 88, 88, 224], out_channels=56),
    bbox_head=dict(
        in_channels=56,
        feat_channels=80,
        stacked_convs=3,
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        shared_tower=True,
        depthwise=False,
        with_kps=False,
        box_scale=True,
    ),
)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
work_dir = 'work_dirs/scrfd_10g'
