"""How much of a DG run's held-out accuracy, and of its spread over seeds, is BatchNorm statistics.

    python tools/bn_shift.py work_dirs/sweeps/sg_bn/erm/sketch/seed* --out bn_shift.json

For each finished run (a tools/sweep.py or tools/train.py work dir: its config and the model its
results.json reports, the last checkpoint or SWAD's ``swad.pth``) the test domain is evaluated
three times, with BatchNorm running statistics
1. as trained (what the DG tables report; checked against the run's results.json),
2. re-estimated on the training domains' training images (the mean over the images and the
   mean of per-batch variances, equal weight per batch, as SWAD does: tells whether the noise
   of the running averages is the cause), and
3. re-estimated on the test domain's own images (AdaBN, Li et al. 2016). This reads unlabeled
   test-domain images, so it is a diagnostic of the shift, never a DG result.
Batches are drawn in a seeded random order from each set (a class-sorted set would otherwise
give per-batch variances of one class). Mean and SD over the runs are printed per setting and,
with ``--out``, written as JSON. A model without BatchNorm layers that track running statistics
has only the first ("unavailable" for the others, never a number).
"""

from __future__ import annotations

import argparse
import glob
import json
import os.path as osp
import re
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.registry import DATASETS, MODELS  # noqa: E402
from mmengine.runner import find_latest_checkpoint  # noqa: E402

import dgsamp  # noqa: E402, F401
from dgsamp.evaluation.model_selection import run_config  # noqa: E402
from dgsamp.evaluation.runs import load_json  # noqa: E402
from dgsamp.evaluation.stats import mean_se  # noqa: E402
from dgsamp.methods.bn_stats import bn_layers, reestimate_bn_stats  # noqa: E402

SETTINGS = ("as trained", "training domains", "test domain (AdaBN, diagnostic)")


def _images(dataset, domain: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of ``dataset`` (of one benchmark domain only: the others are not read)."""
    wanted = (range(len(dataset)) if domain is None
              else (dataset.item_domains == domain).nonzero().flatten().tolist())
    items = [dataset[i] for i in wanted]
    return (torch.stack([it["inputs"] for it in items]),
            torch.tensor([it["data_samples"]["label"] for it in items]))


def checkpoint_of(work_dir: str) -> str:
    """The weights the run reports: SWAD's ``swad.pth`` if it saved one, else the checkpoint
    mmengine's ``last_checkpoint`` names, else the highest-numbered epoch_*/iter_*.pth."""
    swad = osp.join(work_dir, "swad.pth")
    if osp.isfile(swad):
        return swad
    if osp.isfile(osp.join(work_dir, "last_checkpoint")):
        path = find_latest_checkpoint(work_dir)  # an absolute path where the run was trained
        for candidate in (path, osp.join(work_dir, osp.basename(path))):
            if osp.isfile(candidate):
                return candidate
    found = glob.glob(osp.join(work_dir, "epoch_*.pth")) + glob.glob(osp.join(work_dir,
                                                                              "iter_*.pth"))
    if not found:
        raise SystemExit(f"{work_dir}: no checkpoint (swad.pth, last_checkpoint, epoch_*.pth). "
                         f"Fix: pass finished work dirs of tools/train.py or tools/sweep.py.")
    return max(found, key=lambda p: int(re.findall(r"\d+", osp.basename(p))[-1]))


def _batches(images: torch.Tensor, batch_size: int, seed: int = 0):
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return (images[order[i:i + batch_size]] for i in range(0, len(order), batch_size))


@torch.no_grad()
def bn_shift(work_dir: str, batch_size: int = 64) -> dict:
    """Test-domain accuracy (%) of one run under each of ``SETTINGS``."""
    cfg = run_config(work_dir)
    if cfg is None:
        raise SystemExit(f"{work_dir}: no config.py (tools/sweep.py) or <timestamp>/vis_data/"
                         f"config.py (tools/train.py). Fix: pass finished run work dirs.")
    model = MODELS.build(cfg.model)
    state = torch.load(checkpoint_of(work_dir), map_location="cpu", weights_only=False)
    model.load_state_dict(state["state_dict"])
    model.eval()
    evaluation = DATASETS.build(cfg.val_dataloader.dataset)
    held_out = list(evaluation.metainfo["test_domains"])
    if len(held_out) != 1:
        raise SystemExit(f"{work_dir}: holds out {held_out}; the BN diagnostic needs exactly "
                         f"one test domain. Fix: pass single-domain runs (not --loo pair runs).")
    test_domain = held_out[0]
    x, y = _images(evaluation, evaluation.metainfo["domains"].index(test_domain))
    x_train, _ = _images(DATASETS.build(dict(cfg.train_dataloader.dataset, transforms=None)))

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return model(batch, mode="tensor")

    def accuracy() -> float:
        hits = sum(int((forward(x[i:i + 256]).argmax(-1) == y[i:i + 256]).sum())
                   for i in range(0, len(x), 256))
        return 100.0 * hits / len(x)

    out = {SETTINGS[0]: accuracy()}
    reported = ((load_json(osp.join(work_dir, "results.json")) or {}).get("metrics")
                or {}).get(f"acc/{test_domain}")
    if reported is not None and abs(reported - out[SETTINGS[0]]) > 1e-6:
        raise SystemExit(f"{work_dir}: the checkpoint gives {out[SETTINGS[0]]:.4f}% on "
                         f"{test_domain}, results.json reports {reported:.4f}%: not the model "
                         f"the run reported. Fix: keep the run's final checkpoint in its dir.")
    if not any(m.track_running_stats for m in bn_layers(model)):  # nothing to re-estimate
        return dict(work_dir=work_dir, test_domain=test_domain,
                    accuracy={**out, SETTINGS[1]: None, SETTINGS[2]: None})
    reestimate_bn_stats(model, _batches(x_train, batch_size), forward)
    out[SETTINGS[1]] = accuracy()
    reestimate_bn_stats(model, _batches(x, batch_size), forward)
    out[SETTINGS[2]] = accuracy()
    return dict(work_dir=work_dir, test_domain=test_domain, accuracy=out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dirs", nargs="+", help="finished run work dirs")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="images per BatchNorm re-estimation batch (default: 64, the "
                             "training batch size of the shipped configs)")
    parser.add_argument("--out", help="write the per-run results and the summary as JSON")
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        parser.error(f"--batch-size {args.batch_size}: BatchNorm needs at least 2 images per "
                     f"batch. Fix: --batch-size 64.")
    torch.set_num_threads(1)
    runs = []
    for work_dir in args.work_dirs:
        runs.append(bn_shift(work_dir, args.batch_size))
        print(work_dir, " / ".join("unavailable" if v is None else f"{v:.2f}"
                                   for v in runs[-1]["accuracy"].values()), flush=True)
    summary = {}
    for s in SETTINGS:
        stat = mean_se(r["accuracy"][s] for r in runs)
        summary[s] = dict(mean=stat.mean, sd=stat.sd, n=stat.n)
        if stat.mean is None:
            print(f"{s}: unavailable (a run without BatchNorm statistics to re-estimate)")
            continue
        print(f"{s}: mean {stat.mean:.2f}, SD "
              + (f"{stat.sd:.2f}" if stat.sd is not None else "unavailable (1 run)"))
    result = dict(runs=runs, summary=summary)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
