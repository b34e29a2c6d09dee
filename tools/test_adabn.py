"""Evaluate a det/seg checkpoint with per-domain BatchNorm statistics (AdaBN):

    python tools/test_adabn.py CONFIG CHECKPOINT [--images 96] [--adapt-split train]
                               [--work-dir DIR] [--cfg-options k=v ...]

For every domain of the config's ``test_evaluator`` (a ``DomainMetric``), the checkpoint is
loaded afresh, the BatchNorm running statistics of the model that predicts (the teacher of a
mean-teacher model) are re-estimated on ``--images`` *unlabeled* images of that domain (its test
data set with ``split`` set to ``--adapt-split``; labels are not read), and that domain's test
images are evaluated. Prints the per-domain table and writes ``<work_dir>/results.json`` (as
tools/train.py does, so tools/demo_dense_summary.py reads it).
The test data set of each domain must be a ``ConcatDataset`` member with ``domain`` and ``split``
keys, as in the shapes configs.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import DATASETS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import dgsamp  # noqa: E402, F401
from dgsamp.dense.adabn import reestimate_bn_stats  # noqa: E402
from dgsamp.dense.domain_metric import add_group_means, format_domain_table  # noqa: E402


def predicting_model(model):
    """The module that makes the predictions: a mean teacher's teacher, else the model."""
    model = getattr(model, "module", model)  # DDP
    if not (hasattr(model, "teacher") and hasattr(model, "student")):
        return model
    # ClassMixMeanTeacher keeps predict_on itself, mmdet's semi-supervised detectors in a cfg
    on = getattr(model, "predict_on", None) or (getattr(model, "semi_test_cfg", None) or {}).get(
        "predict_on", "teacher")
    return model.student if on == "student" else model.teacher


# Pipeline steps that read or check labels: the unlabeled images must not need them.
LABEL_TRANSFORMS = ("LoadAnnotations", "ValidateSegLabels")


def unlabeled_batches(dataset_cfg: dict, split: str, images: int, preprocessor, batch: int = 8):
    cfg = copy.deepcopy(dataset_cfg)
    if "pipeline" in cfg:
        cfg.pipeline = [t for t in cfg.pipeline
                        if str(t.get("type", "")).split(".")[-1] not in LABEL_TRANSFORMS]
    if "split" not in cfg:
        raise SystemExit(f"test data set {cfg.get('type')!r} has no 'split' key: test_adabn.py "
                         "needs the domain's unlabeled images through it (see the docstring)")
    cfg.split = split
    cfg.pop("test_mode", None)
    cfg.pop("indices", None)  # a subset of the test split says nothing about the other split
    if "labeled" in inspect.signature(DATASETS.get(cfg.type)).parameters:
        cfg.labeled = False  # the annotations are not even read
    ds = DATASETS.build(cfg)
    n = min(images, len(ds))
    for i in range(0, n, batch):
        data = preprocessor(pseudo_collate([ds[j] for j in range(i, min(i + batch, n))]), False)
        yield data["inputs"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="Test with per-domain BatchNorm statistics (AdaBN)")
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--images", type=int, default=96, help="unlabeled images per domain")
    p.add_argument("--adapt-split", default="train")
    p.add_argument("--work-dir")
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = p.parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f"Checkpoint {args.checkpoint!r} does not exist.")
    base = Config.fromfile(args.config)
    if args.cfg_options:
        base.merge_from_dict(args.cfg_options)
    work_dir = args.work_dir or osp.join(
        "work_dirs", osp.splitext(osp.basename(args.config))[0] + "_adabn")
    domains = list(base.test_evaluator.domains)
    metrics: dict[str, float] = {}
    for domain in domains:
        cfg = copy.deepcopy(base)
        cfg.work_dir = osp.join(work_dir, domain)
        cfg.load_from = args.checkpoint
        members = [d for d in cfg.test_dataloader.dataset.datasets if d.get("domain") == domain]
        if not members:
            raise SystemExit(f"no test data set of domain {domain!r} in the config")
        cfg.test_dataloader.dataset.datasets = members
        cfg.test_evaluator.domains = [domain]
        cfg.test_evaluator.source_domains = [domain]
        runner = Runner.from_cfg(cfg)
        runner.load_or_resume()
        model = predicting_model(runner.model)
        # the outer model's preprocessor: a ClassMix teacher has none of its own, and the
        # multi-branch ones process a plain batch as their inner one does
        preprocessor = getattr(runner.model, "module", runner.model).data_preprocessor
        seen = reestimate_bn_stats(model, unlabeled_batches(
            members[0], args.adapt_split, args.images, preprocessor),
            forward=model.extract_feat)
        runner.logger.info(f"AdaBN: {domain} statistics from {seen} unlabeled images")
        out = runner.test()
        metrics.update({k: v for k, v in out.items() if k.startswith(f"{domain}/")})
    add_group_means(metrics, domains, list(base.test_evaluator.get("source_domains", [])))
    print(format_domain_table(metrics, domains))
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, "results.json"), "w") as fh:
        json.dump(dict(metrics=metrics, config=args.config, checkpoint=args.checkpoint,
                       images_per_domain=args.images), fh, indent=1)
    return metrics


if __name__ == "__main__":
    main()
