"""Put sparse-backward layers into any ``nn.Module`` in place, and take them out again.

Patching swaps a selected module's *class* to a subclass (``SsPropConv2d``, ``DitherLinear``, ...)
that only overrides how the output is computed (``Conv2d._conv_forward`` / ``Linear.forward``)
and adds a few plain attributes (``sparse_options``, the frozen settings of :func:`layer_options`,
and what the last backward measured). Parameters and buffers are the same
objects under the same names, so ``state_dict()`` keys are unchanged, checkpoints load into patched
and unpatched models alike, optimizers keep working, and forward outputs are identical.
:func:`unpatch` restores the original class and removes the attributes.

Selection: ``include``/``exclude`` are patterns on ``named_modules()`` names. A pattern selects a
module and its whole subtree; it is an fnmatch pattern (``'backbone'``, ``'layer[34]'``,
``'*.fc?'``) matched against the full name or any dotted tail of it, so ``'backbone'`` also
selects ``student.backbone`` and ``teacher.backbone`` inside a mean-teacher wrapper; or, prefixed
``'re:'``, a regular expression searched in the name. ``types`` picks
among the supported layer types (``'Conv2d'``, ``'Linear'``; default both).

Output layers stay dense by default (``dense_output=True``): the layer that produces the logits,
boxes or segmentation scores receives the loss gradient itself and has few output channels (10
classes: ssProp at keep 0.2 would update 2 of them per step; dither would quantize the loss
gradient to a few ±Δ values), while its backward costs next to nothing. Output layers are found
by convention (:func:`output_layers`): timm's ``get_classifier()`` (every timm model and dgsamp's
classifiers) and the prediction layers of mmdet/mmseg heads by name (``fc_cls``, ``conv_seg``...).

Supported: ``nn.Conv2d`` and ``nn.Linear`` and their subclasses that keep the stock forward.
Skipped, with one warning listing them: other convolutions (1d/3d/transposed), subclasses with a
custom forward (e.g. timm's ``Conv2dSame``), lazy layers, and the ``out_proj`` of
``nn.MultiheadAttention`` (whose weight is used without calling the module).

Patched classes are made on the fly for subclasses; they are not importable by name, so save
``state_dict()`` rather than pickling a patched model (or unpatch first).

Over 350 lines for a reason: selection, patch/unpatch, set_sparsity and sparse_stats are the
one mechanism that owns the patched-layer attributes; nothing else may touch them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .dither import DEFAULT_SCALE, DitherConv2d, DitherLinear, DitherOptions
from .ssprop import SsPropConv2d, SsPropLinear, SsPropOptions

LayerOptions = SsPropOptions | DitherOptions

__all__ = [
    "OUTPUT_LAYER_NAMES",
    "SPARSE_METHODS",
    "LayerOptions",
    "layer_options",
    "output_layers",
    "patch",
    "patched_modules",
    "set_sparsity",
    "sparse_backward",
    "sparse_stats",
    "unpatch",
]

SPARSE_METHODS = ("ssprop", "dither")
DEFAULT_KEEP = 0.5
_BASES = {
    ("ssprop", nn.Conv2d): SsPropConv2d,
    ("ssprop", nn.Linear): SsPropLinear,
    ("dither", nn.Conv2d): DitherConv2d,
    ("dither", nn.Linear): DitherLinear,
}
_TYPE_NAMES = {"conv2d": nn.Conv2d, "linear": nn.Linear}
_DYNAMIC: dict[tuple[str, type], type] = {}
_MAX_LISTED = 40
# Prediction layers of mmdet / mmseg heads (last name component): BBoxHead, AnchorHead/FCOS,
# RPNHead, RetinaHead, FCNMaskHead, mmseg's BaseDecodeHead.
OUTPUT_LAYER_NAMES = ("fc_cls", "fc_reg", "conv_cls", "conv_reg", "conv_centerness", "rpn_cls",
                      "rpn_reg", "retina_cls", "retina_reg", "conv_logits", "conv_seg")


def _truncated(names: Sequence[str], limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown


def _as_list(patterns: str | Iterable[str] | None) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns]
    out = list(patterns)
    for p in out:
        if not isinstance(p, str):
            raise ValueError(f"module-name patterns must be strings, got {p!r}")
    return out


def _matcher(pattern: str):
    if pattern.startswith("re:"):
        try:
            rx = re.compile(pattern[3:])
        except re.error as e:
            raise ValueError(f"bad regular expression in pattern {pattern!r}: {e}") from None
        return lambda name: rx.search(name) is not None
    return lambda name: any(fnmatch.fnmatchcase(tail, pattern) for tail in _dotted_tails(name))


def _dotted_tails(name: str) -> list[str]:
    """'student.backbone.layer1' -> the name itself, 'backbone.layer1', 'layer1'."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


