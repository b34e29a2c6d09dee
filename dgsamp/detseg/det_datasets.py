"""Detection data sets: the shapes benchmark and a checked CocoDataset (mmdet).

`CheckedCocoDataset` is mmdet's ``CocoDataset`` plus the checks that turn silent data problems
into errors that say what is wrong:
- an annotation file naming images that are not on disk -> FileNotFoundError (first few named);
- a box outside its image (beyond ``box_tolerance`` pixels) or with non-positive size ->
  ValueError naming the annotation id, image and file; ``invalid_boxes='clip'`` clips boxes
  to the image instead (and drops those left empty), ``'skip'`` drops them.

`ShapesDetDataset` reads one style (domain) of `dgsamp.datasets.shapes`, generating the cache
on first use. ``labeled=False`` gives the unlabeled target set for adaptation: it lists the
image files only and never opens the annotation file, so target labels cannot leak into
training (tested by poisoning them).
"""

from __future__ import annotations

import os.path as osp
from pathlib import Path

from mmdet.datasets import BaseDetDataset, CocoDataset
from mmengine.registry import DATASETS
from PIL import Image

from ..datasets.shapes import CLASSES, PALETTE, generate_shapes


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet CocoDataset that refuses missing images and boxes outside their image.

    Args:
        box_tolerance: pixels a box may extend past the image border before it is invalid.
        invalid_boxes: 'error' (default), 'clip' or 'skip'.
        check_files: check that every listed image exists (one ``stat`` per image).
        **kwargs: as mmdet's ``CocoDataset``.
    """

    def __init__(self, *args, box_tolerance: float = 1.0, invalid_boxes: str = "error",
                 check_files: bool = True, **kwargs) -> None:
        if invalid_boxes not in ("error", "clip", "skip"):
            raise ValueError(f"invalid_boxes must be 'error', 'clip' or 'skip', "
                             f"got {invalid_boxes!r}")
        self.box_tolerance = float(box_tolerance)
        self.invalid_boxes = invalid_boxes
        self.check_files = bool(check_files)
        super().__init__(*args, **kwargs)

    def parse_data_info(self, raw_data_info: dict):
        img = raw_data_info["raw_img_info"]
        w, h, tol = img["width"], img["height"], self.box_tolerance
        kept = []
        for ann in raw_data_info["raw_ann_info"]:
            x, y, bw, bh = ann["bbox"]
            bad = bw <= 0 or bh <= 0 or x < -tol or y < -tol or x + bw > w + tol \
                or y + bh > h + tol
            if bad and self.invalid_boxes == "error":
                raise ValueError(
                    f"{self.ann_file}: annotation id {ann.get('id')} of image "
                    f"{img.get('file_name')!r} ({w}x{h}) has box [x, y, w, h]={ann['bbox']} "
                    f"outside the image or empty. Fix the annotation, or set "
                    f"invalid_boxes='clip' / 'skip' on the dataset.")
            if bad and self.invalid_boxes == "skip":
                continue
            if bad:  # clip
                x0, y0 = min(max(x, 0), w), min(max(y, 0), h)
                x1, y1 = min(max(x + bw, 0), w), min(max(y + bh, 0), h)
                if x1 - x0 <= 0 or y1 - y0 <= 0:
                    continue
                ann = dict(ann, bbox=[x0, y0, x1 - x0, y1 - y0])
            kept.append(ann)
        return super().parse_data_info(dict(raw_data_info, raw_ann_info=kept))

    def load_data_list(self) -> list[dict]:
        data_list = super().load_data_list()
        if self.check_files:
            missing = [d["img_path"] for d in data_list if not osp.isfile(d["img_path"])]
            if missing:
                raise FileNotFoundError(
                    f"{self.ann_file} names {len(missing)} image(s) that do not exist, e.g. "
                    f"{missing[:3]}. Fix: check data_root/data_prefix or the annotation file.")
        return data_list


def list_unlabeled_images(img_dir: Path, suffix: str) -> list[dict]:
    """Data infos (no instances) for every ``*suffix`` file under ``img_dir``, sorted."""
    if not img_dir.is_dir():
        raise FileNotFoundError(
            f"Unlabeled image folder {str(img_dir)!r} does not exist. Expected "
            f"<data_root>/<data_prefix.img>/**/*{suffix} (see the config's header for the "
            f"data set's released layout).")
    paths = sorted(p for p in img_dir.rglob(f"*{suffix}") if p.is_file())
    if not paths:
        raise FileNotFoundError(f"No *{suffix} images under {str(img_dir)!r}.")
    data_list = []
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            w, h = im.size
        data_list.append(dict(img_id=i, img_path=str(path), width=w, height=h, instances=[]))
    return data_list


@DATASETS.register_module()
class UnlabeledImageFolder(BaseDetDataset):
    """Unlabeled detection images: every file under ``data_root/data_prefix['img']`` (recursive)
    whose name ends with ``suffix``, with empty ``instances``. For the unlabeled target domain
    of mean-teacher adaptation: no annotation file is involved, so none can leak.

    Args:
        suffix: file-name ending to keep (e.g. '_leftImg8bit_foggy_beta_0.02.png').
        **kwargs: as mmdet's ``BaseDetDataset`` (data_root, data_prefix=dict(img=...),
            metainfo, pipeline, ...).
    """

    def __init__(self, suffix: str = ".png", **kwargs) -> None:
        self.suffix = suffix
        kwargs.setdefault("ann_file", "")
        kwargs.setdefault("filter_cfg", dict(filter_empty_gt=False))
        super().__init__(**kwargs)

    def load_data_list(self) -> list[dict]:
        img_dir = Path(self.data_prefix.get("img", "") or self.data_root)
        return list_unlabeled_images(img_dir, self.suffix)


@DATASETS.register_module()
class ShapesDetDataset(CheckedCocoDataset):
    """One style of the embedded shapes benchmark in COCO format.

    Args:
        domain: 'clean' (source), 'fog', 'dark' or 'texture'.
        split: 'train' or 'val'.
        labeled: False lists images only (unlabeled target data; annotations never read).
        shapes: generator parameters (`dgsamp.datasets.shapes.shapes_params`).
        cache_dir: cache root (default ``~/.cache/dgsamp/data/shapes``).
        **kwargs: as mmdet's ``CocoDataset`` (pipeline, filter_cfg, test_mode, ...).
    """

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, domain: str = "clean", split: str = "train", labeled: bool = True,
                 shapes: dict | None = None, cache_dir: str | None = None, **kwargs) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"ShapesDetDataset split must be 'train' or 'val', got {split!r}")
        self.domain, self.split, self.labeled = domain, split, bool(labeled)
        root = generate_shapes(cache_dir, **(shapes or {}))
        if not (root / domain).is_dir():
            raise ValueError(f"Shapes style {domain!r} was not generated; styles: "
                             f"{sorted(p.name for p in root.iterdir() if p.is_dir())}")
        kwargs.setdefault("data_root", str(root / domain))
        kwargs.setdefault("data_prefix", dict(img=""))
        kwargs.setdefault("ann_file", f"{split}.json" if self.labeled else "")
        if not self.labeled:
            kwargs.setdefault("filter_cfg", dict(filter_empty_gt=False))
        super().__init__(**kwargs)

    def load_data_list(self) -> list[dict]:
        if self.labeled:
            return super().load_data_list()
        return list_unlabeled_images(Path(self.data_root) / self.split / "images", ".png")

    def filter_data(self) -> list[dict]:
        if not self.labeled:  # nothing to filter (CocoDataset's filter needs the json)
            return self.data_list
        return super().filter_data()
