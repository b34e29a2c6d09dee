"""DomainBed's MNIST CNN as a timm model, so `model_name='digits_cnn'` works wherever timm does.

Four 3x3 convolutions (64-128-128-128, the second strided) with ReLU and GroupNorm(8), global
average pooling, then timm's usual head. Small enough to train the digits benchmarks on a CPU.
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn


class DigitsCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 128, **_):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = width
        chans = [in_chans, 64, width, width, width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=2 if i == 1 else 1, padding=1),
                       nn.ReLU(inplace=True), nn.GroupNorm(8, chans[i + 1])]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def digits_cnn(pretrained: bool = False, **kwargs) -> DigitsCNN:
    if pretrained:
        raise ValueError("digits_cnn has no pretrained weights; set pretrained=False.")
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    return DigitsCNN(**kwargs)
