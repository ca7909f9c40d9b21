# the reference's 640-epoch SGD schedule (warm-up, lr steps at 440 and 544).
# Written by scrfd-search (scrfd_search/config_writer.py); do not edit.

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, weight_decay=0.0005, momentum=0.9),
    clip_grad=dict(max_norm=35.0, norm_type=2),
)
auto_scale_lr = dict(enable=True, base_batch_size=32)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1500),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=640, milestones=[440, 544], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=640, val_interval=80)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
