"""Training-time augmentation for the classification benchmarks, built from mm-style dicts.

A config names torchvision's own transforms (``torchvision.transforms.v2``), as mmpretrain's
pipelines name its own, e.g. DomainBed's augmentation for 32 px letters (no flip: a mirrored
letter is another symbol)::

    transforms = [dict(type='RandomResizedCrop', size=32, scale=(0.7, 1.0), antialias=True),
                  dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3,
                       hue=0.3),
                  dict(type='RandomGrayscale', p=0.1)]

They run on the image *before* normalisation (a float tensor in [0, 1], C x H x W), which is
what ColorJitter assumes; :class:`~dgsamp.datasets.multidomain.Domain` separates reading from
normalising for that reason. The random draws come from torch's global generator, which
mmengine seeds from ``randomness.seed``, so one trial seed gives one sequence of augmentations
(with ``num_workers=0``, the embedded loaders' default).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

Transform = Callable[[torch.Tensor], torch.Tensor]


def _transform_names() -> list[str]:
    return sorted(n for n in dir(v2) if n[:1].isupper() and isinstance(getattr(v2, n), type)
                  and issubclass(getattr(v2, n), v2.Transform))


def build_transforms(specs: Sequence[dict] | None) -> Transform | None:
    """A ``v2.Compose`` of ``specs`` (dicts with ``type`` = a torchvision v2 transform name and
    its keyword arguments), or None for no augmentation. Raises ValueError naming the spec and
    the fix for an unknown type or a bad argument, before any data is loaded."""
    if not specs:
        return None
    if isinstance(specs, dict):
        raise ValueError("transforms must be a list of dicts, got one dict. Fix: wrap it in a "
                         "list, e.g. transforms=[dict(type='RandomGrayscale', p=0.1)].")
    steps = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or "type" not in spec:
            raise ValueError(f"transforms[{i}] = {spec!r}: each entry must be a dict with a "
                             f"'type' key naming a torchvision.transforms.v2 transform.")
        kwargs = dict(spec)
        name = kwargs.pop("type")
        names = _transform_names()
        if name not in names:
            close = difflib.get_close_matches(str(name), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"transforms[{i}]: unknown transform {name!r}.{hint} Fix: use a "
                             f"class of torchvision.transforms.v2, e.g. ColorJitter, "
                             f"RandomResizedCrop, RandomGrayscale.")
        try:
            steps.append(getattr(v2, name)(**kwargs))
        except (TypeError, ValueError) as e:
            raise ValueError(f"transforms[{i}] ({name}): {e}. Fix: pass the arguments "
                             f"torchvision.transforms.v2.{name} accepts.") from e
    return v2.Compose(steps)
