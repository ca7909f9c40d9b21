"""WIDER FACE data for mmdet 3.x: datasets, SCRFD's transforms, pipelines, demo data, statistics.

Importing this package is cheap (no mmdet). `scrfd_search.data.datasets` and
`scrfd_search.data.transforms` register their classes in mmdet's registries when imported; a
config names them in `custom_imports=dict(imports=list(CUSTOM_IMPORTS))`, or code calls
`register_data_modules()`.
"""

from __future__ import annotations

import importlib

from scrfd_search.data.pipelines import (
    CUSTOM_IMPORTS,
    LARGE_CROPS,
    SMALL_CROPS,
    dataset_config,
    test_pipeline,
    train_pipeline,
)

__all__ = [
    "CUSTOM_IMPORTS",
    "LARGE_CROPS",
    "SMALL_CROPS",
    "dataset_config",
    "register_data_modules",
    "test_pipeline",
    "train_pipeline",
]


def register_data_modules() -> None:
    """Import the modules that register WiderFaceDataset, RetinaFaceDataset and the face transforms."""
    for name in CUSTOM_IMPORTS:
        importlib.import_module(name)
