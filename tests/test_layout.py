"""The layout's promises (docs/CONTRIBUTING.md): plain-PyTorch methods, one reader of work dirs,
one metric-key convention, and the pieces moved out of hooks behave as before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from torch import nn


def test_methods_import_without_mmengine():
    """dgsamp.methods (SWAD and BN re-estimation included) works where mmengine is absent."""
    code = ("import sys\n"
            "class Absent:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('mmengine', 'mmdet', 'mmseg', 'mmcv'):\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Absent())\n"
            "import dgsamp.methods, dgsamp.methods.swad, dgsamp.methods.bn_stats\n"
            "assert dgsamp.methods.SWAD and dgsamp.methods.reestimate_bn_stats\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_swad_plain_valley_rule_and_state_round_trip():
    from dgsamp.methods.swad import SWAD

    model = nn.Linear(1, 1, bias=False)
    a = SWAD(n_converge=2, n_tolerance=1, tolerance=1.0)
    events = []
    for w, score in [(0, 50), (1, 80), (2, 79), (3, 10)]:
        with torch.no_grad():
            model.weight.fill_(float(w))
        a.collect(model)
        events.append(a.end_segment(score))
    assert events == [None, None, "opened", "closed"] and a.phase == "done"
    b = SWAD(n_converge=2, n_tolerance=1)
    b.load_state_dict(a.state_dict())
    avg = b.averaged()
    assert avg.count == 2 and torch.equal(avg.sums["weight"], a.averaged().sums["weight"])
    avg.load_mean_into(model)
    assert float(model.weight.detach()) == 1.5  # mean of segments 1 and 2


def _vis(tmp_path, stamp: str, lines: list[dict], name: str = "scalars.json") -> None:
    vis = tmp_path / stamp / "vis_data"
    vis.mkdir(parents=True)
    (vis / name).write_text("\n".join(json.dumps(r) for r in lines) + "\n{half a line")


def test_run_reader_resumed_run_later_step_wins(tmp_path):
    from dgsamp.evaluation.runs import scalar_records, validation_records

    _vis(tmp_path, "20260101_000000", [{"loss": 1.0, "step": 1}, {"acc/a": 10.0, "step": 1},
                                       {"acc/a": 20.0, "step": 2}])
    # a resumed run's folder with only <timestamp>.json (the same records mmengine logs)
    _vis(tmp_path, "20260102_000000", [{"acc/a": 25.0, "step": 2}, {"acc/a": 30.0, "step": 3}],
         name="20260102_000000.json")
    assert len(scalar_records(str(tmp_path))) == 5  # the half-written line is skipped
    recs = validation_records(str(tmp_path))
    assert [(r["step"], r["acc/a"]) for r in recs] == [(1, 10.0), (2, 25.0), (3, 30.0)]


def test_domain_group_means_and_table_use_the_classification_keys():
    from dgsamp.evaluation.domain_metric import add_group_means, format_domain_table

    m = add_group_means({"AP50/clean": 80.0, "AP50/fog": 10.0, "AP50/dark": 30.0},
                        ["clean", "fog", "dark"], ["clean"])
    assert m["AP50/train_domains"] == 80.0 and m["AP50/test_domains"] == 20.0
    table = format_domain_table(m, ["clean", "fog", "dark"]).splitlines()
    assert table[0].split() == ["domain", "AP50"]
    assert [ln.split()[0] for ln in table[1:]] == ["clean", "fog", "dark", "train_domains",
                                                  "test_domains"]


def test_strong_augment_draws_per_image_and_keeps_range():
    pytest.importorskip("mmseg")
    from dgsamp.detseg.seg_mean_teacher import strong_augment

    img = torch.rand(3, 3, 16, 16) * 255
    assert torch.equal(strong_augment(img, 0.0, 0.0), img)  # nothing on: unchanged
    torch.manual_seed(0)
    out = strong_augment(img, 0.3, 1.0)
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 255.0 + 1e-3
    torch.manual_seed(0)
    factors = [(1 + (torch.rand(3) * 2 - 1) * 0.3) for _ in range(3)]
    assert not torch.allclose(factors[0], factors[0][:1].expand(3))  # differ per image
    # a constant image stays constant under brightness/contrast/saturation-free blur
    flat = torch.full((1, 3, 8, 8), 100.0)
    assert torch.allclose(strong_augment(flat, 0.0, 1.0), flat, atol=1e-3)
