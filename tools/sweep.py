"""Leave-one-domain-out sweeps: every held-out domain x trial seed x hyper-parameter draw.

    python tools/sweep.py configs/dg/erm_rotated_digits.py configs/dg/dann_rotated_digits.py \
        --name rotated --seeds 0 1 2 --jobs 2
    python tools/sweep.py configs/dg/benchmarks/pacs_resnet50.py --algorithms ERM CORAL DANN \
        --name pacs --n-hparams 5 --loo

Each job is `tools/train.py` on a config written to its work dir,
``<root>/<name>/<algorithm>/<held-out domain>/seed<k>[_hp<h>]/`` (``<a>__<b>`` for the pair
runs of ``--loo``), together with ``job.json`` (what tools/collect_results.py groups by). A job
whose ``results.json`` exists is finished and is not run again, so a sweep can be re-launched
after an interruption or extended with more seeds. Trial seed k sets the training seed and the
80/20 split seed of every data set (``--split-seed N``: split N for every trial); draw 0 is
the config's hyper-parameters, draws h > 0 are
DomainBed-style seeded random draws (dgsamp.models.algorithms.hparams), the same for every
held-out domain. ``--variant NAME`` with ``--cfg-options`` names a hand-chosen setting instead
(leaf ``seed<k>_<NAME>``, job.json ``hparams: NAME``): tools/collect_results.py then chooses
between it and the config's defaults by validation, as it chooses between random draws.
``--jobs N`` starts N worker processes that train their share of the jobs one after another
(``--threads`` CPU threads each; one import per worker, not per job); each job's output goes
to its ``train.log``. A progress bar with an ETA follows the jobs as their results
appear; failed jobs are listed at the end with their ``train.log``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from itertools import combinations

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout

from mmengine.config import Config, DictAction  # noqa: E402

import dgsamp  # noqa: E402, F401  (registers data sets)
from dgsamp.engine.run_queue import RunProgress  # noqa: E402
from dgsamp.evaluation.model_selection import algorithm_label  # noqa: E402
from dgsamp.models.algorithms import apply_algorithm, draw_hparams  # noqa: E402

FAILED_MARK = "FAILED"  # a worker leaves this in a job's work dir when the job failed


@dataclass
class Job:
    work_dir: str
    cfg: Config
    info: dict

    @property
    def done(self) -> bool:  # a finished job is never run again
        return osp.isfile(osp.join(self.work_dir, "results.json"))


def safe_name(domain: str) -> str:
    """A folder name for a domain ('-90%' -> '-90pct', 'Real World' -> 'Real_World')."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", domain.replace("%", "pct"))


