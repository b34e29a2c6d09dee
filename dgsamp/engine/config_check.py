"""Catch misspelt config keys and missing data before a run starts, with the fix in the message.

mmengine silently ignores unknown top-level keys (`train_dataloder = ...` just never runs) and
reports a wrong constructor argument as a bare TypeError deep in a build. `check_config` looks at
the keys a runner reads and at the arguments of every registered class the config names, and
raises one ValueError that says which key is wrong and what was probably meant.

A public det/seg config without its data (Cityscapes, Foggy Cityscapes, Sim10k, GTA5, ACDC, ...)
would otherwise end in mmdet's bare FileNotFoundError after a dump of the whole config.
`check_data_paths` looks at every path a data set config names (``data_root``, ``ann_file``,
``data_prefix`` folders, relative to ``data_root`` as mmdet/mmseg join them) and raises one
FileNotFoundError listing all that are missing, the expected layout (the config's header
comment, where the layout is documented) and the conversion step for derived files.
"""

from __future__ import annotations

import difflib
import inspect
import os.path as osp
import re
from collections.abc import Iterable, Iterator

from mmengine.config import Config
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS, DefaultScope, Registry

RUNNER_KEYS = {
    "model", "work_dir", "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg",
    "val_cfg", "test_cfg", "auto_scale_lr", "optim_wrapper", "param_scheduler", "val_evaluator",
    "test_evaluator", "default_hooks", "custom_hooks", "data_preprocessor", "load_from",
    "resume", "launcher", "env_cfg", "log_processor", "log_level", "visualizer", "default_scope",
    "randomness", "experiment_name", "custom_imports", "vis_backends", "model_wrapper_cfg",
    "find_unused_parameters", "sync_bn", "runner_type", "strategy", "compile", "cfg",
}


def _typed_dicts(cfg: Config) -> Iterator[tuple[str, Registry, dict]]:
    """(where, registry, dict) for the config entries whose `type` names a class to check."""
    if isinstance(cfg.get("model"), dict):
        yield "model", MODELS, cfg.model
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if isinstance(loader, dict) and isinstance(loader.get("dataset"), dict):
            yield f"{split}_dataloader.dataset", DATASETS, loader.dataset
    for i, hook in enumerate(cfg.get("custom_hooks") or []):
        yield f"custom_hooks[{i}]", HOOKS, hook
    for name, hook in (cfg.get("default_hooks") or {}).items():
        if isinstance(hook, dict):
            yield f"default_hooks.{name}", HOOKS, hook
    for split in ("val", "test"):
        ev = cfg.get(f"{split}_evaluator")
        for i, metric in enumerate(ev if isinstance(ev, list) else [ev]):
            if isinstance(metric, dict) and "type" in metric:
                yield f"{split}_evaluator[{i}]", METRICS, metric


def _accepted_args(obj) -> set[str] | None:
    """Names a constructor accepts; None when it takes **kwargs (it checks those itself)."""
    params = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL} - {"self"}


def _unknown_key_error(where: str, key: str, choices: set[str], what: str) -> ValueError:
    close = difflib.get_close_matches(key, sorted(choices), n=3, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Config key {where}.{key!r} is not an argument of {what}.{hint} "
                      f"Fix: rename or remove it. Accepted: {sorted(choices)}.")


def check_config(cfg: Config) -> None:
    """Raise ValueError for misspelt top-level keys and unknown constructor arguments."""
    for key in cfg.keys():
        if key in RUNNER_KEYS or key.startswith("_"):
            continue
        close = difflib.get_close_matches(key, sorted(RUNNER_KEYS), n=1, cutoff=0.85)
        if close:
            raise ValueError(f"Config key {key!r} is not read by the runner; did you mean "
                             f"{close[0]!r}? Fix: rename it (a misspelt key is silently unused).")
    scope = cfg.get("default_scope") or "mmengine"
    with DefaultScope.overwrite_default_scope(scope):
        for where, root, item in _typed_dicts(cfg):
            type_ = item.get("type")
            if not isinstance(type_, str):
                continue
            with root.switch_scope_and_registry(item.get("_scope_", scope)) as registry:
                obj = registry.get(type_)
            if obj is None:
                known = list(registry.module_dict)
                close = difflib.get_close_matches(type_, known, n=3, cutoff=0.6)
                hint = f" Did you mean {close}?" if close else ""
                raise ValueError(f"{where}.type={type_!r} is not registered in {registry.name!r}"
                                 f" (scope {scope!r}).{hint} Fix: correct the name, or add the "
                                 f"package that defines it to custom_imports.")
            accepted = _accepted_args(obj)
            if accepted is None:
                continue
            for key in item:
                if key not in accepted and key not in ("type", "_scope_"):
                    raise _unknown_key_error(where, key, accepted, f"{type_}")


