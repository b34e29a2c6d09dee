"""Segmentation data sets: shapes benchmark, source/target pairs, label-map validation (mmseg).

- `ShapesSegDataset`: one style of `dgsamp.datasets.shapes` as image/label-map pairs read by
  mmseg's ``BaseSegDataset`` (classes: background, circle, square, triangle; 255 = ignore).
  ``labeled=False`` points mmseg at the images only, so label maps are never opened.
- `PairedSourceTargetDataset`: each item is ``dict(source=<labeled sample>,
  target=<unlabeled sample>)`` for self-training (`ClassMixMeanTeacher`); the target index is
  drawn from torch's RNG (seeded by mmengine's ``randomness``), so runs are reproducible.
- `ValidateSegLabels` (transform, after ``LoadAnnotations``): a label map with ids outside
  ``[0, num_classes)`` and not ``ignore_index`` is an error naming the file and the ids, or,
  with ``unknown='ignore'``, those pixels become ``ignore_index`` (255) — the documented
  ignore index, skipped by the loss and by IoUMetric.
"""

from __future__ import annotations

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.registry import DATASETS, TRANSFORMS
from mmseg.datasets import BaseSegDataset

from ..datasets.shapes import IGNORE_INDEX, SEG_CLASSES, SEG_PALETTE, generate_shapes


@DATASETS.register_module()
class ShapesSegDataset(BaseSegDataset):
    """One style of the shapes benchmark for semantic segmentation.

    Args:
        domain: 'clean' (source), 'fog', 'dark' or 'texture'.
        split: 'train' or 'val'.
        labeled: False: images only (unlabeled target set).
        shapes: generator parameters (`dgsamp.datasets.shapes.shapes_params`).
        cache_dir: cache root (default ``~/.cache/dgsamp/data/shapes``).
        **kwargs: as mmseg's ``BaseSegDataset`` (pipeline, test_mode, ...).
    """

    METAINFO = dict(classes=SEG_CLASSES, palette=SEG_PALETTE)

    def __init__(self, domain: str = "clean", split: str = "train", labeled: bool = True,
                 shapes: dict | None = None, cache_dir: str | None = None, **kwargs) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"ShapesSegDataset split must be 'train' or 'val', got {split!r}")
        self.domain, self.split, self.labeled = domain, split, bool(labeled)
        root = generate_shapes(cache_dir, **(shapes or {}))
        if not (root / domain).is_dir():
            raise ValueError(f"Shapes style {domain!r} was not generated; styles: "
                             f"{sorted(p.name for p in root.iterdir() if p.is_dir())}")
        prefix = dict(img_path=f"{split}/images")
        if self.labeled:
            prefix["seg_map_path"] = f"{split}/labels"
        kwargs.setdefault("data_root", str(root / domain))
        kwargs.setdefault("data_prefix", prefix)
        kwargs.setdefault("ignore_index", IGNORE_INDEX)
        super().__init__(img_suffix=".png", seg_map_suffix=".png", reduce_zero_label=False,
                         **kwargs)


@DATASETS.register_module()
class PairedSourceTargetDataset(torch.utils.data.Dataset):
    """Pairs of a labeled source sample and a random unlabeled target sample.

    Args:
        source: config (or instance) of the labeled source dataset.
        target: config (or instance) of the unlabeled target dataset.
    """

    def __init__(self, source, target) -> None:
        self.source = DATASETS.build(source) if isinstance(source, dict) else source
        self.target = DATASETS.build(target) if isinstance(target, dict) else target
        if len(self.target) == 0 or len(self.source) == 0:
            raise ValueError("PairedSourceTargetDataset: source and target must be non-empty.")

    @property
    def metainfo(self) -> dict:
        return self.source.metainfo

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, idx: int) -> dict:
        j = int(torch.randint(len(self.target), (1,)).item())
        return dict(source=self.source[idx], target=self.target[j])


@TRANSFORMS.register_module()
class ValidateSegLabels(BaseTransform):
    """Refuse (or ignore) label ids outside ``[0, num_classes)`` other than ``ignore_index``.

    Args:
        num_classes: number of classes of the data set (background included if it is one).
        ignore_index: the id the loss and metrics skip (255).
        unknown: 'error' (default) or 'ignore' (map unknown ids to ``ignore_index``).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX,
                 unknown: str = "error") -> None:
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        self.num_classes, self.ignore_index, self.unknown = num_classes, ignore_index, unknown

    def transform(self, results: dict) -> dict:
        seg = results.get("gt_seg_map")
        if seg is None:
            raise KeyError("ValidateSegLabels must come after LoadAnnotations (no gt_seg_map).")
        bad = (seg >= self.num_classes) & (seg != self.ignore_index)
        if bad.any():
            if self.unknown == "error":
                raise ValueError(
                    f"Label map {results.get('seg_map_path')!r} contains ids "
                    f"{sorted(np.unique(seg[bad]).tolist())} outside [0, {self.num_classes}) "
                    f"that are not the ignore index {self.ignore_index}. Fix the label map or "
                    f"its label mapping, or set unknown='ignore' to train with them ignored.")
            seg = seg.copy()
            seg[bad] = self.ignore_index
            results["gt_seg_map"] = seg
        return results
