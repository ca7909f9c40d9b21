# WIDER FACE with landmarks (RetinaFace labelv2.txt): pipeline, loaders, metric.
# Written by scrfd-search (scrfd_search/config_writer.py); do not edit.

data_root = 'data/retinaface/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadFaceAnnotations', with_bbox=True, with_keypoints=True),
    dict(
        type='RandomSquareCrop',
        crop_choice=(0.3, 0.45, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0),
        lazy=True,
        bbox_clip_border=True,
    ),
    dict(type='FaceResize', scale=(640, 640), keep_ratio=False, clip_object_border=True),
    dict(type='FaceRandomFlip', prob=0.5),
    dict(
        type='DrawPhotoMetricDistortion',
        brightness_delta=32,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18,
    ),
    dict(
        type='PackFaceInputs',
        meta_keys=(
            'img_id',
            'img_path',
            'ori_shape',
            'img_shape',
            'scale_factor',
            'flip',
            'flip_direction',
            'photometric',
        ),
    ),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='FaceResize', scale=(640, 640), keep_ratio=True),
    dict(type='LoadFaceAnnotations', with_bbox=True, with_keypoints=True),
    dict(
        type='PackFaceInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
train_dataloader = dict(
    batch_size=8,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='RetinaFaceDataset',
        ann_file='train/labelv2.txt',
        data_prefix=dict(img='train/images/'),
        data_root=data_root,
        test_mode=False,
        min_size=None,
        pipeline=train_pipeline,
    ),
    num_workers=2,
    persistent_workers=True,
)
val_dataloader = dict(
    batch_size=1,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='RetinaFaceDataset',
        ann_file='val/labelv2.txt',
        data_prefix=dict(img='val/images/'),
        data_root=data_root,
        test_mode=True,
        min_size=None,
        pipeline=test_pipeline,
    ),
    num_workers=2,
    persistent_workers=True,
)
test_dataloader = val_dataloader
val_evaluator = dict(type='WiderFaceMetric', gt_dir=data_root + 'val/gt/')
test_evaluator = val_evaluator
