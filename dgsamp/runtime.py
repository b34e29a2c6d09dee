"""Process-level CPU settings that change speed, never results.

:func:`keep_freed_memory` tells glibc's allocator to keep freed memory for reuse instead of
handing it back to the kernel. Why: a train step with ``zero_grad(set_to_none=True)`` (torch's
and mmengine's default) allocates every weight gradient anew. glibc serves blocks above its mmap
threshold (dynamic, 128 KiB to 32 MiB) from fresh ``mmap`` and trims the top of its heap after
a free. So each step page-faults and zero-fills tens of MB of gradients before the kernels
write them. On ResNet-18 (224 px, batch 4, one thread, channels-last, SGD) that cost the dense
backward 16 ms of 342 and ssProp's (keep 0.2) 38 ms of 139 (tools/benchmark_step_phases.py,
docs/results/benchmark_sparse_steps_cpu.md). PyTorch's performance tuning guide treats the same
effect by switching the allocator (jemalloc, tcmalloc); this needs no extra library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Serve blocks up to ``mmap_threshold`` bytes (glibc's maximum, 32 MiB, by default) from
    the heap, and trim the heap only when more than ``trim_threshold`` bytes are free at its top.

    The process keeps up to its peak memory instead of returning it between steps, which is
    how training runs anyway. Returns True where the settings were applied, and False where
    the C library is not glibc (macOS, musl, Windows) or refused them; nothing changes then.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))
                and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
