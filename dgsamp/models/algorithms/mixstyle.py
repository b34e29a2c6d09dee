"""MixStyle (Zhou et al. 2021): mix per-channel feature statistics between items in training.

`MixStyleLayer` re-normalises a (B, C, H, W) feature map with a Beta-weighted blend of its own
instance mean/std and another item's; it is the identity in eval mode. The `MixStyle` algorithm
inserts such layers after chosen layers of a timm CNN featurizer through forward hooks, so any
CNN works without editing its code:

- ``layers=None`` takes timm's ``feature_info``: after every stage but the stem and the last
  (for a ResNet: layer1, layer2, layer3, as in the paper's best setting); for dgsamp's
  digits_cnn, after its first three conv blocks;
- ``layers=['features.2', ...]`` names modules explicitly (dotted names, e.g. for digits_cnn).

Models without (B, C, H, W) feature maps (ViTs, MLP-Mixers) are refused with an error that
says so when the model is built, and any hooked layer that turns out not to produce 4-D maps
raises at the first forward. A hooked layer whose maps have fewer than ``MIN_POSITIONS``
positions warns once: there the instance mean and std carry most of the content, and mixing
them replaces it (StyledGlyphs at 32 px, ResNet-10-T: layer3's maps are 2×2, and MixStyle after
layer1-3 reached 37% training-domain accuracy against ERM's 84%, after layer1-2 78%; cartoon
held out, seed 0, docs/results/dg_styled_glyphs_shipped.md).
"""

from __future__ import annotations

import warnings

import torch
from mmengine.registry import MODELS
from torch import nn

from .base import DGAlgorithm

#: feature maps with fewer positions (H·W) than this make MixStyle warn (module docstring)
MIN_POSITIONS = 16


class MixStyleLayer(nn.Module):
    """Args:
        p: probability of mixing a batch.
        alpha: Beta(alpha, alpha) for the mixing weight.
        mix: 'random' (shuffle the batch) or 'crossdomain' (reverse the batch, then shuffle
            each half; with domain-ordered batches this pairs different domains).
    """

    def __init__(self, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6,
                 mix: str = "random", name: str = ""):
        super().__init__()
        if mix not in ("random", "crossdomain"):
            raise ValueError(f"mix={mix!r}: choose 'random' or 'crossdomain'.")
        self.p, self.alpha, self.eps, self.mix, self.name = p, alpha, eps, mix, name
        self._size_checked = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise RuntimeError(f"MixStyle after layer {self.name!r} got a {x.ndim}-D tensor "
                               f"{tuple(x.shape)}; it mixes channel statistics of (B, C, H, W) "
                               f"feature maps. Fix: hook convolutional layers (model.layers).")
        if not self._size_checked:
            self._size_checked = True
            h, w = x.shape[-2:]
            if h * w < MIN_POSITIONS:
                warnings.warn(f"MixStyle after layer {self.name!r} mixes the statistics of "
                              f"{h}x{w} feature maps: over {h * w} positions the instance mean "
                              f"and std are most of the content, and mixing them replaces it. "
                              f"Fix: hook earlier layers (model.layers, e.g. the first two "
                              f"stages) or use larger inputs.", stacklevel=2)
        if not self.training or torch.rand(()) > self.p or len(x) < 2:
            return x
        b = x.size(0)
        mu = x.mean(dim=(2, 3), keepdim=True)
        sig = (x.var(dim=(2, 3), keepdim=True) + self.eps).sqrt()
        mu, sig = mu.detach(), sig.detach()
        x_normed = (x - mu) / sig
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((b, 1, 1, 1)).to(x)
        if self.mix == "random":
            perm = torch.randperm(b)
        else:
            perm = torch.arange(b - 1, -1, -1)
            half = b // 2
            pb, pa = perm[:half], perm[half:]
            perm = torch.cat([pb[torch.randperm(len(pb))], pa[torch.randperm(len(pa))]])
        mu_mix = mu * lam + mu[perm] * (1 - lam)
        sig_mix = sig * lam + sig[perm] * (1 - lam)
        return x_normed * sig_mix + mu_mix


DIGITS_CNN_LAYERS = ["features.2", "features.5", "features.8"]  # after blocks 1-3


def default_layers(featurizer: nn.Module) -> list[str]:
    """After every stage but the first and the last, from timm's feature_info."""
    if type(featurizer).__name__ == "DigitsCNN":
        return list(DIGITS_CNN_LAYERS)
    info = getattr(featurizer, "feature_info", None)
    names = []
    if info is not None:
        names = [f["module"] for f in (info.info if hasattr(info, "info") else info)]
    if len(names) < 3:
        raise ValueError(f"MixStyle cannot choose layers of {type(featurizer).__name__}: it has "
                         f"no timm feature_info with 3+ stages. Fix: name them, e.g. "
                         f"model.layers=['layer1', 'layer2'] (dotted module names).")
    return names[1:-1]


@MODELS.register_module()
class MixStyle(DGAlgorithm):
    """ERM with MixStyle layers after some featurizer layers (module docstring).

    Args:
        layers: dotted module names inside the featurizer; None picks them from feature_info.
        p, alpha, mix: see `MixStyleLayer`.
    """

    def __init__(self, model_name: str, num_classes: int, layers: list[str] | None = None,
                 p: float = 0.5, alpha: float = 0.1, mix: str = "random", in_chans: int = 3,
                 pretrained: str | None = None, model_kwargs: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(model_name, num_classes, in_chans=in_chans, pretrained=pretrained,
                         model_kwargs=model_kwargs, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        feat = self.featurizer
        if hasattr(feat, "patch_embed") or (hasattr(feat, "blocks")
                                            and not hasattr(feat, "stages")):
            raise ValueError(f"MixStyle needs a CNN featurizer; {model_name!r} is a token model "
                             f"(ViT-like) without (B, C, H, W) feature maps. Fix: use a timm "
                             f"CNN (resnet50, convnext_tiny, digits_cnn) or another algorithm.")
        layers = list(layers) if layers is not None else default_layers(feat)
        modules = dict(feat.named_modules())
        self.mixstyle_layers = nn.ModuleList()
        for name in layers:
            if name not in modules or name == "":
                close = [n for n in modules if n and n.split(".")[0] == name.split(".")[0]][:8]
                raise ValueError(f"MixStyle layer {name!r} is not a module of {model_name!r}. "
                                 f"Fix: pick dotted names from featurizer.named_modules(), "
                                 f"e.g. {close or [n for n in modules if n][:8]}.")
            layer = MixStyleLayer(p, alpha, mix=mix, name=name)
            self.mixstyle_layers.append(layer)
            modules[name].register_forward_hook(
                lambda _m, _inp, out, layer=layer: layer(out))
        self.layers = layers