# Files that come from a conversion step rather than the released archives: a pattern of the
# missing-path line -> how to make them.
CONVERSIONS = {
    r"instancesonly_filtered_gtFine": "Cityscapes to COCO json with mmdet's converter: python "
    "mmdetection/tools/dataset_converters/cityscapes.py data/cityscapes --nproc 8 --out-dir "
    "data/cityscapes/annotations (needs pip install cityscapesscripts)",
    r"seg_map_path: '[^']*gtFine": "Cityscapes *_labelTrainIds.png label maps with mmseg's "
    "converter: python mmsegmentation/tools/dataset_converters/cityscapes.py data/cityscapes "
    "--nproc 8",
}
NESTED_DATASET_KEYS = ("dataset", "datasets", "source", "target")


def _dataset_configs(node, where: str) -> Iterator[tuple[str, dict]]:
    """(where, dict) for every data set config in a loader's tree (wrappers included)."""
    if isinstance(node, dict):
        if "data_root" in node or "ann_file" in node:
            yield where, node
        for key in NESTED_DATASET_KEYS:
            if key in node:
                yield from _dataset_configs(node[key], f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _dataset_configs(item, f"{where}[{i}]")


def _named_paths(ds: dict) -> Iterator[tuple[str, str, bool]]:
    """(key, path, is_file) for the paths a data set config names, joined to its data_root."""
    root = ds.get("data_root") or ""
    if root:
        yield "data_root", root, False
    if ds.get("ann_file"):
        yield "ann_file", osp.join(root, ds["ann_file"]), True
    for key, prefix in (ds.get("data_prefix") or {}).items():
        if isinstance(prefix, str) and prefix and root:
            yield f"data_prefix.{key}", osp.join(root, prefix), False


def _header(filename: str | None) -> list[str]:
    """The leading comment block of a config file (where dgsamp configs document the layout)."""
    if not filename or not osp.isfile(filename):
        return []
    lines = []
    with open(filename) as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            lines.append(line.rstrip())
    return lines


def check_data_paths(cfg: Config, splits: Iterable[str] = ("train", "val", "test")) -> None:
    """Raise FileNotFoundError listing every missing data path the config names, with the
    expected layout and the conversion steps. Data sets that name no ``data_root`` or
    ``ann_file`` (generated ones, like the embedded benchmarks) are not checked."""
    missing: list[str] = []  # what the error lists: a missing data_root hides what is below it
    absent: list[str] = []  # every missing path, to find the conversion steps they need
    for split in splits:
        loader = cfg.get(f"{split}_dataloader")
        if not isinstance(loader, dict) or (split != "train" and cfg.get(f"{split}_cfg") is None):
            continue
        for where, ds in _dataset_configs(loader.get("dataset"), f"{split}_dataloader.dataset"):
            root_missing = False
            for key, path, is_file in _named_paths(ds):
                if not (osp.isfile(path) if is_file else osp.isdir(path)):
                    kind = "file" if is_file else "folder"
                    line = f"  {where}.{key}: {path!r} ({kind} not found)"
                    absent.append(line)
                    if not root_missing:
                        missing.append(line)
                    root_missing = root_missing or key == "data_root"
    if not missing:
        return
    missing = list(dict.fromkeys(missing))
    text = "\n".join(missing)
    steps = [f"  {step}" for pattern, step in CONVERSIONS.items()
             if re.search(pattern, "\n".join(absent))]
    header = _header(cfg.filename)
    raise FileNotFoundError(
        f"The data this config reads is not there ({len(missing)} path(s)):\n{text}\n"
        + (f"Expected layout ({cfg.filename}):\n" + "\n".join(header) + "\n" if header else "")
        + ("Conversion steps:\n" + "\n".join(steps) + "\n" if steps else "")
        + "Fix: put the released archives into that layout (paths are relative to the folder "
          "you run from; a symlink data/ -> your data folder works), run the conversion steps, "
          "or point the config's data_root at where the data is.")