def _in_subtree(name: str, matched_roots: set[str]) -> bool:
    """True if ``name`` equals a matched module name or lies below one."""
    if "" in matched_roots:
        return True
    parts = name.split(".")
    return any(".".join(parts[:i]) in matched_roots for i in range(1, len(parts) + 1))


def _resolve_types(types: Any) -> tuple[type, ...]:
    if types is None:
        return (nn.Conv2d, nn.Linear)
    if isinstance(types, (str, type)):
        types = [types]
    out = []
    for t in types:
        if isinstance(t, str) and t.lower() in _TYPE_NAMES:
            out.append(_TYPE_NAMES[t.lower()])
        elif t in (nn.Conv2d, nn.Linear):
            out.append(t)
        else:
            raise ValueError(f"unsupported layer type {t!r}; sparse backward handles "
                             f"'Conv2d' and 'Linear' (and their stock-forward subclasses)")
    return tuple(out)


def _base_of(module: nn.Module) -> type | None:
    """nn.Conv2d / nn.Linear if ``module`` can be patched, else None."""
    if isinstance(module, nn.modules.lazy.LazyModuleMixin):
        return None
    cls = getattr(module, "_sparse_orig_class", type(module))
    if issubclass(cls, nn.Conv2d):
        if (cls.forward is nn.Conv2d.forward and cls._conv_forward is nn.Conv2d._conv_forward):
            return nn.Conv2d
        return None
    if issubclass(cls, nn.Linear):
        return nn.Linear if cls.forward is nn.Linear.forward else None
    return None


def _candidate(module: nn.Module, types: tuple[type, ...]) -> bool:
    """Layers we would like to patch: conv-like of any kind and linear-like, within ``types``."""
    is_conv = isinstance(module, nn.modules.conv._ConvNd)
    is_lin = isinstance(module, nn.Linear)
    return (is_conv and nn.Conv2d in types) or (is_lin and nn.Linear in types)


def _patched_class(method: str, orig: type, base: type) -> type:
    sparse_cls = _BASES[(method, base)]
    if orig is base:
        return sparse_cls
    key = (method, orig)
    if key not in _DYNAMIC:
        name = f"{sparse_cls.__name__[: -len(base.__name__)]}{orig.__name__}"
        _DYNAMIC[key] = type(name, (sparse_cls, orig), {"__module__": __name__})
    return _DYNAMIC[key]


def output_layers(model: nn.Module) -> list[str]:
    """Names of ``model``'s prediction layers (and their submodules): what any submodule's
    ``get_classifier()`` returns (timm's convention), and modules named like an mmdet/mmseg
    prediction layer (:data:`OUTPUT_LAYER_NAMES`)."""
    heads: set[int] = set()
    for mod in model.modules():
        get = getattr(mod, "get_classifier", None)
        if not callable(get):
            continue
        try:
            found = get()
        except (TypeError, NotImplementedError, AttributeError):
            continue
        for head in found if isinstance(found, (tuple, list)) else (found,):
            if isinstance(head, nn.Module):
                heads |= {id(m) for m in head.modules()}
    return [n for n, m in model.named_modules()
            if n and (id(m) in heads or n.rsplit(".", 1)[-1] in OUTPUT_LAYER_NAMES)]


