"""tools/sweep.py jobs and tools/collect_results.py model selection and tables."""

from __future__ import annotations

import csv
import io
import json
import math
import random

import pytest
from conftest import ROOT

from dgsamp.evaluation.model_selection import (
    build_tables,
    find_runs,
    picks_markdown,
    select,
    to_csv,
    to_latex,
    to_markdown,
)
from dgsamp.evaluation.stats import mean_se, paired_difference
from dgsamp.models.algorithms.hparams import draw_hparams

COLORED = str(ROOT / "configs/dg/erm_colored_digits.py")


def _sweep_args(tmp_path, *extra):
    from tools.sweep import main as sweep_main

    return sweep_main, [COLORED, "--name", "t", "--root", str(tmp_path), *extra]


def _jobs(tmp_path, *extra):
    from tools import sweep

    return sweep.make_jobs(sweep_parse([COLORED, "--name", "t", "--root", str(tmp_path),
                                        *extra]))


def sweep_parse(argv):
    """The sweep's own argument parser, through main's dry run path."""
    from tools import sweep

    captured = {}
    real = sweep.make_jobs

    def spy(args):
        captured["args"] = args
        return []

    sweep.make_jobs = spy
    try:
        sweep.main([*argv, "--dry-run"])
    finally:
        sweep.make_jobs = real
    return captured["args"]


def test_sweep_jobs_cover_domains_seeds_draws_and_pairs(tmp_path):
    jobs = _jobs(tmp_path, "--algorithms", "ERM", "DANN", "--seeds", "0", "1",
                 "--n-hparams", "2", "--loo")
    # 2 algorithms x (3 single + 3 pair held-outs) x 2 seeds x 2 draws
    assert len(jobs) == 2 * 6 * 2 * 2
    dirs = {j.work_dir for j in jobs}
    assert len(dirs) == len(jobs)
    assert str(tmp_path / "t" / "dann" / "-90pct" / "seed1_hp1") in dirs
    assert str(tmp_path / "t" / "erm" / "+90pct__-90pct" / "seed0_hp0") in dirs
    for j in jobs:
        for ds in (j.cfg.train_dataloader.dataset, j.cfg.val_dataloader.dataset):
            assert ds.test_domains == j.info["held_out"]
            assert ds.split_seed == j.info["trial_seed"] == j.info["split_seed"]
        assert j.cfg.randomness.seed == j.info["trial_seed"]
    dann = [j for j in jobs if j.info["algorithm"] == "DANN"]
    assert all(j.cfg.model.num_domains == 3 for j in dann)
    assert all(j.cfg.optim_wrapper.constructor == "PerModuleOptimWrapperConstructor"
               for j in dann)
    # draw 0 is the config; a draw depends on (algorithm, draw, seed), not on the held-out domain
    draws = {(j.info["held_out"][0], j.info["hparams"], j.info["trial_seed"]):
             j.info["hparam_values"] for j in dann if len(j.info["held_out"]) == 1}
    assert draws[("-90%", "0", 0)] == {}
    assert draws[("-90%", "1", 0)] == draws[("+80%", "1", 0)] == draw_hparams("DANN", 1, 0)
    assert draws[("-90%", "1", 0)] != draws[("-90%", "1", 1)]
    lr = [j for j in dann if j.info["hparams"] == "1"][0].cfg.optim_wrapper.model.optimizer.lr
    assert lr == draw_hparams("DANN", 1, 0)["optim_wrapper.model.optimizer.lr"]


def test_sweep_split_seed_fixes_the_split_and_varies_only_training(tmp_path):
    jobs = _jobs(tmp_path, "--algorithms", "ERM", "--seeds", "0", "1", "2", "--split-seed", "0",
                 "--test-domains=-90%")
    assert [j.cfg.randomness.seed for j in jobs] == [0, 1, 2]
    for j in jobs:
        assert j.info["split_seed"] == 0
        for ds in (j.cfg.train_dataloader.dataset, j.cfg.val_dataloader.dataset):
            assert ds.split_seed == 0


