"""timm backbones for mmdet/mmseg configs (``type='TimmBackbone'``)."""

from .timm_backbone import TimmBackbone

__all__ = ["TimmBackbone"]
