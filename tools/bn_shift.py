"""How much of a DG run's held-out accuracy, and of its spread over seeds, is BatchNorm statistics.

    python tools/bn_shift.py work_dirs/sweeps/sg_6000/erm/sketch/seed* --out bn_shift.json

For each finished run (a tools/sweep.py or tools/train.py work dir: its ``config.py`` and last
checkpoint) the test domain is evaluated three times, with BatchNorm running statistics
1. as trained (what the DG tables report),
2. re-estimated on the training domains' training images (exact means, as SWAD does: tells
   whether the noise of the running averages is the cause), and
3. re-estimated on the test domain's own images (AdaBN, Li et al. 2016). This reads unlabeled
   test-domain images, so it is a diagnostic of the shift, never a DG result.
Mean and SD over the runs are printed per setting and, with ``--out``, written as JSON. A model
without BatchNorm has only the first ("unavailable" for the others, never a number).
"""

from __future__ import annotations

import argparse
import glob
import json
import os.path as osp
import statistics
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.registry import DATASETS, MODELS  # noqa: E402

import dgsamp  # noqa: E402, F401
from dgsamp.evaluation.model_selection import run_config  # noqa: E402
from dgsamp.methods.bn_stats import bn_layers, reestimate_bn_stats  # noqa: E402

SETTINGS = ("as trained", "training domains", "test domain (AdaBN, diagnostic)")


def _images(dataset, domain: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    keep = [it for it in items if domain is None or it["data_samples"]["domain"] == domain]
    return (torch.stack([it["inputs"] for it in keep]),
            torch.tensor([it["data_samples"]["label"] for it in keep]))


def checkpoint_of(work_dir: str) -> str:
    """The checkpoint mmengine's ``last_checkpoint`` file names, or the newest epoch_*.pth."""
    marker = osp.join(work_dir, "last_checkpoint")
    if osp.isfile(marker):
        with open(marker) as f:
            path = f.read().strip()
        if osp.isfile(path):
            return path
        local = osp.join(work_dir, osp.basename(path))
        if osp.isfile(local):
            return local
    found = sorted(glob.glob(osp.join(work_dir, "epoch_*.pth")), key=osp.getmtime)
    if not found:
        raise SystemExit(f"{work_dir}: no checkpoint (last_checkpoint or epoch_*.pth). Fix: "
                         f"pass finished work dirs of tools/train.py or tools/sweep.py.")
    return found[-1]


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
    (test_domain,) = evaluation.metainfo["test_domains"]
    x, y = _images(evaluation, evaluation.metainfo["domains"].index(test_domain))
    train_cfg = dict(cfg.train_dataloader.dataset, transforms=None)
    x_train, _ = _images(DATASETS.build(train_cfg))
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return model(batch, mode="tensor")

    def accuracy() -> float:
        hits = sum(int((forward(x[i:i + 256]).argmax(-1) == y[i:i + 256]).sum())
                   for i in range(0, len(x), 256))
        return 100.0 * hits / len(x)

    out = {SETTINGS[0]: accuracy()}
    if not bn_layers(model):  # nothing to re-estimate: the other two are not measured
        return dict(work_dir=work_dir, test_domain=test_domain,
                    accuracy={**out, SETTINGS[1]: None, SETTINGS[2]: None})
    reestimate_bn_stats(model, (x_train[order[i:i + batch_size]]
                                for i in range(0, len(order), batch_size)), forward)
    out[SETTINGS[1]] = accuracy()
    reestimate_bn_stats(model, (x[i:i + batch_size] for i in range(0, len(x), batch_size)),
                        forward)
    out[SETTINGS[2]] = accuracy()
    return dict(work_dir=work_dir, test_domain=test_domain, accuracy=out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dirs", nargs="+", help="finished run work dirs")
    parser.add_argument("--out", help="write the per-run results and the summary as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = []
    for work_dir in args.work_dirs:
        runs.append(bn_shift(work_dir))
        print(work_dir, " / ".join("unavailable" if v is None else f"{v:.2f}"
                                   for v in runs[-1]["accuracy"].values()), flush=True)
    summary = {}
    for s in SETTINGS:
        values = [r["accuracy"][s] for r in runs if r["accuracy"][s] is not None]
        if not values:
            summary[s] = dict(mean=None, sd=None, n=0)
            print(f"{s}: unavailable (no BatchNorm layer to re-estimate)")
            continue
        sd = statistics.stdev(values) if len(values) > 1 else None
        summary[s] = dict(mean=statistics.mean(values), sd=sd, n=len(values))
        print(f"{s}: mean {summary[s]['mean']:.2f}, SD "
              + (f"{sd:.2f}" if sd is not None else "unavailable (1 run)"))
    result = dict(runs=runs, summary=summary)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
