"""Result tables from sweep work dirs: `python tools/collect_results.py work_dirs/sweeps/NAME`.

For each data set: test-domain accuracy per held-out domain and the average, mean ± standard
error over trial seeds, under training-domain validation (default), leave-one-domain-out
validation (needs `tools/sweep.py --loo` runs) and the test-domain oracle (labelled as such).
Below each table, every algorithm against the baseline (ERM): the paired difference over the
(test domain, trial seed) cells both have, mean ± SE (`dgsamp.evaluation.stats`), and whether
it beats or loses to the baseline by more than that SE.
Markdown goes to stdout; ``--latex FILE`` and ``--csv FILE`` write the other formats;
``--picks`` lists, per cell, the draw and validation step each selection picks (where they
differ, model selection matters); ``--export DIR`` copies each finished run's small result
files (job.json, results.json, scalars.json) to DIR, so the tables can be regenerated from DIR,
and a sweep continued, elsewhere.
See dgsamp/evaluation/model_selection.py for the selection rules.
"""

from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import shutil
import sys
from collections import defaultdict

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from dgsamp.evaluation.model_selection import (  # noqa: E402
    SELECTIONS,
    Run,
    build_tables,
    find_runs,
    picks_markdown,
    select,
    to_csv,
    to_latex,
    to_markdown,
)
from dgsamp.evaluation.stats import MeanSE, paired_difference  # noqa: E402

RESULT_FILES = ("job.json", "results.json", osp.join("*", "vis_data", "scalars.json"))


def verdict(diff: MeanSE) -> str:
    """'beats' / 'loses' (by more than the SE), 'within SE', or why it cannot be said."""
    if diff.mean is None or diff.n == 0:
        return "no shared cells"
    if diff.se is None:
        return "SE not measured (1 cell)"
    if diff.mean > diff.se:
        return "beats"
    if diff.mean < -diff.se:
        return "loses"
    return "within SE"


def versus_baseline(runs: list[Run], selection: str, baseline: str) -> dict[str, list[str]]:
    """{data set: markdown lines} comparing every algorithm with ``baseline`` cell by cell."""
    cells: dict[tuple[str, str], dict] = defaultdict(dict)
    for (dataset, alg, domain, seed), choice in select(runs, selection).items():
        cells[(dataset, alg)][(domain, seed)] = choice.test
    out: dict[str, list[str]] = {}
    for (dataset, alg), values in sorted(cells.items()):
        base = cells.get((dataset, baseline))
        if alg == baseline or base is None:
            continue
        diff = paired_difference(values, base)
        lines = out.setdefault(dataset, [
            f"{dataset}, {SELECTIONS[selection]}: difference to {baseline} (points), mean ± SE "
            f"over the (test domain, seed) cells both have", "",
            "| Algorithm | Δ | cells | verdict |", "|---|---|---|---|"])
        delta = "–" if diff.mean is None else (
            f"{diff.mean:+.1f}" + (f" ± {diff.se:.1f}" if diff.se is not None else ""))
        lines.append(f"| {alg} | {delta} | {diff.n} | {verdict(diff)} |")
    return out


def export(runs: list[Run], roots: list[str], dest: str) -> int:
    """Copy each run's small result files to ``dest``, keeping the path under its root."""
    copied = 0
    for run in runs:
        root = next((r for r in roots
                     if osp.abspath(run.work_dir).startswith(osp.abspath(r) + os.sep)), None)
        rel = osp.relpath(run.work_dir, root) if root else osp.basename(run.work_dir)
        for pattern in RESULT_FILES:
            for path in glob.glob(osp.join(run.work_dir, pattern)):
                target = osp.join(dest, rel, osp.relpath(path, run.work_dir))
                os.makedirs(osp.dirname(target), exist_ok=True)
                shutil.copyfile(path, target)
                copied += 1
    return copied


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description="Collect DG sweep results into tables")
    parser.add_argument("dirs", nargs="+", help="sweep folders (searched recursively)")
    parser.add_argument("--selection", nargs="+", choices=sorted(SELECTIONS),
                        default=["train_domain", "loo", "oracle"],
                        help="model selection methods (default: all three)")
    parser.add_argument("--baseline", default="ERM",
                        help="algorithm the others are compared with (default ERM)")
    parser.add_argument("--latex", help="also write LaTeX tables to this file")
    parser.add_argument("--csv", help="also write a CSV (one row per cell) to this file")
    parser.add_argument("--export", help="copy the finished runs' small result files here")
    parser.add_argument("--picks", action="store_true",
                        help="also list each cell's pick (draw/step, test %%) per selection")
    args = parser.parse_args(argv)
    runs = find_runs(args.dirs)
    if not runs:
        raise SystemExit(f"No finished runs (work dirs with results.json and scalars.json) "
                         f"under {args.dirs}.")
    tables, blocks = [], []
    for selection in args.selection:
        these = build_tables(runs, selection)
        if not any(t.rows for t in these):
            blocks.append(f"_{SELECTIONS[selection]}: no results_"
                          + (" (needs pair runs: tools/sweep.py --loo)" if selection == "loo"
                             else ""))
            continue
        tables += these
        versus = versus_baseline(runs, selection, args.baseline)
        for t in these:
            if t.rows:
                blocks.append(to_markdown(t))
                if t.dataset in versus:
                    blocks.append("\n".join(versus[t.dataset]))
    if args.picks:
        blocks.append("Which draw and validation step each selection picks:\n\n"
                      + picks_markdown(runs, args.selection))
    text = "\n\n".join(blocks)
    print(f"{len(runs)} runs\n\n{text}")
    if args.latex:
        with open(args.latex, "w") as f:
            f.write("\n\n".join(to_latex(t) for t in tables if t.rows) + "\n")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            f.write(to_csv(tables))
    if args.export:
        print(f"\nexported {export(runs, args.dirs, args.export)} files to {args.export}",
              file=sys.stderr)
    return text


if __name__ == "__main__":
    main()
