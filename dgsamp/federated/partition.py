"""Which training items each federated client holds.

``clients='domains'``: one client per training domain (federated DG: the held-out domains are no
client's). ``clients=N``: the training items split into N clients, IID (a seeded permutation cut
into N near-equal parts) or non-IID by label (Dirichlet-α: for each class, the class's items are
dealt to the clients in proportions drawn from Dir(α); small α, few classes per client).

Only the *training* part of a benchmark is partitioned (``part='train'``: the test domains are
not in it), and the Dirichlet split reads labels of those items only, from the domains' label
tensors (images are not loaded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset


def item_domains_and_labels(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Benchmark domain index and label of every item of a `DomainSplitDataset` view."""
    return (dataset.item_domains.numpy().astype(np.int64),
            dataset.item_labels.numpy().astype(np.int64))


def num_clients_of(clients: str | int, dataset) -> int:
    """How many clients ``clients`` makes of ``dataset`` (its training domains for 'domains')."""
    return len(dataset.domain_ids) if clients == "domains" else int(clients)


def partition_indices(domains: np.ndarray, labels: np.ndarray, clients: str | int,
                      partition: str = "iid", alpha: float = 0.5, seed: int = 0
                      ) -> list[np.ndarray]:
    """Item indices of every client (sorted), from the items' domains and labels.

    Every item goes to exactly one client. A client left without items is an error (the fix
    is fewer clients or a larger α).
    """
    n = len(domains)
    if clients == "domains":
        parts = [np.flatnonzero(domains == d) for d in np.unique(domains)]
    else:
        k = int(clients)
        if k > n:
            raise ValueError(f"fl.clients={k} but the training part has only {n} items.")
        rng = np.random.RandomState(seed)
        if partition == "iid":
            parts = np.array_split(rng.permutation(n), k)
        else:
            owner = np.empty(n, dtype=np.int64)
            for c in np.unique(labels):
                idx = rng.permutation(np.flatnonzero(labels == c))
                cuts = (np.cumsum(rng.dirichlet([alpha] * k))[:-1] * len(idx)).astype(int)
                for client, chunk in enumerate(np.split(idx, cuts)):
                    owner[chunk] = client
            parts = [np.flatnonzero(owner == c) for c in range(k)]
    empty = [i for i, p in enumerate(parts) if len(p) == 0]
    if empty:
        raise ValueError(f"Clients {empty} get no training items ({partition} split of {n} "
                         f"items into {len(parts)} clients). Fix: fewer clients, or a larger "
                         "fl.alpha for the Dirichlet split.")
    return [np.sort(p) for p in parts]


@DATASETS.register_module()
class FederatedClientDataset(Dataset):
    """One client's share of a training data set (what its data loader sees).

    Args:
        dataset: the config's training data set (a dict to build, or a built view).
        client: this client's index, 0-based.
        clients, partition, alpha, seed: as in `partition_indices` (``fl`` settings).
    """

    def __init__(self, dataset: dict | Dataset, client: int, clients: str | int = "domains",
                 partition: str = "iid", alpha: float = 0.5, seed: int = 0):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        num = num_clients_of(clients, self.dataset)
        if not 0 <= client < num:
            raise ValueError(client_count_error(client, num, clients, self.dataset))
        parts = partition_indices(*item_domains_and_labels(self.dataset), clients, partition,
                                  alpha, seed)
        self.indices = parts[client].tolist()
        self.client = client
        self.metainfo = dict(self.dataset.metainfo, client=client, num_clients=num)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i]]

    @property
    def item_domains(self) -> torch.Tensor:
        return self.dataset.item_domains[self.indices]


def client_count_error(client: int, num: int, clients: str | int, dataset) -> str:
    """The message for a client index (SuperNode partition-id) the federation does not have."""
    if clients == "domains":
        names: Sequence[str] = [dataset.metainfo["domains"][d] for d in dataset.domain_ids]
        return (f"Client {client} requested, but clients='domains' gives {num} clients (the "
                f"training domains {list(names)}). Fix: run {num} clients (SuperNodes with "
                f"partition-id 0..{num - 1}), or set fl.clients=N to split the domains' items "
                "into N clients.")
    return (f"Client {client} requested, but fl.clients={clients}: use partition-id "
            f"0..{num - 1}.")
