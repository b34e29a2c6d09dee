"""Shapes benchmark: deterministic cached generation, exact boxes/masks/label maps, files read
by mmdet's and mmseg's own dataset classes, bad input refused, per-domain metric routing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from dgsamp.datasets.shapes import (
    CLASSES,
    STYLES,
    generate_shapes,
    mask_to_box,
    rle_decode,
    rle_encode,
    shapes_params,
)

TINY = dict(image_size=64, num_train=6, num_val=3, min_size=8, max_size=20, seed=3)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("shapes"), **TINY)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_by_seed_and_cached(tmp_path, tiny_root):
    again = generate_shapes(tmp_path / "a", **TINY)
    assert again.name == tiny_root.name  # same parameter hash
    assert _files(again) == _files(tiny_root)
    other = generate_shapes(tmp_path / "a", **dict(TINY, seed=4))
    assert other != again
    img = "clean/train/images/000000.png"
    assert (other / img).read_bytes() != (again / img).read_bytes()
    mtime = os.stat(again / "meta.json").st_mtime_ns
    assert generate_shapes(tmp_path / "a", **TINY) == again  # reused, not rewritten
    assert os.stat(again / "meta.json").st_mtime_ns == mtime


def test_boxes_masks_and_label_maps_agree(tiny_root):
    for style in STYLES:
        for split, n in (("train", 6), ("val", 3)):
            coco = json.loads((tiny_root / style / f"{split}.json").read_text())
            assert len(coco["images"]) == n
            assert [c["name"] for c in coco["categories"]] == list(CLASSES)
            by_img = {}
            for ann in coco["annotations"]:
                mask = rle_decode(ann["segmentation"])
                assert mask_to_box(mask) == ann["bbox"]
                assert int(mask.sum()) == ann["area"] > 0
                by_img.setdefault(ann["image_id"], []).append((ann["category_id"], mask))
            for img in coco["images"]:
                label = np.array(Image.open(tiny_root / style / img["file_name"].replace(
                    "/images/", "/labels/")))
                expect = np.zeros_like(label)
                for cat, mask in by_img.get(img["id"], []):
                    assert not expect[mask].any()  # objects never overlap
                    expect[mask] = cat
                np.testing.assert_array_equal(label, expect)
                x, y, w, h = 0, 0, img["width"], img["height"]
                for ann in coco["annotations"]:
                    if ann["image_id"] == img["id"]:
                        bx, by_, bw, bh = ann["bbox"]
                        assert x <= bx and y <= by_ and bx + bw <= w and by_ + bh <= h


def test_styles_shift_the_images(tiny_root):
    def mean(style):
        return np.mean([np.array(Image.open(p), dtype=float).mean()
                        for p in (tiny_root / style / "train" / "images").glob("*.png")])

    assert mean("dark") < 0.5 * mean("clean")
    fog_std = np.mean([np.array(Image.open(p), dtype=float).std()
                       for p in (tiny_root / "fog" / "train" / "images").glob("*.png")])
    clean_std = np.mean([np.array(Image.open(p), dtype=float).std()
                         for p in (tiny_root / "clean" / "train" / "images").glob("*.png")])
    assert fog_std < clean_std


def test_rle_round_trip_and_bad_params():
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = rng.random((7, 5)) > 0.5
        np.testing.assert_array_equal(rle_decode(rle_encode(m)), m)
    with pytest.raises(ValueError, match="styles"):
        shapes_params(styles=("clean", "snow"))
    with pytest.raises(ValueError, match="too large"):
        shapes_params(image_size=32, max_size=20)


# ------------------------------------------------------------------ mmdet / mmseg readers
def test_pycocotools_reads_the_rle_masks(tiny_root):
    from pycocotools import mask as mask_utils

    coco = json.loads((tiny_root / "texture" / "val.json").read_text())
    for ann in coco["annotations"]:
        h, w = ann["segmentation"]["size"]
        rle = mask_utils.frPyObjects(ann["segmentation"], h, w)
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool),
                                      rle_decode(ann["segmentation"]))


def test_mmdet_dataset_reads_boxes_and_masks(tiny_root):
    from mmdet.utils import register_all_modules

    import dgsamp.detseg.det_datasets as dd

    register_all_modules()
    pipeline = [dict(type="LoadImageFromFile"),
                dict(type="LoadAnnotations", with_bbox=True, with_mask=True)]
    ds = dd.ShapesDetDataset(domain="fog", split="train", shapes=TINY,
                             cache_dir=str(tiny_root.parent), pipeline=pipeline)
    assert ds.metainfo["classes"] == CLASSES and len(ds) == 6
    coco = json.loads((tiny_root / "fog" / "train.json").read_text())
    for i in range(len(ds)):
        item = ds[i]
        anns = [a for a in coco["annotations"] if a["image_id"] == item["img_id"]]
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                           a["bbox"][1] + a["bbox"][3]] for a in anns], dtype=np.float32)
        np.testing.assert_allclose(item["gt_bboxes"].numpy(), boxes)
        np.testing.assert_array_equal(item["gt_bboxes_labels"],
                                      [a["category_id"] - 1 for a in anns])
        masks = item["gt_masks"].to_ndarray().astype(bool)
        for m, a in zip(masks, anns, strict=True):
            np.testing.assert_array_equal(m, rle_decode(a["segmentation"]))
    unl = dd.ShapesDetDataset(domain="fog", split="train", labeled=False, shapes=TINY,
                              cache_dir=str(tiny_root.parent))
    assert len(unl) == 6 and all(unl.get_data_info(i)["instances"] == [] for i in range(6))


def _write_coco(tmp_path, images, annotations):
    (tmp_path / "img").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "img" / "a.png")
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=1, name="circle")])
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    return str(path)


def test_bad_detection_annotations_are_clear_errors(tmp_path):
    from mmdet.utils import register_all_modules

    from dgsamp.detseg.det_datasets import CheckedCocoDataset

    register_all_modules()
    meta = dict(classes=("circle",))
    img = dict(id=1, file_name="a.png", width=30, height=20)
    ann = dict(id=7, image_id=1, category_id=1, bbox=[2, 2, 5, 5], area=25, iscrowd=0)
    ok = _write_coco(tmp_path, [img], [ann])
    assert len(CheckedCocoDataset(ann_file=ok, data_prefix=dict(img=str(tmp_path / "img")),
                                  metainfo=meta)) == 1
    missing = _write_coco(tmp_path, [img, dict(img, id=2, file_name="gone.png")], [ann])
    with pytest.raises(FileNotFoundError, match="gone.png"):
        CheckedCocoDataset(ann_file=missing, data_prefix=dict(img=str(tmp_path / "img")),
                           metainfo=meta)
    outside = _write_coco(tmp_path, [img], [dict(ann, bbox=[25, 2, 10, 5])])
    with pytest.raises(ValueError, match="annotation id 7.*outside the image"):
        CheckedCocoDataset(ann_file=outside, data_prefix=dict(img=str(tmp_path / "img")),
                           metainfo=meta)
    clipped = CheckedCocoDataset(ann_file=outside, data_prefix=dict(img=str(tmp_path / "img")),
                                 metainfo=meta, invalid_boxes="clip")
    assert clipped.get_data_info(0)["instances"][0]["bbox"] == [25, 2, 30, 7]


def test_mmseg_dataset_reads_label_maps_and_validates_ids(tiny_root, tmp_path):
    from mmseg.utils import register_all_modules

    import dgsamp.detseg.seg_datasets as sd

    register_all_modules()
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
                dict(type="ValidateSegLabels", num_classes=4)]
    ds = sd.ShapesSegDataset(domain="dark", split="val", shapes=TINY,
                             cache_dir=str(tiny_root.parent), pipeline=pipeline)
    assert len(ds) == 3 and ds.metainfo["classes"][0] == "background"
    item = ds[1]
    np.testing.assert_array_equal(item["gt_seg_map"], np.array(Image.open(
        tiny_root / "dark" / "val" / "labels" / "000001.png")))
    unl = sd.ShapesSegDataset(domain="dark", split="val", labeled=False, shapes=TINY,
                              cache_dir=str(tiny_root.parent))
    assert "seg_map_path" not in unl.get_data_info(0)
    bad = np.zeros((8, 8), np.uint8)
    bad[0, 0], bad[1, 1] = 7, 255
    check = sd.ValidateSegLabels(num_classes=4)
    with pytest.raises(ValueError, match=r"ids \[7\]"):
        check(dict(gt_seg_map=bad, seg_map_path="x.png"))
    out = sd.ValidateSegLabels(num_classes=4, unknown="ignore")(dict(gt_seg_map=bad.copy()))
    assert out["gt_seg_map"][0, 0] == 255 and out["gt_seg_map"][1, 1] == 255


def test_domain_metric_routes_by_path_and_tables():
    from mmengine.evaluator import BaseMetric
    from mmengine.registry import METRICS

    from dgsamp.evaluation.domain_metric import DomainMetric

    @METRICS.register_module(force=True)
    class _CountMetric(BaseMetric):
        def process(self, data_batch, data_samples):
            self.results.extend(s["v"] for s in data_samples)

        def compute_metrics(self, results):
            return {"mIoU": float(sum(results))}

    m = DomainMetric(metric=dict(type="_CountMetric"), domains=["clean", "fog"],
                     train_domains=["clean"])
    m.dataset_meta = dict(classes=("a",))
    m.process(None, [dict(img_path="/r/clean/val/1.png", v=1.0),
                     dict(img_path="/r/fog/val/1.png", v=5.0),
                     dict(img_path="/r/fog/val/2.png", v=2.0)])
    out = m.evaluate(3)
    # the classification convention: <metric>/<domain>, <metric>/train_domains|test_domains
    assert out == {"mIoU/clean": 1.0, "mIoU/fog": 7.0, "mIoU/train_domains": 1.0,
                   "mIoU/test_domains": 7.0}
    with pytest.raises(ValueError, match="train_domains"):
        DomainMetric(metric=dict(type="_CountMetric"), domains=["clean"], source_domains=["clean"])
    with pytest.raises(ValueError, match="exactly"):
        m.process(None, [dict(img_path="/r/dark/1.png", v=1.0)])


def test_domain_metric_with_coco_metric_perfect_and_empty_domains():
    """Perfect boxes on one domain give AP 100, no detections on another give AP 0."""
    import torch
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope

    from dgsamp.evaluation.domain_metric import DomainMetric

    register_all_modules()

    def sample(domain, i, boxes, predict):
        inst = [dict(bbox=b, bbox_label=0, ignore_flag=0) for b in boxes]
        pred = dict(bboxes=torch.tensor(boxes if predict else [], dtype=torch.float32
                                        ).reshape(-1, 4),
                    scores=torch.ones(len(boxes) if predict else 0),
                    labels=torch.zeros(len(boxes) if predict else 0, dtype=torch.long))
        return dict(img_path=f"/r/{domain}/val/images/{i}.png", img_id=i, ori_shape=(64, 64),
                    instances=inst, pred_instances=pred)

    with DefaultScope.overwrite_default_scope("mmdet"):
        m = DomainMetric(metric=dict(type="CocoMetric", metric="bbox"),
                         domains=["clean", "dark"], train_domains=["clean"])
    m.dataset_meta = dict(classes=("circle", "square"))
    boxes = [[2.0, 3.0, 20.0, 30.0], [30.0, 30.0, 50.0, 60.0]]
    m.process(None, [sample("clean", 0, boxes, True), sample("clean", 1, boxes[:1], True),
                     sample("dark", 0, boxes, False)])
    out = m.evaluate(3)
    assert out["AP50/clean"] == pytest.approx(100.0) and out["AP/clean"] == pytest.approx(100.0)
    assert out["AP50/dark"] == 0.0 and out["AP50/test_domains"] == 0.0
