"""Reading a run's work dir: the one reader tools/compare.py and model selection share.

mmengine writes every logged scalar of a run to ``<work_dir>/<timestamp>/vis_data/
scalars.json`` (one JSON record per line; validation records carry ``step``: the epoch, or the
iteration of an iteration-based run) and the same records to ``<timestamp>.json`` beside it; a
resumed run adds a timestamp folder. tools/train.py writes ``results.json``, CostHook
``cost.json``. Plain Python (no mmengine).
"""

from __future__ import annotations

import glob
import json
import os.path as osp


def load_json(path: str) -> dict | None:
    """A JSON file's content, or None when it is missing or unreadable (a run still writing)."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def scalar_records(work_dir: str) -> list[dict]:
    """Every record mmengine logged for this work dir, oldest timestamp folder first.

    Per folder, scalars.json (else the ``<timestamp>.json`` files: they hold the same records,
    so one of them is read, never both). Lines that are not JSON (a line still being written)
    are skipped.
    """
    files = []
    for vis in sorted(glob.glob(osp.join(work_dir, "*", "vis_data"))):
        scalars = osp.join(vis, "scalars.json")
        files += [scalars] if osp.isfile(scalars) else sorted(glob.glob(osp.join(vis, "*.json")))
    records = []
    for path in files:
        try:
            with open(path) as fh:
                lines = fh.readlines()
        except OSError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
    return records


def validation_records(work_dir: str, prefix: str = "acc/") -> list[dict]:
    """The validation records (those with a ``prefix`` key), one per step, sorted by step:
    only the ``prefix`` keys (as floats) and ``step``. Where a step was evaluated twice (a
    resumed run, or SWAD's final evaluation of the averaged weights) the later one wins."""
    by_step: dict[int, dict] = {}
    for row in scalar_records(work_dir):
        if not any(k.startswith(prefix) for k in row):
            continue
        rec = {k: float(v) for k, v in row.items() if k.startswith(prefix)}
        rec["step"] = int(row.get("step", len(by_step)))
        by_step[rec["step"]] = rec
    return [by_step[s] for s in sorted(by_step)]