def _select(model: nn.Module, include: list[str], exclude: list[str],
            types: tuple[type, ...], dense_output: bool = True,
            ) -> tuple[list[tuple[str, nn.Module, type]], list[str]]:
    names = [n for n, _ in model.named_modules()]
    if include:
        roots: set[str] = set()
        for pat in include:
            m = _matcher(pat)
            hit = {n for n in names if m(n)}
            if not hit:
                shown = _truncated([n for n in names if n])
                raise ValueError(f"include pattern {pat!r} matches no module of the model; "
                                 f"module names are: {shown}")
            roots |= hit
    else:
        roots = {""}
    ex_roots: set[str] = set()
    for pat in exclude:
        m = _matcher(pat)
        ex_roots |= {n for n in names if m(n)}
    if dense_output:
        ex_roots |= set(output_layers(model))
    mha_children = {
        f"{n}.{c}" if n else c
        for n, mod in model.named_modules() if isinstance(mod, nn.MultiheadAttention)
        for c, _ in mod.named_children()
    }
    chosen, skipped = [], []
    for name, mod in model.named_modules():
        if not _in_subtree(name, roots) or (ex_roots and _in_subtree(name, ex_roots)):
            continue
        if not _candidate(mod, types):
            continue
        base = _base_of(mod)
        if base is None or name in mha_children:
            skipped.append(f"{name} ({type(mod).__name__})")
            continue
        chosen.append((name, mod, base))
    return chosen, skipped


def layer_options(method: str = "ssprop", keep: float | None = None,
                  scale: float | None = None, **options: Any) -> LayerOptions:
    """The validated per-layer options of ``method``: where every sparse-backward setting that
    comes from a user or a config is checked (``patch`` and SparseBackwardHook call it).

    ``method='ssprop'`` takes ``keep`` (default 0.5) and the fields of :class:`SsPropOptions`;
    ``method='dither'`` takes ``scale`` (default 8) and the fields of :class:`DitherOptions`.
    """
    if method not in SPARSE_METHODS:
        raise ValueError(f"method must be one of {SPARSE_METHODS}, got {method!r}")
    if method == "ssprop":
        if scale is not None:
            raise ValueError("scale is the dither knob; ssprop takes keep")
        cls, kw = SsPropOptions, {"keep": DEFAULT_KEEP if keep is None else keep}
    else:
        if keep is not None:
            raise ValueError("keep is the ssprop knob; dither takes scale (s > 0)")
        cls, kw = DitherOptions, {"scale": DEFAULT_SCALE if scale is None else scale}
    try:
        return cls(**kw, **options)
    except TypeError as e:
        raise ValueError(f"bad option for method {method!r}: {e}") from None


def patch(
    model: nn.Module,
    method: str | LayerOptions = "ssprop",
    keep: float | None = None,
    scale: float | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    types: Any = None,
    dense_output: bool = True,
    **options: Any,
) -> list[str]:
    """Make the selected Conv2d/Linear layers of ``model`` sparse-backward, in place.

    ``method`` is 'ssprop' or 'dither' with its settings given as :func:`layer_options` takes
    them (``keep`` or ``scale`` and ``**options``), or an already validated
    :class:`SsPropOptions` / :class:`DitherOptions` (then nothing else about the method).
    ``dense_output`` (default True) leaves the output layers (:func:`output_layers`) dense.
    All patched layers share one frozen options object. Returns the names of the patched
    modules. Re-patching a layer with the same method replaces its settings.
    """
    if isinstance(method, (SsPropOptions, DitherOptions)):
        if keep is not None or scale is not None or options:
            raise ValueError("patch(model, options): the options object holds every setting; "
                             "pass no keep/scale/options beside it")
        opts = method
    else:
        opts = layer_options(method, keep, scale, **options)
    method = opts.method
    chosen, skipped = _select(model, _as_list(include), _as_list(exclude), _resolve_types(types),
                              dense_output=bool(dense_output))
    if skipped:
        warnings.warn(f"sparse_backward({method}): skipped {len(skipped)} layer(s) of types it "
                      f"cannot handle: {_truncated(skipped)}", UserWarning, stacklevel=2)
    if not chosen:
        hint = (" (output layers stay dense unless dense_output=False)"
                if dense_output and output_layers(model) else "")
        raise ValueError(f"sparse_backward({method}): no Conv2d/Linear layer selected "
                         f"(include={include!r}, exclude={exclude!r}, types={types!r}){hint}")
    for name, mod, _ in chosen:
        if "_sparse_orig_class" in mod.__dict__ and mod.sparse_method != method:
            raise ValueError(f"module {name!r} is already patched with "
                             f"{mod.sparse_method!r}; unpatch it first")
    names = []
    for name, mod, base in chosen:
        orig = mod.__dict__.get("_sparse_orig_class")
        if orig is None:
            orig = type(mod)
            mod.__class__ = _patched_class(method, orig, base)
            mod._sparse_orig_class = orig
        mod._sparse_init(opts)
        names.append(name)
    return names