def test_sweep_variant_names_a_setting_selection_weighs_against_the_defaults(tmp_path):
    jobs = _jobs(tmp_path, "--algorithms", "IRM", "--seeds", "0", "--test-domains=-90%",
                 "--variant", "anneal500", "--cfg-options", "model.anneal_iters=500")
    (job,) = jobs
    assert job.work_dir == str(tmp_path / "t" / "irm" / "-90pct" / "seed0_anneal500")
    assert job.info["hparams"] == "anneal500"
    assert job.info["cfg_options"] == {"model.anneal_iters": 500}
    assert job.cfg.model.anneal_iters == 500
    from tools.sweep import main as sweep_main

    for bad in (["--variant", "v"],  # no --cfg-options to name
                ["--variant", "3", "--cfg-options", "model.p=0.1"],  # a random draw's label
                ["--variant", "a b", "--cfg-options", "model.p=0.1"],
                ["--variant", "v", "--n-hparams", "2", "--cfg-options", "model.p=0.1"]):
        with pytest.raises(SystemExit):
            sweep_main([COLORED, "--name", "t", "--root", str(tmp_path), "--dry-run", *bad])


def test_sweep_reaches_nested_target_datasets(tmp_path):
    from tools import sweep

    ns = sweep_parse([str(ROOT / "configs/da/coral_colored_digits.py"), "--name", "t",
                      "--root", str(tmp_path), "--seeds", "3"])
    jobs = sweep.make_jobs(ns)
    assert len(jobs) == 3
    for j in jobs:
        src = j.cfg.train_dataloader.dataset.source
        assert src.test_domains == j.info["held_out"] and src.split_seed == 3


@pytest.mark.slow
def test_sweep_runs_skips_finished_jobs_and_collects(tmp_path, capsys):
    from tools.collect_results import main as collect

    sweep_main, argv = _sweep_args(
        tmp_path, "--seeds", "0", "--test-domains=-90%", "--loo", "--jobs", "1",
        "--cfg-options", "train_cfg.max_epochs=1", "train_cfg.val_interval=1",
        "param_scheduler=[]", "train_dataloader.dataset.image_size=8",
        "val_dataloader.dataset.image_size=8")
    assert sweep_main(argv) == 0
    finished = list((tmp_path / "t").rglob("results.json"))
    assert len(finished) == 3  # the single run and its two pair runs
    stamp = {p: p.stat().st_mtime_ns for p in finished}
    capsys.readouterr()
    assert sweep_main(argv) == 0
    assert "0 to run" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())
    text = collect([str(tmp_path), "--latex", str(tmp_path / "t.tex"),
                    "--csv", str(tmp_path / "t.csv")])
    assert "| ERM |" in text and "leave-one-domain-out" in text and "(oracle)" in text
    assert r"\pm" not in text and "tabular" in (tmp_path / "t.tex").read_text()
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert {r["domain"] for r in rows} == {"-90%", "Avg"}


# -- model selection on synthetic records ------------------------------------------------------
DOMAINS = ["A", "B", "C"]


def _write_run(root, alg, held, seed, hp, records):
    d = root / alg / "__".join(held) / f"seed{seed}_hp{hp}"
    vis = d / "20260101_000000" / "vis_data"
    vis.mkdir(parents=True)
    (d / "job.json").write_text(json.dumps(dict(
        algorithm=alg, dataset="Toy", held_out=list(held), trial_seed=seed, hparams=str(hp),
        domains=DOMAINS)))
    (d / "results.json").write_text("{}")
    lines = [json.dumps(dict(loss=1.0, step=1))]  # a training line, ignored
    for step, rec in enumerate(records, 1):
        lines.append(json.dumps({**{f"acc/{k}": v for k, v in rec.items()}, "step": step}))
    (vis / "scalars.json").write_text("\n".join(lines) + "\n")


def _toy_sweep(root, poison_test: bool = False, seed_rng: int = 0):
    """Two draws x two seeds, single runs holding out each domain, plus the LOO pair runs.

    With ``poison_test`` every test-domain number except the one a selection may report is
    random: selections other than the oracle must choose the same (run, step)."""
    rng = random.Random(seed_rng)

    def test_acc(v):
        return rng.uniform(0, 100) if poison_test else v

    for seed in (0, 1):
        for hp in (0, 1):
            for held in DOMAINS:
                recs = []
                for step in range(1, 4):
                    val = 50 + 10 * hp + step + seed  # draw 1, last step: best validation
                    recs.append({"train_domains": val, held: test_acc(40 + step + hp + seed),
                                 **{d: 90.0 for d in DOMAINS if d != held}})
                _write_run(root, "ERM", (held,), seed, hp, recs)
            for a, b in (("A", "B"), ("A", "C"), ("B", "C")):
                recs = [{"train_domains": 0.0, a: 60 + 5 * hp - step, b: 60 + 5 * hp - step,
                         **{d: 90.0 for d in DOMAINS if d not in (a, b)}} for step in range(1, 4)]
                _write_run(root, "ERM", (a, b), seed, hp, recs)