def _dataset_dicts(node) -> list:
    """Every data set config inside a config tree (dicts that have ``test_domains``)."""
    found = []
    if isinstance(node, dict):
        if "test_domains" in node:
            found.append(node)
        for v in node.values():
            found += _dataset_dicts(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            found += _dataset_dicts(v)
    return found


def benchmark_domains(cfg: Config) -> tuple[str, list[str]]:
    """(data set type, domain names) of the config's validation data set."""
    from mmengine.registry import DATASETS

    ds = cfg.val_dataloader.dataset
    dataset = DATASETS.build(ds)
    return ds.type, list(dataset.metainfo["domains"])


def make_jobs(args) -> list[Job]:
    jobs = []
    variant = getattr(args, "variant", None)  # a named --cfg-options setting (main checks it)
    sources: list[tuple[str, str | None]] = []
    if args.algorithms:
        if len(args.configs) != 1:
            raise SystemExit("--algorithms takes one (ERM) config to turn into each algorithm.")
        sources = [(args.configs[0], a) for a in args.algorithms]
    else:
        sources = [(c, None) for c in args.configs]
    for config, algorithm in sources:
        base = Config.fromfile(config)
        if args.cfg_options:
            base.merge_from_dict(args.cfg_options)
        dataset, domains = benchmark_domains(base)
        if algorithm is not None:
            apply_algorithm(base, algorithm, num_domains=len(domains))
        algorithm = algorithm_label(base)  # 'ERM+SWAD' for ERM trained with SWADHook
        tests = args.test_domains or domains
        unknown = [d for d in tests if d not in domains]
        if unknown:
            raise SystemExit(f"--test-domains {unknown} are not domains of {dataset}: {domains}")
        held_outs = [(d,) for d in tests]
        if args.loo:
            held_outs += [p for p in combinations(domains, 2)
                          if p[0] in tests or p[1] in tests]
        for held in held_outs:
            for seed in args.seeds:
                for hp in range(args.n_hparams):
                    cfg = copy.deepcopy(base)
                    for ds in _dataset_dicts(cfg._cfg_dict):
                        ds["test_domains"] = list(held)
                        ds["split_seed"] = split_seed_of(seed, args)
                    cfg.randomness = dict(seed=seed, deterministic=False)
                    draws = draw_hparams(base.model.type, hp, seed)
                    if draws:
                        cfg.merge_from_dict(draws)
                    name = "__".join(safe_name(d) for d in held)
                    leaf = f"seed{seed}" + (f"_{variant}" if variant else
                                            f"_hp{hp}" if args.n_hparams > 1 else "")
                    work_dir = osp.abspath(osp.join(args.root, args.name, algorithm.lower(), name,
                                                   leaf))
                    cfg.work_dir = work_dir
                    info = dict(algorithm=algorithm, dataset=dataset, held_out=list(held),
                                trial_seed=seed, split_seed=split_seed_of(seed, args),
                                hparams=variant or str(hp), hparam_values=draws,
                                domains=domains, config=config,
                                cfg_options=dict(args.cfg_options or {}))
                    jobs.append(Job(work_dir, cfg, info))
    return jobs


def split_seed_of(seed: int, args: argparse.Namespace) -> int:
    """The 80/20 split seed of trial ``seed``."""
    return seed if args.split_seed is None else args.split_seed


def prepare(job: Job) -> None:
    """Write the job's config.py and job.json into its work dir."""
    os.makedirs(job.work_dir, exist_ok=True)
    job.cfg.dump(osp.join(job.work_dir, "config.py"))
    with open(osp.join(job.work_dir, "job.json"), "w") as f:
        json.dump(job.info, f, indent=2, default=str)


def worker(work_dirs: list[str]) -> int:
    """Train the prepared jobs one after another in this process (one import for all).

    Each job's output goes to its ``train.log``; a failing job is reported and skipped.
    """
    import contextlib
    import traceback

    from tools.train import main as train_main

    failed = 0
    for work_dir in work_dirs:
        ok = True
        with open(osp.join(work_dir, "train.log"), "w") as log, \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                train_main([osp.join(work_dir, "config.py"), "--work-dir", work_dir])
            except Exception:  # noqa: BLE001  (the sweep goes on; the log has the traceback)
                traceback.print_exc()
                ok = False
        ok = ok and osp.isfile(osp.join(work_dir, "results.json"))
        failed += not ok
        if not ok:  # the parent sees the job as failed once this worker has exited
            open(osp.join(work_dir, FAILED_MARK), "w").close()
    return 1 if failed else 0


def watch(procs: list[subprocess.Popen], jobs: list[Job], poll_s: float = 2.0) -> list[Job]:
    """A progress bar over the jobs while the workers train them; returns the failed jobs.

    A job counts as finished when its results.json appears, as failed when its worker marks it
    so (or exits without reaching it)."""
    left = list(jobs)
    with RunProgress(len(jobs), "sweep") as progress:
        while left:
            running = any(p.poll() is None for p in procs)
            for job in list(left):
                failed = osp.isfile(osp.join(job.work_dir, FAILED_MARK)) or not running
                if job.done or failed:
                    progress.finished(job.work_dir, job.done, osp.join(job.work_dir, "train.log"))
                    left.remove(job)
            if left:
                time.sleep(poll_s)
    return [job for job in jobs if not job.done]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Leave-one-domain-out sweep over a benchmark")
    parser.add_argument("configs", nargs="+", help="one config per algorithm, or one ERM "
                        "config with --algorithms")
    parser.add_argument("--name", required=True, help="sweep name (folder under --root)")
    parser.add_argument("--root", default="work_dirs/sweeps")
    parser.add_argument("--algorithms", nargs="+", help="turn one ERM config into these")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="trial seeds (training seed and, unless --split-seed, 80/20 "
                        "split seed)")
    parser.add_argument("--split-seed", type=int, default=None,
                        help="one 80/20 split for every trial (default: trial seed k splits with "
                        "seed k, DomainBed's protocol); the seeds then vary only the training "
                        "seed (initialisation, data order)")
    parser.add_argument("--test-domains", nargs="+", help="held-out domains (default: all)")
    parser.add_argument("--n-hparams", type=int, default=1,
                        help="hyper-parameter draws per job (draw 0: the config's)")
    parser.add_argument("--loo", action="store_true", help="also hold out every pair of "
                        "domains (for leave-one-domain-out model selection)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per training")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="overrides for every job")
    parser.add_argument("--variant", help="name the --cfg-options as one hyper-parameter "
                        "setting; selection then weighs it against the config's defaults")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs, run nothing")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return worker([osp.abspath(d) for d in argv[1:]])
    args = parser.parse_args(argv)
    if args.variant is not None:
        if not args.cfg_options or args.n_hparams != 1:
            parser.error("--variant names a setting given by --cfg-options; give --cfg-options "
                         "and leave --n-hparams at 1.")
        if safe_name(args.variant) != args.variant or args.variant.isdigit():
            parser.error(f"--variant {args.variant!r}: use letters, digits, '_', '.', '+', '-' "
                         f"and not a bare number (numbers are random draws).")
    jobs = make_jobs(args)
    todo = [j for j in jobs if not j.done]
    print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} finished already, {len(todo)} to run")
    if args.dry_run:
        for j in todo:
            print("  ", j.work_dir)
        return 0
    for job in todo:
        prepare(job)
        if osp.isfile(osp.join(job.work_dir, FAILED_MARK)):
            os.remove(osp.join(job.work_dir, FAILED_MARK))
    # N worker processes, each training its share of the jobs in turn (one import each)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    n = max(1, min(args.jobs, len(todo)))
    procs = [subprocess.Popen([sys.executable, osp.abspath(__file__), "--worker",
                               *[j.work_dir for j in todo[i::n]]], env=env, cwd=ROOT)
             for i in range(n) if todo[i::n]]
    failed = watch(procs, todo)  # the bar; failed jobs are listed with their train.log
    for p in procs:
        p.wait()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
