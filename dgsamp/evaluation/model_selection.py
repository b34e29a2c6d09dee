"""DomainBed's model selection over sweep runs, and result tables (markdown, LaTeX, CSV).

A *run* is one training job (one algorithm, held-out domain(s), trial seed and hyper-parameter
draw); its *records* are the validation evaluations mmengine logged during training
(``<work_dir>/<timestamp>/vis_data/scalars.json``: every ``acc/<domain>`` and
``acc/train_domains``, by step). A selection method picks, for each (algorithm, test domain,
trial seed), one hyper-parameter draw and one record, and reports that record's accuracy on
the test domain:

- ``train_domain`` (training-domain validation, the default): the record and the draw with the
  best accuracy on the training domains' 20% held-out parts (``acc/train_domains``);
- ``loo`` (leave-one-domain-out validation): needs the sweep's pair runs (``--loo``), which hold
  out the test domain *and* one training domain j; a (draw, step) is scored by the mean over j of
  the accuracy on j in those runs and reported by the run holding out the test domain alone;
- ``oracle`` (test-domain validation, labelled as such): the last record of each draw, the draw
  with the best test-domain accuracy. The only method that reads test-domain labels.

Selection decides on validation numbers alone: `select` reads test-domain accuracy only from
the record it has chosen (tests poison every other test-domain number and compare).
Results are mean ± standard error over trial seeds (`dgsamp.evaluation.stats.mean_se`); the
average column averages each seed's per-domain results (seeds with every domain) first.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import os.path as osp
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .runs import load_json, validation_records
from .stats import MeanSE, mean_se

SELECTIONS = {
    "train_domain": "training-domain validation",
    "loo": "leave-one-domain-out validation",
    "oracle": "test-domain validation (oracle)",
}
SUMMARY_KEYS = ("acc/train_domains", "acc/test_domains")


@dataclass
class Run:
    """One training job and its validation records (see module docstring)."""

    work_dir: str
    algorithm: str
    dataset: str
    held_out: tuple[str, ...]
    trial_seed: int
    hparams: str = "0"
    domains: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # sorted by step; one per step


def read_records(work_dir: str) -> list[dict]:
    """Validation records of a work dir (every timestamp folder, a resumed run's too), one per
    step, the later evaluation of a step winning (`runs.validation_records`)."""
    return validation_records(work_dir, "acc/")


# training-time wrappers a table row names beside the algorithm ("ERM+SWAD", as DomainBed's
# tables list SWAD): custom hook type -> suffix
HOOK_LABELS = {"SWADHook": "SWAD"}
# whose result is the model after training (SWAD's averaged weights, validated last): their
# earlier validations only choose SWAD's window, so no selection may pick one of them
FINAL_MODEL_ONLY = ("SWAD",)


def algorithm_label(cfg) -> str:
    """The table row of a config: ``model.type``, plus ``+SWAD`` when it trains with SWADHook
    (SWAD changes the weights that are evaluated, not the algorithm's loss)."""
    hooks = [h.get("type") for h in (cfg.get("custom_hooks") or []) if isinstance(h, dict)]
    return "+".join([cfg.model.type, *(HOOK_LABELS[h] for h in hooks if h in HOOK_LABELS)])


def run_config(work_dir: str):
    """The config a finished run trained with: tools/sweep.py's ``config.py``, else the newest
    one mmengine dumped under ``<timestamp>/vis_data/`` (tools/train.py); None if neither."""
    from mmengine.config import Config

    dumped = sorted(glob.glob(osp.join(work_dir, "*", "vis_data", "config.py")))
    sweep_config = osp.join(work_dir, "config.py")
    path = sweep_config if osp.isfile(sweep_config) else (dumped[-1] if dumped else None)
    return None if path is None else Config.fromfile(path)


def _job_from_config(work_dir: str) -> dict | None:
    """Algorithm, data set, held-out domains and seed from the run's config (`run_config`)."""
    cfg = run_config(work_dir)
    if cfg is None:
        return None
    ds = cfg.val_dataloader.dataset
    return dict(algorithm=algorithm_label(cfg), dataset=ds.type,
                held_out=list(ds.get("test_domains") or []),
                trial_seed=int((cfg.get("randomness") or {}).get("seed", 0) or 0), hparams="0")


def load_run(work_dir: str) -> Run | None:
    """A run from a work dir: ``job.json`` (written by tools/sweep.py) or the dumped config."""
    job = load_json(osp.join(work_dir, "job.json"))
    if job is None:
        job = _job_from_config(work_dir)
        if job is None:
            return None
    records = read_records(work_dir)
    if not records:
        return None
    if any(f"+{label}" in job["algorithm"] for label in FINAL_MODEL_ONLY):
        records = records[-1:]
    domains = job.get("domains") or [k[4:] for k in records[-1]
                                      if k.startswith("acc/") and k not in SUMMARY_KEYS]
    return Run(work_dir=work_dir, algorithm=job["algorithm"], dataset=job["dataset"],
               held_out=tuple(job["held_out"]), trial_seed=int(job["trial_seed"]),
               hparams=str(job.get("hparams", "0")), domains=list(domains), records=records)


def find_runs(roots: Sequence[str]) -> list[Run]:
    """Every run under the given folders (a folder with results.json is a finished run)."""
    runs = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            if "results.json" in files:
                run = load_run(dirpath)
                if run is not None:
                    runs.append(run)
    return runs


# -- selection ------------------------------------------------------------------------------
@dataclass
class Choice:
    """What a selection picked for one (algorithm, test domain, trial seed)."""

    run: Run
    step: int
    val: float
    test: float


def _test_acc(run: Run, record: dict, domain: str) -> float:
    return record[f"acc/{domain}"]


def _select_train_domain(single: list[Run], domain: str, pairs) -> Choice | None:
    best = None
    for run in single:
        recs = [r for r in run.records if "acc/train_domains" in r]
        if not recs:
            continue
        rec = max(recs, key=lambda r: r["acc/train_domains"])  # first best on ties
        if best is None or rec["acc/train_domains"] > best[2]:
            best = (run, rec, rec["acc/train_domains"])
    if best is None:
        return None
    run, rec, val = best
    return Choice(run, rec["step"], val, _test_acc(run, rec, domain))


def _select_oracle(single: list[Run], domain: str, pairs) -> Choice | None:
    best = None
    for run in single:
        rec = run.records[-1]
        acc = _test_acc(run, rec, domain)  # the oracle reads test-domain labels, by definition
        if best is None or acc > best[2]:
            best = (run, rec, acc)
    if best is None:
        return None
    run, rec, acc = best
    return Choice(run, rec["step"], acc, acc)


def _select_loo(single: list[Run], domain: str, pairs: dict) -> Choice | None:
    best = None
    for run in single:
        others = [d for d in run.domains if d != domain]
        pair_runs = [pairs.get((run.hparams, d)) for d in others]
        if not others or any(p is None for p in pair_runs):
            continue
        steps = {r["step"]: r for r in run.records}
        pair_steps = [{r["step"]: r for r in p.records} for p in pair_runs]
        for step in sorted(steps):
            if not all(step in ps for ps in pair_steps):
                continue
            val = sum(ps[step][f"acc/{d}"] for ps, d in zip(pair_steps, others, strict=True))
            val /= len(others)
            if best is None or val > best[2]:
                best = (run, steps[step], val)
    if best is None:
        return None
    run, rec, val = best
    return Choice(run, rec["step"], val, _test_acc(run, rec, domain))


_SELECTORS = {"train_domain": _select_train_domain, "loo": _select_loo,
              "oracle": _select_oracle}


def select(runs: Iterable[Run], selection: str = "train_domain"
           ) -> dict[tuple[str, str, str, int], Choice]:
    """{(dataset, algorithm, test domain, trial seed): Choice} under one selection method."""
    if selection not in _SELECTORS:
        raise ValueError(f"selection={selection!r}: choose one of {sorted(SELECTIONS)}.")
    singles: dict[tuple, list[Run]] = defaultdict(list)
    pairs: dict[tuple, dict] = defaultdict(dict)
    for run in runs:
        if len(run.held_out) == 1:
            singles[(run.dataset, run.algorithm, run.held_out[0], run.trial_seed)].append(run)
        elif len(run.held_out) == 2:
            a, b = run.held_out
            pairs[(run.dataset, run.algorithm, a, run.trial_seed)][(run.hparams, b)] = run
            pairs[(run.dataset, run.algorithm, b, run.trial_seed)][(run.hparams, a)] = run
    out = {}
    for key, group in sorted(singles.items()):
        group = sorted(group, key=lambda r: r.hparams)
        choice = _SELECTORS[selection](group, key[2], pairs.get(key, {}))
        if choice is not None:
            out[key] = choice
    return out


def picks_markdown(runs: Sequence[Run], selections: Sequence[str]) -> str:
    """Which draw and validation step each selection picks per (algorithm, test domain, seed),
    with the pick's test accuracy, as a markdown table, and on how many cells the first two
    selections pick the same (draw, step): where model selection matters, and by how much."""
    chosen = [select(runs, s) for s in selections]
    keys = sorted(set().union(*chosen))
    lines = ["| data set | algorithm | test domain | seed | "
             + " | ".join(f"{SELECTIONS[s]}: draw/step (test %)" for s in selections) + " |",
             "|" + "---|" * (4 + len(selections))]
    same = both = 0
    for key in keys:
        cells = []
        for c in (ch.get(key) for ch in chosen):
            cells.append("–" if c is None else f"{c.run.hparams}/{c.step} ({c.test:.1f})")
        lines.append("| " + " | ".join([*map(str, key), *cells]) + " |")
        if len(chosen) > 1 and key in chosen[0] and key in chosen[1]:
            a, b = chosen[0][key], chosen[1][key]
            both += 1
            same += (a.run.hparams, a.step) == (b.run.hparams, b.step)
    if len(chosen) > 1:
        lines += ["", f"{SELECTIONS[selections[0]]} and {SELECTIONS[selections[1]]} pick the "
                      f"same draw and step on {same} of {both} cells both have."]
    return "\n".join(lines)


# -- tables ---------------------------------------------------------------------------------
@dataclass
class Table:
    dataset: str
    selection: str
    domains: list[str]
    rows: dict[str, dict[str, MeanSE]]  # algorithm -> column -> mean ± SE over seeds


def build_tables(runs: Sequence[Run], selection: str = "train_domain") -> list[Table]:
    """One table per data set: algorithms x (test domains + Avg)."""
    runs = list(runs)
    chosen = select(runs, selection)
    tables = []
    for dataset in sorted({r.dataset for r in runs}):
        order = next((r.domains for r in runs if r.dataset == dataset and r.domains), [])
        tested = {k[2] for k in chosen if k[0] == dataset}
        domains = [d for d in order if d in tested] + sorted(tested - set(order))
        rows: dict[str, dict] = {}
        for algorithm in sorted({k[1] for k in chosen if k[0] == dataset}):
            per_seed: dict[int, dict[str, float]] = defaultdict(dict)
            for (ds, alg, dom, seed), c in chosen.items():
                if ds == dataset and alg == algorithm:
                    per_seed[seed][dom] = c.test
            row = {d: mean_se([s[d] for s in per_seed.values() if d in s]) for d in domains}
            full = [sum(s[d] for d in domains) / len(domains) for s in per_seed.values()
                    if all(d in s for d in domains)]
            row["Avg"] = mean_se(full)
            rows[algorithm] = row
        tables.append(Table(dataset, selection, domains, rows))
    return tables


def _cell(value: MeanSE, pm: str = "±") -> str:
    m, se, _ = value
    if m is None:
        return "–"
    return f"{m:.1f} {pm} {se:.1f}" if se is not None else f"{m:.1f}"


def _seeds(table: Table) -> str:
    ns = sorted({v[2] for row in table.rows.values() for v in row.values() if v[2]})
    return "/".join(map(str, ns)) or "0"


def to_markdown(table: Table) -> str:
    head = ["Algorithm", *table.domains, "Avg"]
    lines = [f"**{table.dataset}** — model selection: {SELECTIONS[table.selection]}; "
             f"test-domain accuracy (%), mean ± SE over {_seeds(table)} trial seed(s)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for alg, row in table.rows.items():
        lines.append("| " + " | ".join([alg, *(_cell(row[c]) for c in head[1:])]) + " |")
    return "\n".join(lines)


def _tex(s: str) -> str:
    return s.replace("%", r"\%").replace("_", r"\_").replace("&", r"\&")


def to_latex(table: Table) -> str:
    head = [*table.domains, "Avg"]
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{_tex(table.dataset)}: test-domain accuracy (\%), model selection: "
             rf"{_tex(SELECTIONS[table.selection])}; mean $\pm$ SE over {_seeds(table)} "
             r"trial seed(s).}",
             r"\begin{tabular}{l" + "c" * len(head) + "}", r"\toprule",
             " & ".join(["Algorithm", *map(_tex, head)]) + r" \\", r"\midrule"]
    for alg, row in table.rows.items():
        cells = [_cell(row[c], r"$\pm$") for c in head]
        lines.append(" & ".join([_tex(alg), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def to_csv(tables: Sequence[Table]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["selection", "dataset", "algorithm", "domain", "mean", "se", "n"])
    for t in tables:
        for alg, row in t.rows.items():
            for col in [*t.domains, "Avg"]:
                m, se, n = row[col]
                writer.writerow([SELECTIONS[t.selection], t.dataset, alg, col,
                                 "" if m is None else f"{m:.4f}",
                                 "" if se is None else f"{se:.4f}", n])
    return buf.getvalue()
