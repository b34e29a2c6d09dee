"""Summarise a dense demo: per-domain metric of source-only vs adapted runs, mean over seeds.

    python tools/demo_dense_summary.py WORK_DIR METRIC   (METRIC: AP50 or mIoU)

WORK_DIR holds ``<method>/seed<k>/results.json`` (written by tools/train.py) or
``test_results.json`` (tools/test.py, e.g. ``--adabn``); keys ``<metric>/<domain>``, the
train/test-domain means included. Mean ± sample standard deviation over seeds (the spread of
one run, as docs/dense.md quotes it; tools/compare.py gives standard errors).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main(work_dir: str, metric: str) -> None:
    root = Path(work_dir)
    rows: dict[str, dict[str, list[float]]] = {}
    found = [*root.glob("*/seed*/results.json"), *root.glob("*/seed*/test_results.json")]
    for res in sorted(found):
        method = res.parent.parent.name
        metrics = json.loads(res.read_text())["metrics"]
        for key, value in metrics.items():
            name, _, domain = key.partition("/")
            if name == metric:
                rows.setdefault(method, {}).setdefault(domain, []).append(value)
    if not rows:
        raise SystemExit(f"no */seed*/(test_)results.json with {metric} under {work_dir}")
    domains = list(next(iter(rows.values())))
    print(f"{metric} (mean ± std over seeds; n = seeds)")
    width = max(len("method"), *map(len, rows)) + 2
    print("method".ljust(width) + "".join(f"{d:>21}" for d in domains))
    for method, per in rows.items():
        cells = []
        for d in domains:
            v = per.get(d, [])
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):8.2f} ± {sd:4.2f} (n={len(v)})" if v else "-")
        print(method.ljust(width) + "".join(f"{c:>21}" for c in cells))
    for method, per in rows.items():
        print(f"{method} {metric} per seed: " + json.dumps({d: [round(x, 2) for x in v]
                                                           for d, v in per.items()}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
