"""Federated DG training on Flower, driven by the ordinary mm-style configs (docs/federated.md).

`partition` (who holds which items, the client data set), `client` (one round of local
training with mmengine's Runner; FedProx and FedBN rules), `strategies` (Flower's strategies by
name, a grid that counts traffic), `server_gradsamp` (GradSamp over rounds), `server` (the round
loop, evaluation, checkpoints), `report` (cost.json, results.json), `app` (Flower's ServerApp
and ClientApp), `launch` (config loading, the simulation engine). Flower is imported only by
`app`, `launch` and `strategies`' functions, so `import dgsamp` does not need it.
"""

from .partition import FederatedClientDataset, partition_indices
from .settings import FLSettings

__all__ = ["FLSettings", "FederatedClientDataset", "partition_indices"]
