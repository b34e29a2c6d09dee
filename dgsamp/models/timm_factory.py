"""Build timm models from configs with errors that say what to fix; never download weights."""

from __future__ import annotations

import difflib
import functools
from pathlib import Path

import timm
from torch import nn


def create_timm_model(model_name: str, pretrained: str | None = None, **kwargs) -> nn.Module:
    """`timm.create_model` with a local-file-only `pretrained`.

    Args:
        model_name: any name from `timm.list_models()` (plus dgsamp's `digits_cnn`).
        pretrained: path to a local weights file (.pth/.bin/.safetensors) or None. dgsamp never
            downloads; a missing file is an error naming it.
        kwargs: passed to `timm.create_model` (num_classes, in_chans, features_only, ...).
            ``norm_layer`` may be a timm norm name (``'groupnorm1'``) or, so that a config can
            set its arguments, a dict: ``dict(type='groupnorm', num_groups=8)``.
    """
    if isinstance(kwargs.get("norm_layer"), dict):
        kwargs["norm_layer"] = _norm_layer(kwargs["norm_layer"])
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Close matches: {close}." if close else ""
        raise ValueError(f"Unknown timm model name {model_name!r}.{hint} Fix: set model_name to "
                         f"one of timm.list_models() (e.g. 'resnet18', 'vit_tiny_patch16_224', "
                         f"'digits_cnn').")
    if pretrained in (True, "True"):
        raise ValueError("pretrained=True would download weights, which dgsamp never does. "
                         "Fix: give the path of a local weights file, or pretrained=None.")
    if pretrained:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Pretrained weights file {str(path)!r} does not exist. Fix: "
                                    f"put the file there or set pretrained=None.")
        return timm.create_model(model_name, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    return timm.create_model(model_name, pretrained=False, **kwargs)


def _norm_layer(spec: dict) -> functools.partial:
    """``dict(type=<timm norm name>, **kwargs)`` as the partial timm models call per width."""
    from timm.layers.create_norm import _NORM_MAP, get_norm_layer

    spec = dict(spec)
    name = str(spec.pop("type", ""))
    if name.replace("_", "").lower() not in _NORM_MAP:
        raise ValueError(f"Unknown norm_layer type {name!r}. Fix: one of {sorted(_NORM_MAP)}, "
                         f"e.g. norm_layer=dict(type='groupnorm', num_groups=8).")
    return functools.partial(get_norm_layer(name), **spec)
