"""Any timm CNN or transformer as an mmdet/mmseg backbone: ``type='TimmBackbone'``.

mmdet's and mmseg's necks and heads want a tuple of NCHW feature maps. timm's ``features_only``
gives exactly that for CNNs, NHWC maps for channels-last models (Swin, some MaxViT/ConvNeXt
variants) and, through timm's ``forward_intermediates`` getter, NCHW token maps for plain ViTs
(DeiT, ViT, EVA ...). This module wraps all three behind one interface::

    backbone=dict(type='TimmBackbone', model_name='resnet18', out_indices=(1, 2, 3, 4),
                  frozen_stages=1, pretrained='/path/resnet18.pth')

Design choices (why):
- ``out_indices`` are timm's feature levels (``timm.create_model(name, features_only=True)
  .feature_info``); for resnet18 level 0 is the stride-2 stem and levels 1-4 are layer1-4, for
  ConvNeXt/Swin levels 0-3 are the four stages. ``out_channels``/``strides`` report what a
  neck needs (e.g. FPN ``in_channels``).
- ``frozen_stages=N`` freezes the first N of those feature levels *and everything computed
  before them* (stem, patch embedding, position/cls tokens): ``requires_grad=False`` and eval
  mode (BN/dropout) that survives ``model.train()``. 0 or -1 freezes nothing.
- Weights come only from a local file (`dgsamp.models.timm_factory.create_timm_model`); weights
  are loaded at construction, so `init_weights` deliberately does not recurse into timm's own
  initialisers (some timm models define ``init_weights`` that would re-initialise them).
- A model whose timm class does not support ``features_only`` raises a ValueError that names
  the model and the fix (choose another model); timm >= 1.0 supports it for ViTs via the
  getter, so no dgsamp-side token reshaping is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn

from ..timm_factory import create_timm_model


def _module_order(body: nn.Module) -> list[tuple[str, nn.Module]]:
    return list(body.named_modules())


@MODELS.register_module()
class TimmBackbone(BaseModule):
    """timm model as a multi-scale backbone returning a tuple of NCHW tensors.

    Args:
        model_name: any ``timm.list_models()`` name.
        pretrained: local weights file or None (never downloads).
        out_indices: timm feature levels to return (None: timm's default, all levels).
        frozen_stages: number of leading feature levels to freeze (see module docstring).
        norm_eval: keep every normalisation layer in eval mode during training (as mmdet's
            ResNet ``norm_eval``), useful with tiny batches.
        in_channels: input channels.
        init_cfg: mmengine init config; None (the default) keeps timm's/the file's weights.
        **kwargs: passed to ``timm.create_model`` (``img_size`` for ViT/Swin, ``drop_path_rate``,
            ``output_stride`` ...).
    """

    def __init__(self, model_name: str, pretrained: str | None = None,
                 out_indices: Sequence[int] | None = None, frozen_stages: int = -1,
                 norm_eval: bool = False, in_channels: int = 3, init_cfg: dict | None = None,
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg)
        feat_kwargs = dict(features_only=True, in_chans=in_channels, **kwargs)
        if out_indices is not None:
            feat_kwargs["out_indices"] = tuple(out_indices)
        try:
            self.body = create_timm_model(model_name, pretrained=pretrained, **feat_kwargs)
        except RuntimeError as err:
            if "features_only" in str(err) or "feature" in str(err).lower():
                raise ValueError(
                    f"timm model {model_name!r} does not support features_only=True ({err}). "
                    f"Fix: pick a timm model with feature extraction (CNNs, Swin, ConvNeXt, "
                    f"ViT/DeiT/EVA in timm>=1.0).") from err
            raise
        info = self.body.feature_info
        self.out_indices = tuple(info.out_indices)
        self.out_channels = list(info.channels())
        self.strides = list(info.reduction())
        self.channels_last = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")
        self.num_levels = len(info.info)
        if int(frozen_stages) != frozen_stages or frozen_stages < -1:
            raise ValueError(f"frozen_stages must be an int >= -1, got {frozen_stages!r}")
        if frozen_stages > self.num_levels:
            raise ValueError(f"frozen_stages={frozen_stages} but {model_name!r} has only "
                             f"{self.num_levels} feature levels.")
        self.frozen_stages = max(int(frozen_stages), 0)
        self.norm_eval = bool(norm_eval)
        self._frozen_modules: list[nn.Module] = []
        self._freeze_stages()

    # ------------------------------------------------------------------ freezing
    def _body_module_name(self, timm_name: str) -> str:
        """Name of timm's feature module inside the features_only wrapper."""
        names = dict(self.body.named_modules())
        for cand in (timm_name, timm_name.replace(".", "_"), f"model.{timm_name}"):
            if cand in names:
                return cand
        raise RuntimeError(f"TimmBackbone cannot find feature module {timm_name!r} in "
                           f"{type(self.body).__name__}; frozen_stages is not supported here.")

    def _freeze_stages(self) -> None:
        if self.frozen_stages <= 0:
            return
        last = self._body_module_name(self.body.feature_info.info[self.frozen_stages - 1]["module"])
        modules = _module_order(self.body)
        pos = [n for n, _ in modules].index(last)
        end = pos
        while end + 1 < len(modules) and modules[end + 1][0].startswith(last + "."):
            end += 1
        ancestors = {n for n, _ in modules if n == "" or last.startswith(n + ".")}
        frozen_params: list[nn.Parameter] = []
        for name, module in modules[: end + 1]:
            if name in ancestors:  # e.g. ViT's cls/pos tokens live on the wrapped model itself
                frozen_params += list(module.parameters(recurse=False))
                continue
            self._frozen_modules.append(module)
            frozen_params += list(module.parameters(recurse=False))
        for p in frozen_params:
            p.requires_grad_(False)
        for m in self._frozen_modules:
            m.eval()

    def train(self, mode: bool = True) -> TimmBackbone:
        super().train(mode)
        for m in self._frozen_modules:
            m.eval()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """Weights come from timm's initialisers or the local file at construction."""
        if self.init_cfg is not None:
            super().init_weights()
        self._is_init = True

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.body(x)
        if isinstance(feats, dict):
            feats = list(feats.values())
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        return tuple(feats)
