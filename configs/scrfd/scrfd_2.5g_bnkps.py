# scrfd_2.5g_bnkps: the released SCRFD architecture, trained with the reference's full 640-epoch schedule.
# Written by tools/make_published_configs.py (from scrfd_search/space/published.py); do not edit.
# Its ArchSpec is scrfd_2.5g_bnkps.json beside this file. Train with: python tools/train.py configs/scrfd/scrfd_2.5g_bnkps.py
_base_ = [
    '../_base_/models/scrfd.py',
    '../_base_/datasets/retinaface_scrfd.py',
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
        stem_width=24,
        depths=[3, 5, 3, 2],
        widths=[24, 48, 48, 80],
        norm_cfg=dict(type='BN', requires_grad=True),
    ),
    neck=dict(in_channels=[24, 48, 48, 80], out_channels=24),
    bbox_head=dict(
        in_channels=24,
        feat_channels=64,
        stacked_convs=2,
        norm_cfg=dict(type='BN', requires_grad=True),
        shared_tower=False,
        depthwise=False,
        with_kps=True,
        box_scale=True,
    ),
)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
work_dir = 'work_dirs/scrfd_2.5g_bnkps'
