"""Result tables from sweep work dirs: `python tools/collect_results.py work_dirs/sweeps/NAME`.

For each data set: test-domain accuracy per held-out domain and the average, mean ± standard
error over trial seeds, under training-domain validation (default), leave-one-domain-out
validation (needs `tools/sweep.py --loo` runs) and the test-domain oracle (labelled as such).
Markdown goes to stdout; ``--latex FILE`` and ``--csv FILE`` write the other formats.
See dgsamp/evaluation/model_selection.py for the selection rules.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from dgsamp.evaluation.model_selection import (  # noqa: E402
    SELECTIONS,
    build_tables,
    find_runs,
    to_csv,
    to_latex,
    to_markdown,
)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description="Collect DG sweep results into tables")
    parser.add_argument("dirs", nargs="+", help="sweep folders (searched recursively)")
    parser.add_argument("--selection", nargs="+", choices=sorted(SELECTIONS),
                        default=["train_domain", "loo", "oracle"],
                        help="model selection methods (default: all three)")
    parser.add_argument("--latex", help="also write LaTeX tables to this file")
    parser.add_argument("--csv", help="also write a CSV (one row per cell) to this file")
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
        blocks += [to_markdown(t) for t in these if t.rows]
    text = "\n\n".join(blocks)
    print(f"{len(runs)} runs\n\n{text}")
    if args.latex:
        with open(args.latex, "w") as f:
            f.write("\n\n".join(to_latex(t) for t in tables if t.rows) + "\n")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            f.write(to_csv(tables))
    return text


if __name__ == "__main__":
    main()
