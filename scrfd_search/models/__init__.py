"""The SCRFD detector's mmdet modules; importing this package registers them in mmdet's MODELS."""

from scrfd_search.models.backbones import SCRFDMobileNet, SCRFDResNet
from scrfd_search.models.head import SCRFDHead
from scrfd_search.models.preprocessor import FaceDataPreprocessor

__all__ = ["FaceDataPreprocessor", "SCRFDHead", "SCRFDMobileNet", "SCRFDResNet"]
