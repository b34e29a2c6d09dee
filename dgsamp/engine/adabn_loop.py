"""AdaBNTestLoop: test every domain with BatchNorm statistics of its own unlabeled images.

``tools/test.py CONFIG CKPT --adabn`` (or ``test_cfg=dict(type='AdaBNTestLoop', images=96)``).
For every domain of the test data set (a ``ConcatDataset`` whose members carry ``domain`` and
``split`` keys, as the shapes configs' do; `DomainMetric` as the evaluator), the checkpoint's
weights are restored, the BatchNorm running statistics of the model that predicts (a mean
teacher's teacher) are re-estimated on ``images`` *unlabeled* images of that domain (its test
data set with ``split`` set to ``adapt_split``, label-loading steps dropped, ``labeled=False``
where the data set has it), and that domain's test images are evaluated. The metrics are the
ordinary ``<metric>/<domain>`` keys plus the train/test-domain means over all domains.
The algorithm is `dgsamp.methods.bn_stats.reestimate_bn_stats`; this loop only feeds it.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator

from mmengine.dataset import pseudo_collate
from mmengine.logging import print_log
from mmengine.registry import DATASETS, LOOPS
from mmengine.runner import TestLoop
from torch import nn

from ..evaluation.domain_metric import DomainMetric, add_group_means, format_domain_table
from ..methods.bn_stats import reestimate_bn_stats
from .runner_utils import unwrap_model

# Pipeline steps that read or check labels: the unlabeled images must not need them.
LABEL_TRANSFORMS = ("LoadAnnotations", "ValidateSegLabels")


def predicting_model(model: nn.Module) -> nn.Module:
    """The module that makes the predictions: a mean teacher's teacher (or student, where it
    predicts with that), else the model."""
    model = unwrap_model(model)
    if not (hasattr(model, "teacher") and hasattr(model, "student")):
        return model
    # ClassMixMeanTeacher keeps predict_on itself, mmdet's semi-supervised detectors in a cfg
    on = getattr(model, "predict_on", None) or (getattr(model, "semi_test_cfg", None) or {}).get(
        "predict_on", "teacher")
    return model.student if on == "student" else model.teacher


def unlabeled_dataset_cfg(dataset_cfg: dict, split: str) -> dict:
    """The config of a domain's unlabeled images: its test data set on ``split``, without the
    pipeline steps that load labels (and with ``labeled=False`` where the class has it)."""
    cfg = copy.deepcopy(dataset_cfg)
    if "split" not in cfg:
        raise ValueError(f"AdaBNTestLoop: test data set {cfg.get('type')!r} has no 'split' key; "
                         f"the loop reaches a domain's unlabeled images through it. Fix: use "
                         f"a data set with `domain` and `split` (e.g. ShapesDetDataset).")
    if "pipeline" in cfg:
        cfg["pipeline"] = [t for t in cfg["pipeline"]
                           if str(t.get("type", "")).split(".")[-1] not in LABEL_TRANSFORMS]
    cfg["split"] = split
    cfg.pop("test_mode", None)
    cfg.pop("indices", None)  # a subset of the test split says nothing about the other split
    if "labeled" in inspect.signature(DATASETS.get(cfg["type"])).parameters:
        cfg["labeled"] = False  # the annotations are not even read
    return cfg


def unlabeled_batches(dataset_cfg: dict, images: int, preprocessor, batch_size: int
                      ) -> Iterator:
    """Preprocessed input tensors of the first ``images`` items, ``batch_size`` at a time."""
    ds = DATASETS.build(dataset_cfg)
    n = min(images, len(ds))
    for i in range(0, n, batch_size):
        batch = pseudo_collate([ds[j] for j in range(i, min(i + batch_size, n))])
        yield preprocessor(batch, False)["inputs"]


@LOOPS.register_module()
class AdaBNTestLoop(TestLoop):
    """TestLoop with per-domain BatchNorm statistics (module docstring).

    Args:
        images: unlabeled images per domain to estimate the statistics from.
        adapt_split: split of each domain's data set those images come from.
        batch_size: images per re-estimation batch.
        runner, dataloader, evaluator, fp16: as mmengine's ``TestLoop``.
    """

    def __init__(self, runner, dataloader: dict, evaluator, fp16: bool = False,
                 images: int = 96, adapt_split: str = "train", batch_size: int = 8) -> None:
        if not isinstance(dataloader, dict):
            raise TypeError("AdaBNTestLoop needs the test_dataloader *config* (it builds one "
                            "loader per domain from it), not a built DataLoader.")
        if images < 1 or batch_size < 1:
            raise ValueError(f"AdaBNTestLoop: images={images}, batch_size={batch_size}; both "
                             f"must be at least 1.")
        self.loader_cfg = copy.deepcopy(dataloader)
        members = self.loader_cfg["dataset"].get("datasets")
        if self.loader_cfg["dataset"].get("type") != "ConcatDataset" or not members:
            raise ValueError("AdaBNTestLoop: test_dataloader.dataset must be a ConcatDataset "
                             "with one member per domain (each with a `domain` key).")
        super().__init__(runner, dataloader, evaluator, fp16)
        metrics = [m for m in self.evaluator.metrics if isinstance(m, DomainMetric)]
        if len(metrics) != 1:
            raise ValueError("AdaBNTestLoop: the test_evaluator must hold one DomainMetric.")
        self.domain_metric = metrics[0]
        self.members = {}
        for domain in self.domain_metric.metrics:
            found = [d for d in members if d.get("domain") == domain]
            if not found:
                raise ValueError(f"AdaBNTestLoop: no test data set of domain {domain!r} "
                                 f"among test_dataloader.dataset.datasets.")
            self.members[domain] = found
        self.images, self.adapt_split, self.batch_size = int(images), adapt_split, batch_size

    def _domain_loader(self, members: list[dict]):
        cfg = copy.deepcopy(self.loader_cfg)
        cfg["dataset"]["datasets"] = members
        runner = self.runner
        return runner.build_dataloader(
            cfg, seed=runner.seed, diff_rank_seed=runner._randomness_cfg.get("diff_rank_seed",
                                                                             False))

    def run(self) -> dict:
        runner = self.runner
        runner.call_hook("before_test")
        runner.call_hook("before_test_epoch")
        runner.model.eval()
        outer = unwrap_model(runner.model)
        saved = copy.deepcopy(outer.state_dict())  # the checkpoint, restored for every domain
        # the outer model's preprocessor: a ClassMix teacher has none of its own, and the
        # multi-branch ones process a plain batch as their inner one does
        preprocessor = outer.data_preprocessor
        metrics: dict[str, float] = {}
        for domain, members in self.members.items():
            outer.load_state_dict(saved)
            model = predicting_model(outer)
            batches = unlabeled_batches(unlabeled_dataset_cfg(members[0], self.adapt_split),
                                        self.images, preprocessor, self.batch_size)
            seen = reestimate_bn_stats(model, batches, forward=model.extract_feat)
            print_log(f"AdaBN: {domain} statistics from {seen} unlabeled images", "current")
            self.dataloader = self._domain_loader(members)
            for idx, data_batch in enumerate(self.dataloader):
                self.run_iter(idx, data_batch)
            out = self.evaluator.evaluate(len(self.dataloader.dataset))
            metrics.update({k: v for k, v in out.items() if k.endswith(f"/{domain}")})
        outer.load_state_dict(saved)
        domains = list(self.members)
        add_group_means(metrics, domains, self.domain_metric.train_domains)
        print_log("AdaBN per-domain results:\n" + format_domain_table(metrics, domains),
                  "current")
        runner.call_hook("after_test_epoch", metrics=metrics)
        runner.call_hook("after_test")
        return metrics


