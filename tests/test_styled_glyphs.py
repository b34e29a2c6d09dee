"""StyledGlyphs: determinism by seed, counts and sizes, the cache, bad input, registration."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import dgsamp  # noqa: F401
from dgsamp.datasets import StyledGlyphs
from dgsamp.datasets import glyphs as glyphs_module
from dgsamp.datasets.glyphs import STYLES, styled_glyphs

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "dg"
SMALL = dict(images_per_domain=40, num_classes=4, image_size=16)


def test_same_seed_same_images_other_seed_other_images(tmp_path):
    a, classes = styled_glyphs(seed=0, cache_dir=tmp_path / "a", **SMALL)
    b, _ = styled_glyphs(seed=0, cache_dir=tmp_path / "b", **SMALL)  # regenerated, not read
    c, _ = styled_glyphs(seed=1, cache_dir=tmp_path / "a", **SMALL)
    assert classes == ["A", "B", "C", "D"]
    for da, db, dc in zip(a, b, c, strict=True):
        assert torch.equal(da.images, db.images) and torch.equal(da.labels, db.labels)
        assert not torch.equal(da.images, dc.images)


def test_domains_classes_and_sizes(tmp_path):
    domains, classes = styled_glyphs(seed=0, cache_dir=tmp_path, **SMALL)
    assert [d.name for d in domains] == list(STYLES)
    for d in domains:
        assert d.images.shape == (40, 3, 16, 16) and d.images.dtype == torch.float32
        assert 0 <= d.images.min() and d.images.max() <= 1 and d.images.std() > 0.05
        assert torch.bincount(d.labels, minlength=4).tolist() == [10, 10, 10, 10]  # balanced
    # the styles differ: mean colour statistics are not those of one shared rendering
    means = torch.stack([d.images.mean(dim=(0, 2, 3)) for d in domains])
    assert torch.cdist(means, means).fill_diagonal_(1).min() > 0.01


def test_second_build_reads_the_cache(tmp_path, monkeypatch):
    first, _ = styled_glyphs(seed=0, cache_dir=tmp_path, **SMALL)
    assert len(list(tmp_path.glob("styled_glyphs_*_seed0.npz"))) == 1

    def fail(*a, **k):
        raise AssertionError("regenerated although the cache file exists")

    monkeypatch.setattr(glyphs_module, "render_domain", fail)
    second, _ = styled_glyphs(seed=0, cache_dir=tmp_path, **SMALL)
    assert all(torch.equal(x.images, y.images) for x, y in zip(first, second, strict=True))
    with pytest.raises(AssertionError, match="regenerated"):  # other parameters: other file
        styled_glyphs(seed=0, cache_dir=tmp_path, **dict(SMALL, images_per_domain=44))


def test_corrupt_cache_file_is_regenerated_with_a_warning(tmp_path):
    good, _ = styled_glyphs(seed=0, cache_dir=tmp_path, **SMALL)
    other, _ = styled_glyphs(seed=1, cache_dir=tmp_path, **SMALL)
    (path,) = tmp_path.glob("styled_glyphs_*_seed0.npz")
    (keep,) = tmp_path.glob("styled_glyphs_*_seed1.npz")
    before = keep.read_bytes()
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.warns(RuntimeWarning, match="unreadable.*regenerating"):
        again, _ = styled_glyphs(seed=0, cache_dir=tmp_path, **SMALL)
    assert all(torch.equal(x.images, y.images) for x, y in zip(good, again, strict=True))
    assert keep.read_bytes() == before  # nothing else touched
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the rewritten file reads cleanly
        styled_glyphs(seed=0, cache_dir=tmp_path, **SMALL)


@pytest.mark.parametrize("kwargs, match", [
    (dict(styles=["photo", "watercolour"]), "watercolour"),
    (dict(styles=[]), "each style once"),
    (dict(images_per_domain=0), "images_per_domain=0"),
    (dict(images_per_domain=-5), "images_per_domain=-5"),
    (dict(image_size=0), "image_size=0"),
    (dict(num_classes=1), "num_classes=1"),
    (dict(num_classes=99), "num_classes=99"),
])
def test_bad_parameters_name_the_problem(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        styled_glyphs(cache_dir=tmp_path, **{**SMALL, **kwargs})


def test_benchmark_view_protocol_and_unknown_domain(tmp_path):
    kw = dict(SMALL, cache_dir=str(tmp_path))
    train = StyledGlyphs(test_domains=["sketch"], part="train", **kw)
    evaluation = StyledGlyphs(test_domains=["sketch"], part="eval", **kw)
    assert len(train) == 3 * 32  # 80% of the three training domains
    assert len(evaluation) == 3 * 8 + 40  # their 20% and the whole test domain
    assert evaluation.metainfo["test_domains"] == ["sketch"]
    assert evaluation.metainfo["classes"] == ["A", "B", "C", "D"]
    with pytest.raises(ValueError, match="Unknown domain 'clipart'"):
        StyledGlyphs(test_domains=["clipart"], **kw)
    with pytest.raises(ValueError, match="images_per_domian"):
        StyledGlyphs(images_per_domian=10)


@pytest.mark.parametrize("name", ["erm", "erm_styled_glyphs_vit", "mixup", "dann", "mixstyle"])
def test_configs_load(name):
    stem = name if name.startswith("erm_") else f"{name}_styled_glyphs"
    cfg = Config.fromfile(str(CONFIGS / f"{stem}.py"))
    assert cfg.train_dataloader.dataset.type == "StyledGlyphs"
    assert cfg.val_dataloader.dataset.test_domains == ["sketch"]
    assert cfg.model.num_classes == 10 and cfg.model.in_chans == 3


def test_vit_backbone_normalizes_its_inputs_and_trains_a_step():
    """The hybrid ViT config: inputs normalized by its data preprocessor, 16 tokens, a loss."""
    from mmengine.registry import MODELS

    cfg = Config.fromfile(str(CONFIGS / "erm_styled_glyphs_vit.py"))
    model = MODELS.build(cfg.model)
    assert model.featurizer.patch_embed.grid_size == (4, 4)
    x = torch.full((2, 3, 32, 32), 0.5)
    data = model.data_preprocessor(dict(inputs=x, data_samples=dict(
        label=torch.tensor([0, 1]), domain=torch.tensor([0, 0]))), training=True)
    mean = torch.tensor([0.529, 0.495, 0.502]).view(1, 3, 1, 1)
    std = torch.tensor([0.280, 0.265, 0.285]).view(1, 3, 1, 1)
    torch.testing.assert_close(data["inputs"], (x - mean) / std)
    loss = model(**data, mode="loss")["loss_cls"]
    loss.backward()
    assert torch.isfinite(loss) and model.classifier.weight.grad.abs().sum() > 0
