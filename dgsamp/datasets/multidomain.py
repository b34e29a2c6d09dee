"""A data set is a list of named domains (DomainBed's view), each split 80/20 by seed.

`MultiDomainDataset` is the one abstraction every classification benchmark builds on: embedded
sets generate their domains in memory, folder benchmarks read them from disk, and both hand back
the same thing: per-domain tensors or file lists plus a seeded train/held-out split. A *view*
(`DomainSplitDataset`) then selects which domains and which split part a data loader sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import build_transforms

SPLITS = ("train", "heldout", "all")


@dataclass
class Domain:
    """One domain held in memory: images (N, C, H, W float tensor) and integer labels (N,).

    Folder benchmarks subclass this and read images lazily in `read`. Reading and normalising
    are separate steps so that training augmentation (`dgsamp.datasets.transforms`) runs on the
    image in [0, 1], between the two.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, i: int) -> torch.Tensor:
        """The i-th image as a float tensor (C, H, W), before normalisation."""
        return self.images[i]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """What the model's input expects of a read image (embedded domains: as stored)."""
        return x

    def load(self, i: int) -> torch.Tensor:
        """The i-th image, read and normalised: what a data loader hands the model."""
        return self.normalize(self.read(i))


def split_indices(n: int, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """DomainBed's seeded split: a permutation, the first `holdout_fraction` is held out."""
    perm = np.random.RandomState(seed).permutation(n)
    n_out = int(round(n * holdout_fraction))
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def resolve_domains(names: Sequence[str], wanted: Sequence[str | int] | None) -> list[int]:
    """Map domain names or indices to indices; unknown ones raise with the valid choices."""
    if wanted is None:
        return list(range(len(names)))
    out = []
    for w in wanted:
        if isinstance(w, int) and 0 <= w < len(names):
            out.append(w)
        elif isinstance(w, str) and w in names:
            out.append(list(names).index(w))
        else:
            raise ValueError(f"Unknown domain {w!r}. This data set's domains are {list(names)} "
                             f"(give names or indices 0..{len(names) - 1}).")
    return out


class DomainSplitDataset(Dataset):
    """The samples of some domains of a multi-domain benchmark, one split part each.

    Each item is ``dict(inputs=image, data_samples=dict(label=y, domain=d))`` where ``d`` is the
    index of the domain in the *benchmark* (not in this view), so a metric can report every
    domain by name from ``metainfo['domains']``.

    Args:
        domains: all domains of the benchmark, in order.
        use_domains: which to include (names or indices); None means all.
        split: 'train' (the 80% part), 'heldout' (the 20% part) or 'all'. A per-domain mapping
            ``{name: split}`` mixes them (e.g. training domains held out, test domain whole).
        holdout_fraction, split_seed: the seeded split (DomainBed: 0.2, trial seed).
        classes: class names, for metainfo.
        transforms: augmentation specs (`dgsamp.datasets.transforms.build_transforms`) applied
            to every item between reading and normalising; None (default) for none. Set them
            on the training loader's data set only.
    """

    def __init__(self, domains: Sequence[Domain], use_domains: Sequence[str | int] | None = None,
                 split: str | dict[str, str] = "all", holdout_fraction: float = 0.2,
                 split_seed: int = 0, classes: Sequence[str] | None = None,
                 test_domains: Sequence[str | int] = (),
                 transforms: Sequence[dict] | None = None):
        self.transform = build_transforms(transforms)
        names = [d.name for d in domains]
        self.domains = list(domains)
        self.domain_ids = resolve_domains(names, use_domains)
        self.test_domain_ids = resolve_domains(names, test_domains) if test_domains else []
        splits = split if isinstance(split, dict) else {names[i]: split for i in self.domain_ids}
        for name, part in splits.items():
            if part not in SPLITS:
                raise ValueError(f"split {part!r} for domain {name!r}: choose one of {SPLITS}.")
        index: list[tuple[int, int]] = []
        for d in self.domain_ids:
            train_idx, out_idx = split_indices(len(domains[d]), holdout_fraction,
                                               split_seed + d)
            part = splits.get(names[d], "all")
            chosen = {"train": train_idx, "heldout": out_idx,
                      "all": np.arange(len(domains[d]))}[part]
            index.extend((d, int(i)) for i in chosen)
        self._index = index
        self._domain_of_item = torch.tensor([d for d, _ in index], dtype=torch.long)
        self.metainfo = dict(
            domains=names,
            classes=list(classes) if classes is not None else None,
            test_domains=[names[i] for i in self.test_domain_ids],
            splits={names[d]: splits.get(names[d], "all") for d in self.domain_ids},
        )

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> dict:
        d, j = self._index[i]
        dom = self.domains[d]
        return dict(inputs=self._image(dom, j),
                    data_samples=dict(label=int(dom.labels[j]), domain=d))

    def _image(self, dom: Domain, j: int) -> torch.Tensor:
        if self.transform is None:
            return dom.load(j)
        return dom.normalize(self.transform(dom.read(j)))

    def unlabeled_item(self, i: int) -> dict:
        """Item ``i`` without its label (``label=-1``): the label is never read, so unlabeled
        target batches in domain adaptation cannot leak it."""
        d, j = self._index[i]
        return dict(inputs=self._image(self.domains[d], j),
                    data_samples=dict(label=-1, domain=d))

    @property
    def item_domains(self) -> torch.Tensor:
        """Benchmark domain index of every item (used by domain-balanced samplers)."""
        return self._domain_of_item

    @property
    def item_labels(self) -> torch.Tensor:
        """Label of every item, in the view's order, read from the domains' label tensors
        (no image is loaded): what label-based partitions (federated non-IID) need."""
        return torch.tensor([int(self.domains[d].labels[j]) for d, j in self._index],
                            dtype=torch.long)
