"""DAFormer-style self-training for any mmseg segmentor: EMA teacher + ClassMix.

Each training batch holds labeled source images and unlabeled target images
(`PairedSourceTargetDataset`, preprocessed branch by branch by
`MultiBranchSegDataPreProcessor`). Per iteration:

1. supervised loss of the student on the source images (the segmentor's own losses);
2. the EMA teacher labels the target images (argmax); the pseudo-label weight of an image is
   the fraction of its pixels with confidence >= ``pseudo_threshold`` (DAFormer's quality
   estimate: confident teachers count more);
3. ClassMix: half of the classes present in each source label map are pasted, pixels and
   labels, onto a target image (pasted pixels keep weight 1);
4. strong augmentation of the mixed images (colour jitter, Gaussian blur);
5. weighted cross-entropy of the student on the mixed images vs the mixed labels.

The teacher is updated by `EMATeacherHook`; ``burn_in_iters`` skips steps 2-5 at the start.
Target labels are never used: the target branch has no ``gt_sem_seg`` (its data set is built
with ``labeled=False``). Rare-class sampling is not implemented.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from mmseg.models.data_preprocessor import SegDataPreProcessor


@MODELS.register_module()
class MultiBranchSegDataPreProcessor(SegDataPreProcessor):
    """SegDataPreProcessor applied to each branch of ``dict(source=..., target=...)`` batches
    (plain batches, e.g. validation, are processed as usual)."""

    def forward(self, data: dict, training: bool = False) -> dict:
        if "inputs" in data:
            return super().forward(data, training)
        return {k: super(MultiBranchSegDataPreProcessor, self).forward(v, training)
                for k, v in data.items()}


def _color_jitter(img: torch.Tensor, strength: float, gen: torch.Generator | None) -> torch.Tensor:
    """img in [0, 255], (B, 3, H, W): random brightness, contrast, saturation per image."""
    b = img.shape[0]

    def rnd():
        return 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1).to(img) * strength

    img = img * rnd()
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    img = (img - mean) * rnd() + mean
    gray = img.mean(dim=1, keepdim=True)
    img = (img - gray) * rnd() + gray
    return img.clamp(0, 255)


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(int(round(2 * sigma)), 1)
    x = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(img.shape[1], 1, 1, 1)
    img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="reflect"), k, groups=img.shape[1])
    k = k.transpose(2, 3)
    return F.conv2d(F.pad(img, (0, 0, radius, radius), mode="reflect"), k, groups=img.shape[1])


@MODELS.register_module()
class ClassMixMeanTeacher(BaseModel):
    """Student/teacher pair of an mmseg segmentor trained by ClassMix self-training.

    Args:
        segmentor: config of the segmentor (e.g. ``EncoderDecoder``); its own
            ``data_preprocessor`` is replaced by this model's.
        data_preprocessor: ``MultiBranchSegDataPreProcessor`` config.
        pseudo_threshold: confidence above which a pixel counts as confident (DAFormer 0.968).
        unsup_weight: weight of the mixed-image loss.
        burn_in_iters: iterations of source-only training before self-training starts.
        color_jitter: strength of the strong colour augmentation (0 disables).
        blur_prob: probability of Gaussian blur (sigma in [0.15, 1.15]) per batch.
        predict_on: 'teacher' or 'student' for validation/testing.
        ignore_index: label ignored by the loss.
    """

    def __init__(self, segmentor: dict, data_preprocessor: dict | None = None,
                 pseudo_threshold: float = 0.968, unsup_weight: float = 1.0,
                 burn_in_iters: int = 0, color_jitter: float = 0.3, blur_prob: float = 0.5,
                 predict_on: str = "teacher", ignore_index: int = 255,
                 init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if predict_on not in ("teacher", "student"):
            raise ValueError(f"predict_on must be 'teacher' or 'student', got {predict_on!r}")
        segmentor = copy.deepcopy(dict(segmentor))
        segmentor["data_preprocessor"] = None
        from mmseg.registry import MODELS as SEG_MODELS

        self.student = SEG_MODELS.build(segmentor)
        self.teacher = SEG_MODELS.build(segmentor)
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.pseudo_threshold = float(pseudo_threshold)
        self.unsup_weight = float(unsup_weight)
        self.burn_in_iters = int(burn_in_iters)
        self.color_jitter = float(color_jitter)
        self.blur_prob = float(blur_prob)
        self.predict_on = predict_on
        self.ignore_index = int(ignore_index)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, inputs=None, data_samples=None, mode: str = "tensor", **branches):
        if mode == "loss":
            return self.loss(**branches)
        model = self.teacher if self.predict_on == "teacher" else self.student
        if mode == "predict":
            return model.predict(inputs, data_samples)
        if mode == "tensor":
            return model._forward(inputs, data_samples)
        raise ValueError(f"Invalid mode {mode!r}")

    def _in_burn_in(self) -> bool:
        it = MessageHub.get_current_instance().get_info("iter", 0) or 0
        return it < self.burn_in_iters

    def _denorm(self, x: torch.Tensor) -> torch.Tensor:
        dp = self.data_preprocessor
        return x * dp.std + dp.mean if dp._enable_normalize else x

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        dp = self.data_preprocessor
        return (x - dp.mean) / dp.std if dp._enable_normalize else x

    def loss(self, source: dict, target: dict) -> dict:
        src_x, src_samples = source["inputs"], source["data_samples"]
        losses = {f"src.{k}": v for k, v in self.student.loss(src_x, src_samples).items()}
        if self._in_burn_in():
            return losses
        tgt_x, tgt_samples = target["inputs"], target["data_samples"]
        metas = [s.metainfo for s in tgt_samples]
        with torch.no_grad():
            self.teacher.eval()
            prob = torch.softmax(self.teacher.encode_decode(tgt_x, metas), dim=1)
            conf, pseudo = prob.max(dim=1)
            quality = (conf >= self.pseudo_threshold).float().mean(dim=(1, 2))  # (B,)
            tgt_w = quality[:, None, None].expand_as(conf)
            src_lbl = torch.stack([s.gt_sem_seg.data[0] for s in src_samples]).long()
            mask = torch.zeros_like(src_lbl, dtype=torch.bool)
            for i in range(src_lbl.shape[0]):
                classes = src_lbl[i].unique()
                classes = classes[classes != self.ignore_index]
                chosen = classes[torch.randperm(len(classes))[: (len(classes) + 1) // 2]]
                mask[i] = torch.isin(src_lbl[i], chosen.to(src_lbl))
            m = mask[:, None].to(src_x)
            mixed = m * self._denorm(src_x) + (1 - m) * self._denorm(tgt_x)
            if self.color_jitter > 0:
                mixed = _color_jitter(mixed, self.color_jitter, None)
            if self.blur_prob > 0 and float(torch.rand(1)) < self.blur_prob:
                mixed = _blur(mixed, float(torch.empty(1).uniform_(0.15, 1.15)))
            mixed = self._norm(mixed)
            mixed_lbl = torch.where(mask, src_lbl, pseudo)
            mixed_w = torch.where(mask, torch.ones_like(tgt_w), tgt_w)
        logits = self.student.encode_decode(mixed, metas)
        ce = F.cross_entropy(logits, mixed_lbl, ignore_index=self.ignore_index,
                             reduction="none")
        losses["mix.loss_ce"] = self.unsup_weight * (ce * mixed_w).mean()
        losses["mix.pseudo_quality"] = quality.mean()
        return losses
