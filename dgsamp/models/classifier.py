"""A timm featurizer plus a linear classifier as an mmengine model: ERM, and the base of every
DA/DG algorithm (DomainBed's Algorithm: `loss` is its update objective, `predict` its predict).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn

from .timm_factory import create_timm_model


@MODELS.register_module()
class DomainClassifier(BaseModel):
    """featurizer (any timm model, head removed) -> linear classifier.

    Batches are ``dict(inputs=(B, C, H, W), data_samples=dict(label=(B,), domain=(B,)))``.
    Subclasses (DA/DG algorithms) override `loss`; everything else is shared.

    Args:
        model_name: timm model name, CNN or ViT.
        num_classes: number of classes.
        in_chans: input channels (1 for RotatedDigits, 2 for ColoredDigits, 3 for photos).
        pretrained: local weights file for the featurizer, or None.
        model_kwargs: extra keyword arguments for `timm.create_model` (img_size, drop_rate, ...).
    """

    def __init__(self, model_name: str, num_classes: int, in_chans: int = 3,
                 pretrained: str | None = None, model_kwargs: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.featurizer = create_timm_model(model_name, pretrained=pretrained, num_classes=0,
                                            in_chans=in_chans, **(model_kwargs or {}))
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.featurizer.num_features, num_classes)

    def get_classifier(self) -> nn.Module:
        """The prediction layer (timm's convention; sparse backward keeps it dense)."""
        return self.classifier

    # -- the pieces algorithms combine -----------------------------------------------------------
    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.featurizer(inputs)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.extract_feat(inputs))

    # -- mmengine's model interface ----------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, data_samples: dict | None = None,
                mode: str = "tensor"):
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self.logits(inputs)
        raise ValueError(f"Invalid mode {mode!r}: use 'loss', 'predict' or 'tensor'.")

    def loss(self, inputs: torch.Tensor, data_samples: dict) -> dict[str, torch.Tensor]:
        """ERM: cross-entropy on all training samples."""
        # label -1 marks unlabeled target items (DA): ERM, the source-only baseline, skips them
        return dict(loss_cls=F.cross_entropy(self.logits(inputs), data_samples["label"],
                                             ignore_index=-1))

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, data_samples: dict | None = None) -> list[dict]:
        scores = self.logits(inputs).softmax(dim=1)
        pred = scores.argmax(dim=1)
        out = []
        for i in range(len(pred)):
            item = dict(pred_label=int(pred[i]), pred_score=scores[i].cpu())
            if data_samples is not None:
                item.update(gt_label=int(data_samples["label"][i]),
                            domain=int(data_samples["domain"][i]))
            out.append(item)
        return out


MODELS.register_module("ERM", module=DomainClassifier)
