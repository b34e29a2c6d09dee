"""Evaluate every domain in one validation run: one inner metric per domain, one table.

The val dataloader reads a ``ConcatDataset`` of all domains; `DomainMetric` routes each
prediction to its domain by the image path and runs an ordinary mmdet/mmseg metric (CocoMetric,
IoUMetric, ...) on each domain's share. Why route by path: ``img_path`` is packed by every
mmdet/mmseg pipeline by default, so unmodified pipelines work, and in all supported layouts
(the shapes cache, Cityscapes vs Foggy Cityscapes, GTA5, ACDC, ...) the domain is a folder.

Reported keys follow the project's one convention, ``<metric>/<domain>`` (as classification's
`DomainAccuracy` does: ``acc/<domain>``), in percent so AP and mIoU read alike:
- detection (CocoMetric): ``AP/<domain>``, ``AP50/<domain>``;
- segmentation (IoUMetric): ``mIoU/<domain>`` (and ``aAcc/<domain>``);
- other inner metrics: ``<key>/<domain>`` with the inner key unchanged;
- ``<metric>/train_domains`` and ``<metric>/test_domains``: the means over ``train_domains``
  (those whose labels training used: DA's labeled source, DG's training domains) and over the
  rest (evaluated only: DA's targets, whose unlabeled images training may see, and DG's
  held-out domains). Group names are the classification ones, not "source"/"target", so that
  one reader (tools/compare.py, model selection, the demo summaries) serves every task.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.registry import METRICS

# CocoMetric.compute_metrics returns fractions under these names (its "coco/" prefix is added
# later, by BaseMetric.evaluate); IoUMetric returns percentages.
_RENAME = {"bbox_mAP": ("AP", 100.0), "bbox_mAP_50": ("AP50", 100.0),
           "bbox_mAP_75": ("AP75", 100.0), "segm_mAP": ("mask_AP", 100.0),
           "segm_mAP_50": ("mask_AP50", 100.0)}
_DROP_PREFIXES = ("bbox_", "segm_")  # the other COCO numbers (size splits, copypaste strings)


GROUPS = ("train_domains", "test_domains")


def add_group_means(metrics: dict[str, float], domains: Sequence[str],
                    train_domains: Sequence[str]) -> dict[str, float]:
    """Add ``<name>/train_domains`` and ``<name>/test_domains``: each metric's mean over the
    training domains and over the other domains, in place. Nothing is added without training
    domains."""
    if not train_domains:
        return metrics
    names = sorted({k.rpartition("/")[0] for k in metrics if k.rpartition("/")[2] in domains})
    groups = {"train_domains": [d for d in domains if d in train_domains],
              "test_domains": [d for d in domains if d not in train_domains]}
    for group, members in groups.items():
        for name in names:
            vals = [metrics[f"{name}/{d}"] for d in members if f"{name}/{d}" in metrics]
            if vals:
                metrics[f"{name}/{group}"] = sum(vals) / len(vals)
    return metrics


def format_domain_table(metrics: dict[str, float], domains: Sequence[str]) -> str:
    """Plain-text table: one row per domain (plus the group means), one column per metric."""
    rows = [d for d in [*domains, *GROUPS] if any(k.endswith("/" + d) for k in metrics)]
    cols: list[str] = []
    for k in metrics:
        name, _, d = k.rpartition("/")
        if d in rows and name not in cols:
            cols.append(name)
    width = max(len(r) for r in rows) if rows else 6
    lines = ["domain".ljust(width) + "".join(f"{c:>10}" for c in cols)]
    for r in rows:
        cells = [metrics.get(f"{c}/{r}") for c in cols]
        lines.append(r.ljust(width) + "".join(
            f"{v:>10.2f}" if isinstance(v, float) else f"{'-':>10}" for v in cells))
    return "\n".join(lines)


@METRICS.register_module()
class DomainMetric(BaseMetric):
    """Run ``metric`` separately on each domain of a multi-domain val set.

    Args:
        metric: config of the inner metric (e.g. ``dict(type='CocoMetric', metric='bbox')`` or
            ``dict(type='IoUMetric', iou_metrics=['mIoU'])``), built in the current scope.
        domains: domain names in table order, or ``{name: path_substring}``. A list entry
            ``name`` matches image paths containing ``/name/``.
        per_domain: per-domain overrides of the inner metric config, e.g.
            ``dict(foggy=dict(ann_file='data/foggy/annotations/val.json'))``.
        train_domains: domains averaged into ``<metric>/train_domains`` (labels used in
            training); the others into ``<metric>/test_domains``.
        collect_device, prefix: as `mmengine.evaluator.BaseMetric`.
    """

    default_prefix = None

    def __init__(self, metric: dict, domains: Sequence[str] | dict[str, str],
                 per_domain: dict[str, dict] | None = None,
                 train_domains: Sequence[str] = (), collect_device: str = "cpu",
                 prefix: str | None = None, source_domains: Sequence[str] | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if source_domains is not None:
            raise ValueError("DomainMetric(source_domains=...) is now train_domains=..., and its "
                             "means are <metric>/train_domains and <metric>/test_domains. Fix: "
                             "rename the key in the config.")
        if isinstance(domains, dict):
            self.patterns = {str(k): str(v) for k, v in domains.items()}
        else:
            self.patterns = {str(d): f"/{d}/" for d in domains}
        if not self.patterns:
            raise ValueError("DomainMetric needs at least one domain.")
        per_domain = per_domain or {}
        unknown = (set(per_domain) | set(train_domains)) - set(self.patterns)
        if unknown:
            raise ValueError(f"DomainMetric: {sorted(unknown)} are not among the domains "
                             f"{list(self.patterns)}.")
        self.train_domains = tuple(train_domains)
        self.metrics = {}
        for d in self.patterns:
            cfg = copy.deepcopy(dict(metric))
            cfg.update(per_domain.get(d, {}))
            self.metrics[d] = METRICS.build(cfg)

    @property
    def dataset_meta(self) -> dict | None:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: dict) -> None:
        self._dataset_meta = meta
        for m in self.metrics.values():
            m.dataset_meta = meta

    def domain_of(self, img_path: str) -> str:
        path = str(img_path).replace("\\", "/")
        hits = [d for d, pat in self.patterns.items() if pat in path]
        if len(hits) != 1:
            raise ValueError(f"DomainMetric: image {img_path!r} matches domains {hits}; exactly "
                             f"one of the patterns {self.patterns} must match. Fix: set "
                             f"`domains` to a dict name -> unique path substring.")
        return hits[0]

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            domain = self.domain_of(sample["img_path"])
            inner = self.metrics[domain]
            before = len(inner.results)
            inner.process(data_batch, [sample])
            self.results.extend((domain, r) for r in inner.results[before:])
            del inner.results[before:]

    def compute_metrics(self, results: list) -> dict[str, float]:
        out: dict[str, float] = {}
        for domain, inner in self.metrics.items():
            part = [r for d, r in results if d == domain]
            if not part:
                continue
            computed = inner.compute_metrics(part)
            if not computed and "bbox" in getattr(inner, "metrics", ()):
                # CocoMetric returns {} when a domain has no detection at all: that is AP 0
                computed = {"bbox_mAP": 0.0, "bbox_mAP_50": 0.0, "bbox_mAP_75": 0.0}
            for key, value in computed.items():
                name, scale = _RENAME.get(key, (key, 1.0))
                if key not in _RENAME and key.startswith(_DROP_PREFIXES):
                    continue
                try:
                    out[f"{name}/{domain}"] = float(value) * scale
                except (TypeError, ValueError):
                    continue
        add_group_means(out, list(self.metrics), self.train_domains)
        MMLogger.get_current_instance().info(
            "Per-domain results:\n" + format_domain_table(out, list(self.metrics)))
        return out
