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
4. strong augmentation of the mixed images (colour jitter, Gaussian blur; `strong_augment`,
   torchvision's ``transforms.v2.functional``);
5. weighted cross-entropy of the student on the mixed images vs the mixed labels.

The teacher is updated by `EMATeacherHook`; ``burn_in_iters`` (`MeanTeacherMixin`) skips
steps 2-5 at the start.
Target labels are never used: the target branch has no ``gt_sem_seg`` (its data set is built
with ``labeled=False``). Rare-class sampling is not implemented.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from mmseg.models.data_preprocessor import SegDataPreProcessor
from torchvision.transforms.v2 import functional as TF

from .mean_teacher import MeanTeacherMixin


@MODELS.register_module()
class MultiBranchSegDataPreProcessor(SegDataPreProcessor):
    """SegDataPreProcessor applied to each branch of ``dict(source=..., target=...)`` batches
    (plain batches, e.g. validation, are processed as usual)."""

    def forward(self, data: dict, training: bool = False) -> dict:
        if "inputs" in data:
            return super().forward(data, training)
        return {k: super(MultiBranchSegDataPreProcessor, self).forward(v, training)
                for k, v in data.items()}


def strong_augment(img: torch.Tensor, jitter: float, blur_prob: float) -> torch.Tensor:
    """DAFormer's strong view of a batch in [0, 255], (B, 3, H, W), with torchvision v2 ops.

    Per image, brightness, contrast and saturation factors drawn uniformly from
    [1 - jitter, 1 + jitter] (torch's RNG, in that order); then, with probability
    ``blur_prob``, one Gaussian blur of the whole batch, sigma uniform in [0.15, 1.15] and a
    kernel radius of round(2 sigma).
    """
    if jitter > 0:
        b = img.shape[0]
        factors = [(1 + (torch.rand(b) * 2 - 1) * jitter).tolist() for _ in range(3)]
        x = img / 255.0  # torchvision's float images are in [0, 1]
        x = torch.stack([
            TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x[i], br), ct), sat)
            for i, (br, ct, sat) in enumerate(zip(*factors, strict=True))])
        img = x * 255.0
    if blur_prob > 0 and float(torch.rand(1)) < blur_prob:
        sigma = float(torch.empty(1).uniform_(0.15, 1.15))
        radius = max(int(round(2 * sigma)), 1)
        img = TF.gaussian_blur(img, [2 * radius + 1] * 2, [sigma, sigma])
    return img


@MODELS.register_module()
class ClassMixMeanTeacher(MeanTeacherMixin, BaseModel):
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
        self.set_burn_in(burn_in_iters)
        self.color_jitter = float(color_jitter)
        self.blur_prob = float(blur_prob)
        self.predict_on = predict_on
        self.ignore_index = int(ignore_index)

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

    def _denorm(self, x: torch.Tensor) -> torch.Tensor:
        dp = self.data_preprocessor
        return x * dp.std + dp.mean if dp._enable_normalize else x

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        dp = self.data_preprocessor
        return (x - dp.mean) / dp.std if dp._enable_normalize else x

    def loss(self, source: dict, target: dict) -> dict:
        src_x, src_samples = source["inputs"], source["data_samples"]
        losses = {f"src.{k}": v for k, v in self.student.loss(src_x, src_samples).items()}
        if self.in_burn_in():
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
            mixed = self._norm(strong_augment(mixed, self.color_jitter, self.blur_prob))
            mixed_lbl = torch.where(mask, src_lbl, pseudo)
            mixed_w = torch.where(mask, torch.ones_like(tgt_w), tgt_w)
        logits = self.student.encode_decode(mixed, metas)
        ce = F.cross_entropy(logits, mixed_lbl, ignore_index=self.ignore_index,
                             reduction="none")
        losses["mix.loss_ce"] = self.unsup_weight * (ce * mixed_w).mean()
        losses["mix.pseudo_quality"] = quality.mean()
        return losses
