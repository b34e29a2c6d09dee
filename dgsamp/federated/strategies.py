"""Flower's strategies by name, FedBN as a client rule, and a grid that counts what it carries.

Every strategy is Flower's own (`flwr.serverapp.strategy`: FedAvg, FedProx, FedAdam, ...).
FedBN has no Flower strategy: on the server it is FedAvg; on the clients the norm layers stay
local (`dgsamp.federated.client`). The averaged norm layers the server still receives serve
only the evaluation of the global model (the held-out domain has no client of its own).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable

CLIENT_RULES = {"FedBN": "FedAvg"}  # name -> the Flower strategy the server runs


def flower_strategies() -> dict[str, type]:
    """Every concrete message-based strategy `flwr.serverapp.strategy` exports."""
    from flwr.serverapp import strategy as flower

    return {name: obj for name, obj in vars(flower).items()
            if inspect.isclass(obj) and issubclass(obj, flower.Strategy)
            and obj is not flower.Strategy and not inspect.isabstract(obj)}


def available_strategies() -> list[str]:
    return sorted(set(flower_strategies()) | set(CLIENT_RULES))


def check_strategy_name(name: str) -> None:
    if name not in available_strategies():
        raise ValueError(f"fl.strategy type={name!r} is not a strategy. Available: "
                         f"{available_strategies()} (Flower's flwr.serverapp.strategy, plus "
                         "FedBN).")


def build_strategy(spec: dict, num_clients: int, fraction_train: float):
    """(Flower strategy, keep_norm_local) from ``fl.strategy``.

    Sampling: ``fraction_train`` of the connected clients, at least one; all ``num_clients``
    must be connected first. Federated (client-side) evaluation is off: the server evaluates
    the global model on every domain itself.
    """
    spec = dict(spec)
    name = spec.pop("type")
    check_strategy_name(name)
    cls = flower_strategies()[CLIENT_RULES.get(name, name)]
    kwargs = dict(fraction_train=fraction_train, fraction_evaluate=0.0, min_train_nodes=1,
                  min_evaluate_nodes=0, min_available_nodes=num_clients)
    accepted = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    kwargs.update(spec)
    try:
        return cls(**kwargs), name == "FedBN"
    except TypeError as e:
        raise ValueError(f"fl.strategy {name}: bad arguments {spec}: {e}. Its arguments: "
                         f"{list(accepted)}.") from None


def message_bytes(message) -> int:
    """Bytes of a message's records (arrays, metrics, configs) as Flower counts them."""
    if message.has_error():
        return 0
    return sum(record.count_bytes() for record in message.content.values())


class CountingGrid:
    """A Flower grid that counts the messages and bytes it sends and receives.

    Everything else is the wrapped grid's (simulation or deployment); strategies see no
    difference. ``sent``/``received`` are totals; `take` returns and resets a round's counts.
    """

    def __init__(self, grid):
        self._grid = grid
        self._lock = threading.Lock()
        self.messages_sent = self.messages_received = 0
        self.bytes_sent = self.bytes_received = 0

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def get_node_ids(self) -> Iterable[int]:
        return sorted(self._grid.get_node_ids())  # a seeded sample is then reproducible

    def send_and_receive(self, messages: Iterable, *, timeout: float | None = None):
        messages = list(messages)
        with self._lock:
            self.messages_sent += len(messages)
            self.bytes_sent += sum(message_bytes(m) for m in messages)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        with self._lock:
            self.messages_received += len(replies)
            self.bytes_received += sum(message_bytes(m) for m in replies)
        return replies

    def take(self) -> dict[str, int]:
        """The counts since the last call, then zero."""
        with self._lock:
            out = dict(messages_sent=self.messages_sent, messages_received=self.messages_received,
                       bytes_sent=self.bytes_sent, bytes_received=self.bytes_received)
            self.messages_sent = self.messages_received = 0
            self.bytes_sent = self.bytes_received = 0
        return out
