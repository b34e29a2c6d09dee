"""Config-facing classification benchmarks: which domains train, which are tested.

`DGBenchmark` turns a list of domains into the view a data loader needs, following DomainBed:
- ``part='train'``: the 80% training part of every domain except the test domains;
- ``part='eval'``: the 20% held-out part of the training domains (for training-domain model
  selection) and the test domains whole (the reported test accuracy).
- ``part='target'``: the test domains' 80% part, for unlabeled-target batches in DA (the labels
  stay in the items but no DA algorithm reads them; tests check that).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence

from mmengine.registry import DATASETS

from .digits import colored_digits, rotated_digits
from .glyphs import styled_glyphs
from .multidomain import Domain, DomainSplitDataset, resolve_domains

PARTS = ("train", "eval", "target")


def _check_kwargs(cls: type, kwargs: dict) -> None:
    accepted = set(inspect.signature(cls.make_domains).parameters)
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{cls.__name__} got an unknown argument {key!r}.{hint} Fix: use "
                             f"test_domains, part, holdout_fraction, split_seed, transforms or "
                             f"one of {sorted(accepted)}.")


class DGBenchmark(DomainSplitDataset):
    """A leave-some-domains-out view of a benchmark (see module docstring)."""

    #: builds the domains (or (domains, class names)) from the ``domain_kwargs``
    make_domains: Callable[..., list[Domain] | tuple[list[Domain], list[str]]]
    classes: Sequence[str] | None = None

    def __init__(self, test_domains: Sequence[str | int] = (), part: str = "train",
                 holdout_fraction: float = 0.2, split_seed: int = 0,
                 transforms: Sequence[dict] | None = None, **domain_kwargs):
        if part not in PARTS:
            raise ValueError(f"part={part!r}: choose one of {PARTS}.")
        _check_kwargs(type(self), domain_kwargs)
        made = type(self).make_domains(**domain_kwargs)
        # builders return the domains, or (domains, class names) when classes come from disk
        domains, classes = made if isinstance(made, tuple) else (made, self.classes)
        names = [d.name for d in domains]
        test = [names[i] for i in resolve_domains(names, test_domains)] if test_domains else []
        train = [n for n in names if n not in test]
        if part == "train":
            use, split = train, "train"
        elif part == "target":
            if not test:
                raise ValueError("part='target' needs test_domains (the unlabeled target).")
            use, split = test, "train"
        else:
            use, split = names, {**{n: "heldout" for n in train}, **{n: "all" for n in test}}
        super().__init__(domains, use, split, holdout_fraction, split_seed,
                         classes=classes, test_domains=test, transforms=transforms)


@DATASETS.register_module()
class RotatedDigits(DGBenchmark):
    """Six rotations of sklearn's digits; ``seed``, ``image_size``, ``cache_dir`` as keywords."""

    make_domains = staticmethod(rotated_digits)
    classes = [str(i) for i in range(10)]


@DATASETS.register_module()
class ColoredDigits(DGBenchmark):
    """ColoredMNIST on sklearn's digits (3 domains, 2 channels, 25% label noise)."""

    make_domains = staticmethod(colored_digits)
    classes = ["digit>=5", "digit<5"]  # label 1 is digit < 5 (before the noise), as DomainBed


@DATASETS.register_module()
class StyledGlyphs(DGBenchmark):
    """22 letters or fewer in four PACS-like styles (photo, painting, cartoon, sketch), generated
    from matplotlib's fonts and scikit-image's photos; ``seed``, ``images_per_domain``,
    ``num_classes``, ``image_size``, ``styles``, ``cache_dir`` as keywords (`glyphs` module)."""

    make_domains = staticmethod(styled_glyphs)
