"""Building dgsamp's C++ kernels: one :class:`NativeExtension` per kernel file.

The dither quantizer (:mod:`.dither_native`) and ssProp's sliced backward
(:mod:`.ssprop_native`) are small C++ sources compiled on first use with the compiler PyTorch's
C++ extensions use (``torch.utils.cpp_extension.load_inline``, ninja; cached under
``~/.cache/torch_extensions``, 40-70 s once per machine on a 2-core CPU). Where building fails
(no compiler, no ninja) :meth:`NativeExtension.module` returns None, the reason is kept in
:attr:`NativeExtension.error`, and every caller falls back to its eager path: a missing compiler
costs speed, never a result.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import torch

__all__ = ["NativeExtension", "compile_flags"]


def compile_flags() -> list[str]:
    """-O3, and the widest vector ISA the CPU has (loops like floor, the counts, Philox and the
    channel sums vectorise: Philox's 32x32->64-bit products run 2x faster on AVX-512 than on
    AVX2 here).

    No -ffast-math: NaN must stay NaN. No FMA contraction: δ·(1/Δ) + u rounds as in eager.
    -fno-trapping-math: without it GCC will not vectorise floor (FP exception flags are not
    something any caller reads). -fopenmp: ``at::parallel_for`` is a header template whose
    OpenMP pragmas are compiled into *this* library; without the flag every loop of a kernel
    ran on one thread (torch's own kernels on all of them). The library then needs
    libgomp.so.1, which torch has already loaded (its wheel ships one): the same runtime. The
    flags are part of the build's hash, so a cache shared with a CPU of another ISA rebuilds
    instead of loading code it cannot run.
    """
    flags = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp"]
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512":
        flags += ["-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw"]
    elif capability == "AVX2":
        flags += ["-mavx2", "-mfma"]
    return flags


class NativeExtension:
    """One C++ source built once per process (and cached per machine), or the reason it failed.

    ``name`` must carry the source's version: Python imports one module per name, so a process
    that already loaded an older build of the same name would keep using it.
    """

    def __init__(self, name: str, source: str, functions: list[str]) -> None:
        self.name = name
        self.source = source
        self.functions = list(functions)
        self._lock = threading.Lock()
        #: 'module': the built extension; 'error': why building failed
        self.state: dict[str, Any] = {}

    def module(self) -> Any:
        """The built extension, building it on first use; None if that failed."""
        state = self.state
        if "module" in state or "error" in state:
            return state.get("module")
        with self._lock:
            if "module" not in state and "error" not in state:
                log = logging.getLogger("torch.utils.cpp_extension")
                level = log.level
                log.setLevel(logging.ERROR)  # its import warns 'No CUDA runtime is found' on CPU
                try:
                    from torch.utils.cpp_extension import load_inline

                    state["module"] = load_inline(
                        name=self.name, cpp_sources=self.source, functions=self.functions,
                        extra_cflags=compile_flags(), extra_ldflags=["-fopenmp"], verbose=False)
                except Exception as err:  # noqa: BLE001  (no compiler, no ninja, ...: say why)
                    first = str(err).strip().splitlines()
                    state["error"] = f"{type(err).__name__}: {first[0] if first else ''}"
                finally:
                    log.setLevel(level)
        return state.get("module")

    @property
    def error(self) -> str | None:
        """Why the extension could not be built (None if it was, or was not tried)."""
        return self.state.get("error")
