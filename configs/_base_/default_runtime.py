# mmdet's default runtime, with scrfd-search's modules and a seed.
# Written by scrfd-search (scrfd_search/config_writer.py); do not edit.

_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(
    imports=[
        'scrfd_search.models',
        'scrfd_search.data.datasets',
        'scrfd_search.data.transforms',
        'scrfd_search.evaluation.metric',
    ],
    allow_failed_imports=False,
)
default_hooks = dict(checkpoint=dict(interval=80, max_keep_ckpts=2))
visualizer = dict(_delete_=True, type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
randomness = dict(seed=0, deterministic=False)