def test_training_domain_and_loo_selection_pick_by_validation(tmp_path):
    _toy_sweep(tmp_path)
    runs = find_runs([str(tmp_path)])
    assert len(runs) == 2 * 2 * 6
    train = select(runs, "train_domain")
    c = train[("Toy", "ERM", "A", 0)]
    assert (c.run.hparams, c.step, c.test) == ("1", 3, 44.0)
    loo = select(runs, "loo")
    c = loo[("Toy", "ERM", "B", 1)]  # pair runs: draw 1 better, earliest step best
    assert (c.run.hparams, c.step, c.val, c.test) == ("1", 1, 64.0, 43.0)
    oracle = select(runs, "oracle")
    c = oracle[("Toy", "ERM", "C", 0)]  # last step, best test
    assert (c.run.hparams, c.step, c.test) == ("1", 3, 44.0)


def test_only_the_oracle_reads_test_domain_labels(tmp_path):
    _toy_sweep(tmp_path / "clean")
    _toy_sweep(tmp_path / "poisoned", poison_test=True)
    clean = find_runs([str(tmp_path / "clean")])
    poisoned = find_runs([str(tmp_path / "poisoned")])
    for selection in ("train_domain", "loo"):
        a, b = select(clean, selection), select(poisoned, selection)
        assert a.keys() == b.keys() and len(a) == 6
        for k in a:
            assert (a[k].run.hparams, a[k].step) == (b[k].run.hparams, b[k].step), selection
    a, b = select(clean, "oracle"), select(poisoned, "oracle")
    assert any((a[k].run.hparams, a[k].step) != (b[k].run.hparams, b[k].step) for k in a)


def test_tables_mean_se_and_formats(tmp_path):
    _toy_sweep(tmp_path)
    (table,) = build_tables(find_runs([str(tmp_path)]), "train_domain")
    assert table.domains == DOMAINS
    m, se, n = table.rows["ERM"]["A"]
    assert (m, n) == (44.5, 2) and math.isclose(se, 0.5)  # seeds give 44 and 45
    assert table.rows["ERM"]["Avg"][:1] == (44.5,)
    md = to_markdown(table)
    assert "| ERM | 44.5 ± 0.5 | 44.5 ± 0.5 | 44.5 ± 0.5 | 44.5 ± 0.5 |" in md
    assert "training-domain validation" in md
    (oracle,) = build_tables(find_runs([str(tmp_path)]), "oracle")
    assert "(oracle)" in to_markdown(oracle)
    tex = to_latex(table)
    assert r"44.5 $\pm$ 0.5" in tex and r"\%" in tex and r"\begin{tabular}{lcccc}" in tex
    rows = list(csv.DictReader(io.StringIO(to_csv([table]))))
    assert len(rows) == 4 and rows[0]["mean"] == "44.5000" and rows[0]["n"] == "2"


def test_mean_se_small_samples():
    assert mean_se([]) == (None, None, 0)
    assert mean_se([3.0]) == (3.0, None, 1)  # one seed: the SE is not measured (not 0, not nan)
    m, se, n = mean_se([1.0, 2.0, 6.0])
    assert (m, n) == (3.0, 3) and math.isclose(se, math.sqrt(7.0 / 3.0))
    assert math.isclose(mean_se([1.0, 2.0, 6.0]).sd, math.sqrt(7.0))  # sample SD
    assert mean_se([3.0]).sd is None
    assert mean_se([1.0, None]) == (None, None, 2)  # a missing run makes the mean unknown


