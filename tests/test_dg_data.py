"""DG data: domain-balanced batching, unlabeled target items, and folder benchmarks' bad input."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from mmengine.dataset import DefaultSampler, default_collate
from mmengine.runner import Runner
from PIL import Image

import dgsamp  # noqa: F401
from dgsamp.datasets import (
    PACS,
    DomainBalancedBatchSampler,
    DomainFolders,
    RotatedDigits,
    SourceTargetDataset,
)


@pytest.fixture(scope="module")
def digits_train():
    return RotatedDigits(test_domains=["75"], part="train", image_size=8)


def test_balanced_batches_have_one_minibatch_per_domain(digits_train):
    sampler = DomainBalancedBatchSampler(DefaultSampler(digits_train, shuffle=True, seed=0), 16)
    batches = list(sampler)
    per_domain = Counter(digits_train.item_domains.tolist())
    assert len(batches) == len(sampler) == min(per_domain.values()) // 16
    for batch in batches:
        doms = digits_train.item_domains[batch].tolist()
        assert Counter(doms) == {d: 16 for d in range(5)}  # the 5 training domains
        assert doms == sorted(doms)  # minibatches concatenated in domain order
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))  # 'min' epochs repeat nothing


def test_balanced_batches_reshuffle_by_epoch_and_repeat_by_seed(digits_train):
    def epoch(seed, e):
        s = DomainBalancedBatchSampler(DefaultSampler(digits_train, shuffle=True, seed=seed), 8)
        s.set_epoch(e)
        return list(s)

    assert epoch(0, 0) == epoch(0, 0)
    assert epoch(0, 0) != epoch(0, 1)
    assert epoch(0, 0) != epoch(1, 0)


def test_balanced_max_epoch_covers_the_largest_domain():
    ds = RotatedDigits(test_domains=["75"], part="train", image_size=8)
    sampler = DomainBalancedBatchSampler(DefaultSampler(ds, shuffle=False), 50,
                                         epoch_length="max")
    seen = {i for b in sampler for i in b}
    assert seen == set(range(len(ds)))
    with pytest.raises(ValueError, match="epoch_length"):
        DomainBalancedBatchSampler(DefaultSampler(ds), 8, epoch_length="mean")


def test_balanced_sampler_from_a_dataloader_config(digits_train):
    loader = Runner.build_dataloader(dict(
        batch_size=4, sampler=dict(type="DefaultSampler", shuffle=True),
        batch_sampler=dict(type="DomainBalancedBatchSampler"),
        collate_fn=dict(type="default_collate"),
        dataset=dict(type="RotatedDigits", test_domains=["0"], part="train", image_size=8)),
        seed=0)
    batch = next(iter(loader))
    assert batch["inputs"].shape == (20, 1, 8, 8)
    assert batch["data_samples"]["domain"].tolist() == [d for d in range(1, 6) for _ in range(4)]


def test_item_labels_are_the_labels_getitem_returns(digits_train):
    labels = digits_train.item_labels
    assert labels.shape == (len(digits_train),) and labels.dtype == torch.long
    for i in (0, 1, len(digits_train) // 2, len(digits_train) - 1):
        assert int(labels[i]) == int(digits_train[i]["data_samples"]["label"])


def test_sampler_needs_item_domains():
    with pytest.raises(TypeError, match="item_domains"):
        DomainBalancedBatchSampler(DefaultSampler(list(range(10))), 2)


def test_source_target_items_carry_no_target_label():
    ds = SourceTargetDataset(dict(type="RotatedDigits", test_domains=["75"], part="train",
                                  image_size=8))
    assert ds.metainfo["target_domains"] == ["75"]
    assert len(ds.target) > 0 and len(ds) == len(ds.source) + len(ds.target)
    src = ds[0]["data_samples"]
    tgt = ds[len(ds) - 1]["data_samples"]
    assert src["label"] >= 0 and src["domain"] != 5
    assert tgt == dict(label=-1, domain=5)
    batch = default_collate([ds[i] for i in (0, len(ds) - 1)])
    assert batch["data_samples"]["label"].tolist()[1] == -1
    assert torch.equal(ds.item_domains[len(ds.source):], torch.full((len(ds.target),), 5))


# -- folder benchmarks: each bad input is a clear error naming the folder or file ---------------
def _make_tree(root, domains=("a", "b"), classes=("cat", "dog"), n=2):
    for d in domains:
        for c in classes:
            folder = root / d / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (10, 10), (i * 40, 80, 120)).save(folder / f"{i}.png")


def test_folder_benchmark_reads_a_good_tree(tmp_path):
    _make_tree(tmp_path)
    ds = DomainFolders(data_root=str(tmp_path), test_domains=["b"], part="eval", image_size=8)
    assert ds.metainfo["domains"] == ["a", "b"] and ds.metainfo["classes"] == ["cat", "dog"]
    item = ds[0]
    assert item["inputs"].shape == (3, 8, 8)


def test_missing_domain_folder_is_named(tmp_path):
    _make_tree(tmp_path / "PACS", domains=("art_painting", "cartoon", "photo"))
    with pytest.raises(FileNotFoundError, match="Domain folder") as err:
        PACS(data_root=str(tmp_path / "PACS"), test_domains=["photo"])
    assert str(tmp_path / "PACS" / "sketch") in str(err.value)
    assert "Expected layout" in str(err.value)


def test_empty_class_folder_is_named(tmp_path):
    _make_tree(tmp_path)
    for f in (tmp_path / "b" / "dog").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="has no images") as err:
        DomainFolders(data_root=str(tmp_path), test_domains=["b"])
    assert str(tmp_path / "b" / "dog") in str(err.value)


def test_class_sets_that_differ_between_domains_are_named(tmp_path):
    _make_tree(tmp_path)
    _make_tree(tmp_path, domains=("b",), classes=("cat", "dog", "horse"))
    with pytest.raises(ValueError, match="Class folders differ") as err:
        DomainFolders(data_root=str(tmp_path), test_domains=["b"])
    assert str(tmp_path / "b") in str(err.value) and "horse" in str(err.value)


def test_corrupt_image_is_named(tmp_path):
    _make_tree(tmp_path)
    bad = tmp_path / "b" / "cat" / "1.png"  # in the test domain: evaluated whole
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="Cannot read image") as err:
        DomainFolders(data_root=str(tmp_path), test_domains=["b"], verify_images=True)
    assert str(bad) in str(err.value)
    # without the up-front check, the first read of that file names it
    ds = DomainFolders(data_root=str(tmp_path), test_domains=["b"], part="eval")
    with pytest.raises(ValueError, match="Cannot read image") as err:
        for i in range(len(ds)):
            ds[i]
    assert str(bad) in str(err.value)



def test_colored_digits_colour_agrees_with_the_label_as_named():
    """The colour channel agrees with the (noisy) label in 90% / 80% / 10% of each domain's
    images, as the domain names say; class 1 is 'digit<5' (label = (digit < 5) XOR noise)."""
    from dgsamp.datasets.benchmarks import ColoredDigits
    from dgsamp.datasets.digits import colored_digits

    assert ColoredDigits.classes[1] == "digit<5"
    for dom, agree in zip(colored_digits(image_size=12), (0.9, 0.8, 0.1), strict=True):
        colour = dom.images.sum((2, 3)).argmax(1)
        assert abs(float((colour == dom.labels).float().mean()) - agree) < 0.05, dom.name


# --- training augmentation (dgsamp.datasets.transforms) ---------------------------------------

_JITTER = [dict(type="ColorJitter", brightness=0.5, contrast=0.5)]


def test_transforms_run_between_reading_and_normalising(tmp_path):
    """ColorJitter assumes [0, 1] images: on a folder domain it must see the read image and the
    ImageNet normalisation must come after it, exactly once."""
    _make_tree(tmp_path)
    plain = DomainFolders(data_root=str(tmp_path), test_domains=["b"], image_size=8)
    identity = DomainFolders(data_root=str(tmp_path), test_domains=["b"], image_size=8,
                             transforms=[dict(type="Lambda", lambd=lambda x: x)])
    seen = []
    spy = DomainFolders(data_root=str(tmp_path), test_domains=["b"], image_size=8,
                        transforms=[dict(type="Lambda", lambd=lambda x: seen.append(x) or x)])
    torch.testing.assert_close(identity[0]["inputs"], plain[0]["inputs"])
    spy[0]
    assert 0.0 <= float(seen[0].min()) and float(seen[0].max()) <= 1.0
    assert float(plain[0]["inputs"].min()) < 0.0  # the loader's output is normalised


def test_transforms_are_seeded_by_torch_and_change_the_image():
    ds = RotatedDigits(test_domains=["75"], part="train", image_size=8, transforms=_JITTER)
    plain = RotatedDigits(test_domains=["75"], part="train", image_size=8)
    torch.manual_seed(0)
    a = ds[3]["inputs"]
    torch.manual_seed(0)
    b = ds[3]["inputs"]
    torch.testing.assert_close(a, b)
    assert not torch.equal(ds[3]["inputs"], a)  # a new draw
    assert not torch.equal(a, plain[3]["inputs"])
    assert ds[3]["data_samples"] == plain[3]["data_samples"]


def test_transforms_only_where_configured():
    ev = RotatedDigits(test_domains=["75"], part="eval", image_size=8)
    assert ev.transform is None
    assert torch.equal(ev[0]["inputs"], ev[0]["inputs"])


@pytest.mark.parametrize("specs, match", [
    ([dict(type="ColourJitter")], "unknown transform 'ColourJitter'.*'ColorJitter'"),
    ([dict(type="RandomGrayscale", prob=0.1)], r"RandomGrayscale.*Fix: pass the arguments"),
    ([dict(p=0.1)], r"transforms\[0\].*'type' key"),
    (dict(type="RandomGrayscale"), "wrap it in a list"),
])
def test_bad_transforms_are_named_before_any_data_is_read(specs, match):
    with pytest.raises(ValueError, match=match):
        RotatedDigits(test_domains=["75"], image_size=8, transforms=specs)
