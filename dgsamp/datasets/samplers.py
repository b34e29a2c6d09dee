"""Batching for DG and DA: one minibatch per domain per step, and unlabeled target batches.

DomainBed feeds every algorithm one minibatch per training domain per step; algorithms that
compare domains (CORAL, MMD, IRM, VREx, GroupDRO, Mixup, DANN) need that, ERM does not (plain
mixed batches from mmengine's `DefaultSampler` stay the default). Here

- `DomainBalancedBatchSampler` (a ``batch_sampler`` in a dataloader config) takes the indices
  its ``sampler`` yields (so the shuffle stays seeded, epoch-dependent and sharded across ranks
  exactly as `DefaultSampler` makes it), buckets them by domain and yields batches made of one
  ``batch_size`` minibatch per domain, concatenated in domain order;
- `SourceTargetDataset` puts an unlabeled target domain beside the labelled source domains for
  domain adaptation. Target items carry ``label=UNLABELED`` (-1): the target's labels are never
  loaded (`DomainSplitDataset.unlabeled_item`), so they cannot reach a model. With the batch
  sampler above, every step then has one target minibatch next to the source minibatches::

    train_dataloader = dict(
        batch_size=32,                       # per domain
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_sampler=dict(type='DomainBalancedBatchSampler'),
        dataset=dict(type='SourceTargetDataset',
                     source=dict(type='RotatedDigits', test_domains=['75'], part='train')))
    # target defaults to the source config with part='target'; give `target=` to choose
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from mmengine.registry import DATA_SAMPLERS, DATASETS
from torch.utils.data import Dataset, Sampler

UNLABELED = -1  #: the label target items carry in the DA setting


def item_domains_of(dataset: Dataset) -> torch.Tensor:
    """The domain index of every item, from the data set's ``item_domains``."""
    domains = getattr(dataset, "item_domains", None)
    if domains is None:
        raise TypeError(f"{type(dataset).__name__} has no `item_domains`, which domain-balanced "
                        f"batching needs. Fix: use a dgsamp benchmark (DGBenchmark, "
                        f"SourceTargetDataset) or give the data set an `item_domains` tensor.")
    return torch.as_tensor(domains, dtype=torch.long)


@DATA_SAMPLERS.register_module()
class DomainBalancedBatchSampler(Sampler):
    """One ``batch_size`` minibatch per domain per step (DomainBed's batching).

    Args:
        sampler: yields data set indices (mmengine passes the dataloader's ``sampler``).
        batch_size: per-domain minibatch size (mmengine passes the dataloader's batch_size), so
            a step sees ``batch_size * number_of_domains`` items.
        epoch_length: 'min' (default, DomainBed's epoch): an epoch ends when the smallest
            domain runs out, so no item repeats within an epoch; 'max': it ends when the
            largest runs out and smaller domains start over (reshuffled by the next epoch).
    """

    def __init__(self, sampler: Sampler, batch_size: int, epoch_length: str = "min"):
        if epoch_length not in ("min", "max"):
            raise ValueError(f"epoch_length={epoch_length!r}: choose 'min' or 'max'.")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        self.sampler, self.batch_size, self.epoch_length = sampler, batch_size, epoch_length
        dataset = getattr(sampler, "dataset", None)
        if dataset is None:
            raise TypeError("DomainBalancedBatchSampler needs a sampler with a `dataset` "
                            "attribute (mmengine's DefaultSampler has one).")
        self.item_domains = item_domains_of(dataset)
        self.domains = sorted(set(self.item_domains.tolist()))
        world = int(getattr(sampler, "world_size", 1))
        # items each rank sees per domain (DefaultSampler deals indices round-robin to ranks)
        counts = [max(1, int((self.item_domains == d).sum()) // world) for d in self.domains]
        self._per_domain = [min(batch_size, c) for c in counts]
        n_batches = [math.ceil(c / b) if epoch_length == "max" else c // b
                     for c, b in zip(counts, self._per_domain, strict=True)]
        self._len = max(n_batches) if epoch_length == "max" else min(n_batches)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[list[int]]:
        buckets: dict[int, list[int]] = {d: [] for d in self.domains}
        for i in self.sampler:
            buckets[int(self.item_domains[i])].append(int(i))
        for step in range(self._len):
            batch: list[int] = []
            for d, b in zip(self.domains, self._per_domain, strict=True):
                items = buckets[d]
                if not items:
                    continue
                start = step * b
                batch += [items[(start + k) % len(items)] for k in range(b)]
            yield batch

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


@DATASETS.register_module()
class SourceTargetDataset(Dataset):
    """Labelled source domains followed by an unlabeled target domain (the DA setting).

    Args:
        source: the source data set (or its config), e.g. a benchmark with ``part='train'``.
        target: the target data set (or its config), e.g. the same benchmark with
            ``part='target'``. Its items are loaded without their labels (``label=-1``).
            None (default): the source config with ``part='target'`` (the source's test
            domains, their 80% part).
    """

    def __init__(self, source: Dataset | dict, target: Dataset | dict | None = None):
        if target is None:
            if not isinstance(source, dict):
                raise ValueError("SourceTargetDataset: give `target` when `source` is a built "
                                 "data set (the default target is the source config with "
                                 "part='target').")
            target = {**source, "part": "target"}
        self.source = DATASETS.build(source) if isinstance(source, dict) else source
        self.target = DATASETS.build(target) if isinstance(target, dict) else target
        self._n_source = len(self.source)
        meta = dict(getattr(self.source, "metainfo", {}) or {})
        target_meta = getattr(self.target, "metainfo", {}) or {}
        meta["target_domains"] = list(target_meta.get("test_domains") or [])
        self.metainfo = meta

    def __len__(self) -> int:
        return self._n_source + len(self.target)

    def __getitem__(self, i: int) -> dict:
        if i < self._n_source:
            return self.source[i]
        j = i - self._n_source
        if hasattr(self.target, "unlabeled_item"):
            return self.target.unlabeled_item(j)
        item = self.target[j]  # a foreign data set: the label is dropped before it goes on
        return dict(inputs=item["inputs"],
                    data_samples=dict(label=UNLABELED, domain=item["data_samples"]["domain"]))

    @property
    def item_domains(self) -> torch.Tensor:
        return torch.cat([item_domains_of(self.source), item_domains_of(self.target)])


def is_labeled(labels: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Mask of the items that carry a label (target items in DA do not)."""
    return torch.as_tensor(labels) != UNLABELED
