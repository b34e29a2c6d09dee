"""Models: the timm classifier (ERM and DA/DG algorithms), timm backbones for mmdet/mmseg."""

from . import (
    algorithms,  # noqa: F401  (registers DANN, CORAL, MixStyle, ... in MODELS)
    backbones,  # noqa: F401  (registers TimmBackbone for mmdet/mmseg configs)
    digits_cnn,  # noqa: F401  (registers 'digits_cnn' with timm)
)
from .classifier import DomainClassifier
from .timm_factory import create_timm_model

__all__ = ["DomainClassifier", "create_timm_model"]