def test_paired_difference_over_shared_keys():
    base = {0: 70.0, 1: 80.0, 2: 90.0, 3: None}
    m, se, n = paired_difference({0: 69.0, 1: 79.5, 2: 88.5, 3: 5.0, 7: 10.0}, base)
    assert n == 3 and math.isclose(m, -1.0) and math.isclose(se, 0.5 / math.sqrt(3))
    assert paired_difference({0: 71.0}, base) == (1.0, None, 1)
    assert paired_difference({5: 1.0}, base) == (None, None, 0)


def test_collect_compares_with_erm_and_exports_files_that_regenerate_the_tables(tmp_path):
    """The vs-ERM block (paired over shared cells, beats/loses by more than the SE) and
    ``--export``: the exported small files alone give the same tables."""
    from tools.collect_results import main as collect

    root = tmp_path / "sweep"
    for seed, gain in ((0, 2.0), (1, 4.0)):  # "Better" gains 2 and 4 points on every cell
        for alg, extra in (("ERM", 0.0), ("Better", gain)):
            for held in DOMAINS:
                recs = [{"train_domains": 50.0 + step, held: 40.0 + step + extra,
                         **{d: 90.0 for d in DOMAINS if d != held}} for step in range(1, 4)]
                _write_run(root, alg, (held,), seed, 0, recs)
    text = collect([str(root), "--selection", "train_domain", "--export",
                    str(tmp_path / "out")])
    # 6 paired cells: differences 2, 2, 2, 4, 4, 4 -> mean 3, SE = stdev / sqrt(6)
    se = (6 / 5) ** 0.5 / 6 ** 0.5  # sample SD sqrt(6/5)
    assert f"| Better | +3.0 ± {se:.1f} | 6 | beats |" in text
    copied = sorted(p.relative_to(tmp_path / "out").as_posix()
                    for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert len(copied) == 12 * 3 and "ERM/A/seed0_hp0/job.json" in copied
    assert collect([str(tmp_path / "out"), "--selection", "train_domain"]) == text


def test_swad_runs_are_their_own_row_and_report_the_averaged_model(tmp_path):
    """A config with SWADHook is the row 'ERM+SWAD' (its own folder, ERM's hyper-parameter
    space), and every selection reports its last evaluation (the averaged weights), even where
    an earlier validation scored higher: those only chose SWAD's window."""
    swad = str(ROOT / "configs/dg/swad_colored_digits.py")
    from tools import sweep

    jobs = sweep.make_jobs(sweep_parse([swad, "--name", "t", "--root", str(tmp_path),
                                        "--test-domains=-90%", "--seeds", "0",
                                        "--n-hparams", "2"]))
    assert {j.info["algorithm"] for j in jobs} == {"ERM+SWAD"}
    assert all("/erm+swad/" in j.work_dir for j in jobs)
    assert jobs[1].info["hparam_values"] == draw_hparams("ERM", 1, 0)
    recs = [{"train_domains": v, "A": t, "B": 90.0, "C": 90.0}
            for v, t in ((70.0, 61.0), (80.0, 62.0), (75.0, 63.0))]
    _write_run(tmp_path / "toy", "ERM+SWAD", ("A",), 0, 0, recs)
    _write_run(tmp_path / "toy", "ERM", ("A",), 0, 0, recs)
    runs = find_runs([str(tmp_path / "toy")])
    for selection in ("train_domain", "oracle"):
        chosen = select(runs, selection)
        assert chosen[("Toy", "ERM+SWAD", "A", 0)].test == 63.0, selection  # the last one
    assert select(runs, "train_domain")[("Toy", "ERM", "A", 0)].test == 62.0  # best validation


def test_picks_list_each_selections_draw_and_step_and_count_agreement(tmp_path):
    _toy_sweep(tmp_path)
    runs = find_runs([str(tmp_path)])
    md = picks_markdown(runs, ["train_domain", "loo"])
    # seed 1, test domain B: training-domain validation picks draw 1's last step (test
    # 40 + 3 + 1 + 1), LOO draw 1's first step (its pair runs score earliest best: 43)
    assert "| Toy | ERM | B | 1 | 1/3 (45.0) | 1/1 (43.0) |" in md
    assert "pick the same draw and step on 0 of 6 cells both have." in md
    assert "same draw and step on 6 of 6" in picks_markdown(runs, ["oracle", "train_domain"])
