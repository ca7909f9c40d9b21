# scrfd_500m_bnkps: the released SCRFD architecture, trained with the reference's full 640-epoch schedule.
# Written by tools/make_published_configs.py (from scrfd_search/space/published.py); do not edit.
# Its ArchSpec is scrfd_500m_bnkps.json beside this file. Train with: python tools/train.py configs/scrfd/scrfd_500m_bnkps.py
_base_ = [
    '../_base_/models/scrfd.py',
    '../_base_/datasets/retinaface_scrfd.py',
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
        norm_cfg=dict(type='BN', requires_grad=True),
        shared_tower=False,
        depthwise=True,
        with_kps=True,
        box_scale=False,
    ),
)
train_dataloader = dict(batch_size=16)
auto_scale_lr = dict(base_batch_size=64)
work_dir = 'work_dirs/scrfd_500m_bnkps'
