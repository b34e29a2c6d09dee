"""Public DG benchmarks read from disk in their released layout: ROOT/domain/class/image.

PACS, VLCS, OfficeHome, TerraIncognita and DomainNet all ship that way, and so can a user's own
data (`DomainFolders` with any domain names). Nothing is downloaded. Every way a folder can be
wrong (missing root or domain, empty class folder, class sets that differ between domains, a
corrupt image) is an error that names the folder or file and the expected layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.registry import DATASETS
from PIL import Image, UnidentifiedImageError

from .benchmarks import DGBenchmark
from .multidomain import Domain

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layout_hint(root: Path, domains: Sequence[str]) -> str:
    return (f"Expected layout: {root}/<domain>/<class>/<image>, with domains {list(domains)}. "
            f"dgsamp never downloads data: put the released benchmark there or set data_root.")


class FolderDomain(Domain):
    """A domain whose images are files, read (resized to [0, 1]) when indexed, then normalised
    with the ImageNet statistics."""

    def __init__(self, name: str, files: list[Path], labels: torch.Tensor, image_size: int,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__(name, torch.empty(0), labels)
        self.files, self.image_size = files, image_size
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def read(self, i: int) -> torch.Tensor:
        path = self.files[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB").resize((self.image_size, self.image_size),
                                              Image.BILINEAR)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"Cannot read image {path} ({e}). Fix: replace or delete the "
                             f"corrupt file.") from e
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def scan_domain_folders(root: str | Path, domains: Sequence[str] | None = None,
                        image_size: int = 224, verify_images: bool = False
                        ) -> tuple[list[Domain], list[str]]:
    """Read ROOT/domain/class/image into FolderDomains; returns (domains, class names)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Data root {root} does not exist. "
                                + _layout_hint(root, domains or ["..."]))
    if domains is None:
        domains = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not domains:
            raise FileNotFoundError(f"Data root {root} has no domain folders. "
                                    + _layout_hint(root, ["..."]))
    classes: list[str] | None = None
    out: list[Domain] = []
    for name in domains:
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"Domain folder {folder} is missing. "
                                    + _layout_hint(root, domains))
        these = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if classes is None:
            classes = these
        elif these != classes:
            raise ValueError(f"Class folders differ between domains: {folder} has "
                             f"{sorted(set(these) ^ set(classes))} that {root / domains[0]} "
                             f"does not (or the reverse). Every domain needs the same classes.")
        files, labels = [], []
        for label, cls in enumerate(classes):
            images = sorted(p for p in (folder / cls).iterdir()
                            if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ValueError(f"Class folder {folder / cls} has no images "
                                 f"({sorted(IMAGE_SUFFIXES)}). Fix: add images or remove the "
                                 f"class from every domain.")
            if verify_images:
                for p in images:
                    try:
                        with Image.open(p) as im:
                            im.verify()
                    except (UnidentifiedImageError, OSError) as e:
                        raise ValueError(f"Cannot read image {p} ({e}). Fix: replace or delete "
                                         f"the corrupt file.") from e
            files += images
            labels += [label] * len(images)
        out.append(FolderDomain(name, files, torch.tensor(labels), image_size))
    return out, list(classes or [])


def _folder_benchmark(cls_name: str, domain_names: Sequence[str] | None, doc: str) -> type:
    def make_domains(data_root: str, image_size: int = 224, verify_images: bool = False,
                     domains: Sequence[str] | None = None) -> tuple[list[Domain], list[str]]:
        return scan_domain_folders(data_root, domains or domain_names, image_size,
                                   verify_images)

    klass = type(cls_name, (DGBenchmark,), dict(make_domains=staticmethod(make_domains),
                                                __doc__=doc))
    return DATASETS.register_module(name=cls_name, module=klass)


DomainFolders = _folder_benchmark(
    "DomainFolders", None, "Any ROOT/domain/class/image tree; domains = its sub-folders.")
PACS = _folder_benchmark("PACS", ["art_painting", "cartoon", "photo", "sketch"],
                         "PACS (Li et al. 2017), 7 classes.")
VLCS = _folder_benchmark("VLCS", ["Caltech101", "LabelMe", "SUN09", "VOC2007"],
                         "VLCS (Fang et al. 2013), 5 classes.")
OfficeHome = _folder_benchmark("OfficeHome", ["Art", "Clipart", "Product", "Real World"],
                               "Office-Home (Venkateswara et al. 2017), 65 classes.")
TerraIncognita = _folder_benchmark(
    "TerraIncognita", ["location_100", "location_38", "location_43", "location_46"],
    "TerraIncognita as DomainBed prepares it (Beery et al. 2018), 10 classes.")
DomainNet = _folder_benchmark(
    "DomainNet", ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"],
    "DomainNet (Peng et al. 2019), 345 classes.")
