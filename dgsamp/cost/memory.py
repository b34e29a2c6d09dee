"""Peak memory of a piece of work (a backward, a train step), on CUDA and on CPU.

On CUDA the allocator knows: ``max_memory_allocated`` minus what was allocated before. On CPU
nothing comparable exists (``tracemalloc`` does not see PyTorch's allocator, so it would report
~0): :class:`LiveTensorBytes` tracks the storages of the tensors created while it is active,
through a ``TorchDispatchMode``, and records the peak of those still alive. Tensors that existed
before are not counted, so the number is the work's *extra* memory, as on CUDA.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["LiveTensorBytes", "memory_source", "peak_bytes"]


def _sparse_parts(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if t.layout == torch.sparse_coo:
        return (t._indices(), t._values())
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        return (t.crow_indices(), t.col_indices(), t.values())
    return (t.ccol_indices(), t.row_indices(), t.values())  # csc / bsc


class _TensorRef:
    """weakref to a tensor with StorageWeakRef's ``expired()`` interface."""

    def __init__(self, t: torch.Tensor) -> None:
        self.ref = weakref.ref(t)

    def expired(self) -> bool:
        return self.ref() is None


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storages created while active and still alive (``peak``)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[Any, int]] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            if t.layout == torch.strided:
                st = t.untyped_storage()
                key, ref, nbytes = st._cdata, StorageWeakRef(st), st.nbytes()
            else:  # sparse: its index/value tensors, alive as long as the sparse tensor is
                key, ref = id(t), _TensorRef(t)
                nbytes = sum(p.numel() * p.element_size() for p in _sparse_parts(t))
            if key not in self.live:
                self.live[key] = (ref, nbytes)
                self.current += nbytes
        for k in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(k)[1]
        self.peak = max(self.peak, self.current)
        return out


def peak_bytes(work: Callable[[], Any], device: str | torch.device = "cpu") -> int:
    """Extra peak memory (bytes) while ``work()`` runs on ``device``."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        work()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    with LiveTensorBytes() as tracker:
        work()
    return int(tracker.peak)


def memory_source(device: str | torch.device = "cpu") -> str:
    """How :func:`peak_bytes` measures on ``device`` (for reports)."""
    if torch.device(device).type == "cuda":
        return "torch.cuda.max_memory_allocated during the work, minus the memory before it"
    return ("peak live tensor-storage bytes created during the work (TorchDispatchMode "
            "tracker; tracemalloc cannot see torch's allocator)")
