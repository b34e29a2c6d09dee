"""Accuracy for every domain in one evaluation pass, named from the data set's metainfo."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


@METRICS.register_module()
class DomainAccuracy(BaseMetric):
    """Per-domain top-1 accuracy (in %), plus two summaries.

    Keys: ``acc/<domain>`` for each domain seen, ``acc/train_domains`` (mean over the training
    domains' held-out parts: the training-domain validation score DomainBed selects models by)
    and ``acc/test_domains`` (mean over the test domains: the number reported).
    """

    default_prefix = ""

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append((s["domain"], s["pred_label"] == s["gt_label"]))

    def compute_metrics(self, results: list) -> dict[str, float]:
        meta = self.dataset_meta or {}
        names = meta.get("domains")
        test = set(meta.get("test_domains") or [])
        hits: dict[str, list[bool]] = defaultdict(list)
        for domain, correct in results:
            hits[names[domain] if names else str(domain)].append(bool(correct))
        metrics = {f"acc/{name}": 100.0 * sum(v) / len(v) for name, v in hits.items()}
        train = [metrics[f"acc/{n}"] for n in hits if n not in test]
        tested = [metrics[f"acc/{n}"] for n in hits if n in test]
        if train:
            metrics["acc/train_domains"] = sum(train) / len(train)
        if tested:
            metrics["acc/test_domains"] = sum(tested) / len(tested)
        return metrics
