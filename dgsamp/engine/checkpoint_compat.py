"""Let mmengine 0.10.7 load its own checkpoints under torch >= 2.6 without `weights_only=False`.

torch 2.6 made `torch.load(weights_only=True)` the default. mmengine's checkpoints carry its
message hub (`HistoryBuffer` objects holding numpy arrays) and numpy scalars in `meta`, so every
`--resume` and `load_from` fails with "Weights only load failed". Turning `weights_only` off
would unpickle arbitrary code from any file; instead we allow-list exactly the classes
mmengine's own checkpoints contain, and make mmengine's HistoryBuffer pickle its data without
the function references it otherwise carries (see `_history_buffer_state`).
Third-party checkpoints with other classes still fail
loudly, as they should.
"""

from __future__ import annotations

import _codecs
from collections import Counter

import numpy as np
import torch


def _numpy_globals() -> list:
    out: list = [np.ndarray, np.dtype]
    for mod_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            mod = __import__(mod_name, fromlist=["_reconstruct", "scalar"])
        except ImportError:
            continue
        out += [mod._reconstruct, mod.scalar]
        break
    # dtype classes (numpy >= 1.25 pickles dtypes by class, e.g. numpy.dtypes.Float64DType)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return out


def _history_buffer_state(self) -> dict:
    # mmengine pickles HistoryBuffer's class-level statistics *functions* with every instance;
    # they become `getattr(HistoryBuffer, 'min')` in the file, and allow-listing `getattr` would
    # make weights_only useless. Save the data only: the methods are class-level and come back
    # with the class (custom ones are re-registered when their module is imported).
    state = dict(self.__dict__)
    state.pop("statistics_methods", None)
    return state


def _history_buffer_setstate(self, state: dict) -> None:
    state = dict(state)
    state.pop("statistics_methods", None)
    self._set_default_statistics()
    self.__dict__.update(state)


def allow_mmengine_checkpoints() -> None:
    """Register mmengine's checkpoint classes as safe for `torch.load(weights_only=True)`."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4: weights_only is off by default, nothing to do
        return
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer

    HistoryBuffer.__getstate__ = _history_buffer_state
    HistoryBuffer.__setstate__ = _history_buffer_setstate
    add([HistoryBuffer, ConfigDict, Counter, _codecs.encode, *_numpy_globals()])


allow_mmengine_checkpoints()
