"""Method presets: the config fragments under ``configs/_base_/methods/``, composed into any config.

A preset is one small config file (``configs/_base_/methods/ssprop_paper.py``) whose first
comment line describes it. A user turns one on in three ways, all reading the same file:

- inherit it: ``_base_ = ['../dg/erm_rotated_digits.py', '../_base_/methods/ssprop_paper.py']``
  (one preset per config this way: mmengine refuses two ``_base_`` files that define the same
  key, and every preset defines ``custom_hooks``);
- on the command line: ``tools/train.py CONFIG --methods gradsamp ssprop-warmup cost``
  (``--methods list`` prints the names with their descriptions);
- from Python, composing several presets into a loaded config (the studies do this)::

      from mmengine.config import Config
      from dgsamp.engine.presets import apply_methods, list_methods

      list_methods()   # {'cost': 'CostHook: count FLOPs, ...', 'dither': ..., ...}
      cfg = apply_methods(Config.fromfile('configs/dg/erm_rotated_digits.py'),
                          ['gradsamp-every4', 'ssprop-paper', 'cost'])

API:

- ``list_methods(methods_dir=None) -> dict[str, str]``: preset name -> one-line description,
  sorted by name; aliases (``gradsamp``, ``ssprop``) are listed as ``"alias of <name>"``.
- ``apply_methods(cfg, names, methods_dir=None) -> Config``: a new Config (``cfg`` is left as
  it is) with the presets applied in the order given. Names are written with ``-`` or ``_``
  (``ssprop-warmup`` = ``ssprop_warmup``, the file stem). An empty ``names`` returns a copy.
- ``method_path(name, methods_dir=None) -> str``: the fragment file of a name.

An unknown name raises ValueError listing the known ones. Composition rules (what a multi-file
``_base_`` cannot do): ``custom_hooks`` lists are concatenated in order (a hook that is already
there with the same settings is not added twice; the same hook type with other settings raises,
since a model runs one GradSamp and one sparse backward); ``custom_imports`` are united; any other
key is merged into the config as ``--cfg-options`` would (dicts recursively, so a preset's
``train_cfg = dict(type=...)`` changes the loop type and keeps ``max_epochs``); two presets that
set the same key to different values raise.
"""

from __future__ import annotations

import copy
import os.path as osp
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmengine.config import Config

METHODS_DIR = str(Path(__file__).resolve().parents[2] / "configs" / "_base_" / "methods")
ALIASES = {"gradsamp": "gradsamp-every4", "ssprop": "ssprop-paper"}


def _name(stem: str) -> str:
    return stem.replace("_", "-")


def _description(path: str) -> str:
    with open(path) as fh:
        for line in fh:
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return ""


def _presets(methods_dir: str | None) -> dict[str, str]:
    """name -> file of every preset in ``methods_dir``."""
    root = methods_dir or METHODS_DIR
    if not osp.isdir(root):
        raise FileNotFoundError(f"Method presets folder {root!r} does not exist. Fix: run from a "
                                f"dgsamp checkout (the presets live in configs/_base_/methods/).")
    return {_name(p.stem): str(p) for p in sorted(Path(root).glob("*.py"))
            if not p.stem.startswith("_")}


def list_methods(methods_dir: str | None = None) -> dict[str, str]:
    """Preset name -> its one-line description (aliases included)."""
    presets = _presets(methods_dir)
    out = {name: _description(path) for name, path in presets.items()}
    out.update({alias: f"alias of {target}" for alias, target in ALIASES.items()
                if target in presets})
    return dict(sorted(out.items()))


def method_path(name: str, methods_dir: str | None = None) -> str:
    """The fragment file of preset ``name``; ValueError naming the known presets otherwise."""
    presets = _presets(methods_dir)
    key = _name(name)
    key = ALIASES.get(key, key)
    if key not in presets:
        known = ", ".join(list_methods(methods_dir))
        raise ValueError(f"Unknown method preset {name!r}. Known: {known}. Fix: use one of "
                         f"these, or add a config fragment to {methods_dir or METHODS_DIR}.")
    return presets[key]


def _leaves(d: dict, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys (lists and other values are leaves)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _add_hooks(hooks: list, new: list, name: str, origin: dict[str, str]) -> None:
    for hook in new:
        hook = dict(hook)
        same_type = [h for h in hooks if h.get("type") == hook.get("type")]
        if any(dict(h) == hook for h in same_type):
            continue
        if same_type:
            first = origin.get(str(hook.get("type")), "the config")
            raise ValueError(
                f"Method preset {name!r} adds {hook['type']} with settings {hook}, but "
                f"{first} already has {dict(same_type[0])}. A model runs one of each. Fix: "
                f"choose one of the two presets (or remove the hook from the config).")
        hooks.append(hook)
        origin[str(hook.get("type"))] = f"preset {name!r}"


def apply_methods(cfg: Config, names: Sequence[str], methods_dir: str | None = None) -> Config:
    """A copy of ``cfg`` with the method presets ``names`` applied in order (rules above)."""
    if isinstance(names, str):
        raise TypeError(f"apply_methods takes a list of names, got the string {names!r}")
    out = copy.deepcopy(cfg)
    hooks = [dict(h) for h in (out.get("custom_hooks") or [])]
    origin: dict[str, str] = {}
    set_by: dict[str, tuple[str, Any]] = {}  # dotted key -> (preset, value)
    for name in names:
        fragment = Config.fromfile(method_path(name, methods_dir)).to_dict()
        _add_hooks(hooks, fragment.pop("custom_hooks", []), name, origin)
        imports = fragment.pop("custom_imports", None)
        if imports:
            have = dict(out.get("custom_imports") or dict(imports=[]))
            have["imports"] = list(dict.fromkeys([*have.get("imports", []),
                                                  *imports.get("imports", [])]))
            have.setdefault("allow_failed_imports", imports.get("allow_failed_imports", False))
            out.custom_imports = have
        for key, value in _leaves(fragment).items():
            if key in set_by and set_by[key][1] != value:
                raise ValueError(f"Method presets {set_by[key][0]!r} and {name!r} both set "
                                 f"{key} ({set_by[key][1]!r} vs {value!r}). Fix: use one.")
            set_by[key] = (name, value)
        out.merge_from_dict(fragment)
    if hooks or "custom_hooks" in out:
        out.custom_hooks = hooks
    return out
