"""The SCRFD detector's mmdet modules; importing this package registers them in mmdet's MODELS."""

from scrfd_search.models.backbones import SCRFDMobileNet, SCRFDResNet
from scrfd_search.models.head import SCRFDHead

__all__ = ["SCRFDHead", "SCRFDMobileNet", "SCRFDResNet"]