def unpatch(model: nn.Module) -> list[str]:
    """Restore every patched layer of ``model`` to its original class. Returns their names."""
    names = []
    for name, mod in model.named_modules():
        orig = mod.__dict__.get("_sparse_orig_class")
        if orig is None:
            continue
        attrs = type(mod)._sparse_attrs
        mod.__class__ = orig
        for a in (*attrs, "_sparse_orig_class"):
            mod.__dict__.pop(a, None)
        names.append(name)
    return names


def patched_modules(model: nn.Module) -> dict[str, nn.Module]:
    """name → module for every patched layer of ``model``."""
    return {n: m for n, m in model.named_modules() if "_sparse_orig_class" in m.__dict__}


def set_sparsity(model: nn.Module, keep: float | None = None, scale: float | None = None,
                 dither: bool | None = None) -> int:
    """Set the keep fraction of every ssProp layer and/or the scale and on/off (``dither``) of
    every dithered layer — what schedules call. Returns the number of layers changed.

    Layers patched together share one options object; each distinct object is replaced (and
    validated) once, so a value is checked once however many layers it reaches.
    """
    changes = {"ssprop": {"keep": keep},
               "dither": {"scale": scale, "enabled": dither}}
    changes = {m: {k: v for k, v in c.items() if v is not None} for m, c in changes.items()}
    replaced: dict[int, LayerOptions] = {}
    changed = 0
    for m in patched_modules(model).values():
        kw = changes[m.sparse_method]
        if not kw:
            continue
        old = m.sparse_options
        if id(old) not in replaced:
            replaced[id(old)] = dataclasses.replace(old, **kw)
        m.sparse_options = replaced[id(old)]
        changed += 1
    return changed


def sparse_stats(model: nn.Module) -> dict[str, Any]:
    """Current settings and measured sparsity of the patched layers.

    ``keep``: mean configured keep (ssprop layers); ``kept_fraction``: mean measured k/C_out of
    the last backward (ssprop); ``grad_density``: nnz/numel of the last dithered δ̃ summed over
    dither layers; ``grad_sparsity``: 1 − the fraction of output-gradient entries the backward
    really used, over all measured layers (ssprop: 1 − kept_fraction; dither: 1 − density).
    Values are None where nothing has been measured.
    """
    mods = list(patched_modules(model).values())
    ss = [m for m in mods if m.sparse_method == "ssprop"]
    dd = [m for m in mods if m.sparse_method == "dither"]
    keep = sum(m.keep for m in ss) / len(ss) if ss else None
    kf = [m.kept_fraction for m in ss if m.kept_fraction is not None]
    kept_fraction = sum(kf) / len(kf) if kf else None
    measured = [m for m in dd if m.enabled and m._grad_nnz is not None and m._grad_numel]
    if measured:  # one host sync for all layers
        dev = torch.as_tensor(measured[0]._grad_nnz).device
        nnzs = torch.stack([torch.as_tensor(m._grad_nnz, device=dev) for m in measured])
        nnzs = nnzs.double().tolist()
    else:
        nnzs = []
    numels = [m._grad_numel for m in measured]
    density = sum(nnzs) / sum(numels) if measured else None
    used = [1.0 - f for f in kf] + [1.0 - a / b for a, b in zip(nnzs, numels, strict=True)]
    return {
        "layers": len(mods),
        "ssprop_layers": len(ss),
        "dither_layers": len(dd),
        "keep": keep,
        "kept_fraction": kept_fraction,
        "grad_density": density,
        "grad_sparsity": sum(used) / len(used) if used else None,
    }


@contextlib.contextmanager
def sparse_backward(
    model: nn.Module,
    method: str | LayerOptions = "ssprop",
    keep: float | None = None,
    scale: float | None = None,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    types: Any = None,
    dense_output: bool = True,
    **options: Any,
) -> Iterator[list[str]]:
    """``with sparse_backward(model, method='ssprop', keep=0.5): loss.backward()``.

    Patches on entry, unpatches on exit (also on error); yields the patched names. Layers that
    were already patched before entering stay patched afterwards.
    """
    before = set(patched_modules(model))
    names = patch(model, method, keep=keep, scale=scale, include=include, exclude=exclude,
                  types=types, dense_output=dense_output, **options)
    try:
        yield names
    finally:
        mods = dict(model.named_modules())
        for n in names:
            if n not in before:
                unpatch(mods[n])
