"""Catch misspelt config keys before a run starts, with the fix in the message.

mmengine silently ignores unknown top-level keys (`train_dataloder = ...` just never runs) and
reports a wrong constructor argument as a bare TypeError deep in a build. `check_config` looks at
the keys a runner reads and at the arguments of every registered class the config names, and
raises one ValueError that says which key is wrong and what was probably meant.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator

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
