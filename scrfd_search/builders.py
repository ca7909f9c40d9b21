"""Build what mmdet builds from this project's configs: registered modules and the detector of an ArchSpec."""

from __future__ import annotations

import logging
from typing import Any

from scrfd_search.config_builder import model_config
from scrfd_search.space.arch import ArchSpec


def register_modules() -> None:
    """Register mmdet's and this project's modules and make 'mmdet' the default registry scope."""
    from mmdet.utils import register_all_modules

    import scrfd_search.models  # noqa: F401  (registers SCRFDResNet, SCRFDMobileNet, SCRFDHead)

    register_all_modules(init_default_scope=True)


def import_config_modules(cfg: dict) -> None:
    """Register mmdet's modules and a config's custom_imports (Config.fromfile does the latter itself)."""
    from mmengine.utils import import_modules_from_strings

    register_modules()
    if cfg.get("custom_imports"):
        import_modules_from_strings(**cfg["custom_imports"])


def build_model(arch: ArchSpec, init_weights: bool = True) -> Any:
    """The mmdet detector (torch.nn.Module) for arch, initialised unless init_weights is False.

    Skip the initialisation where only the structure matters (FLOPs, loading weights): it is slow.
    """
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    from mmengine.logging import MMLogger

    register_modules()
    model = MODELS.build(ConfigDict(model_config(arch)))
    if not init_weights:
        return model
    # init_weights logs one INFO record per parameter; keep only warnings while it runs.
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model
