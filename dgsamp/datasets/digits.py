"""Embedded benchmarks built from scikit-learn's bundled 8x8 digits: nothing is downloaded.

RotatedDigits (6 domains, 10 classes): the 1,797 digits shuffled by seed and dealt stride-wise
into 6 domains, rotated 0/15/30/45/60/75 degrees (padded to 12x12 first so corners survive).
ColoredDigits (3 domains, 2 classes): DomainBed's ColoredMNIST construction on the same digits:
label = digit < 5 flipped with probability 0.25, colour = label flipped with probability
0.1 / 0.2 / 0.9 per domain, images as 2 channels (the colour picks the channel).

Both are deterministic by seed and cached as .npz under `cache_dir` on first use.
"""

from __future__ import annotations

import os
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .multidomain import Domain

ROTATIONS = (0, 15, 30, 45, 60, 75)
COLOR_FLIPS = (0.1, 0.2, 0.9)
DEFAULT_CACHE = Path(os.environ.get("DGSAMP_DATA_CACHE",
                                   Path.home() / ".cache" / "dgsamp" / "data"))


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def _rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    from scipy.ndimage import rotate

    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    if degrees == 0:
        return padded
    return rotate(padded, degrees, axes=(2, 1), reshape=False, order=1).clip(0, 1)


def _cached(name: str, seed: int, cache_dir: Path | None, build) -> dict[str, np.ndarray]:
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    path = cache_dir / f"{name}_seed{seed}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return dict(z)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            # a truncated or corrupt cache file: say so, rebuild it below (only this file)
            warnings.warn(f"cache file {path} is unreadable ({type(err).__name__}: {err}); "
                          f"regenerating it", RuntimeWarning, stacklevel=2)
    arrays = build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)  # atomic: concurrent sweeps never read a half-written file
    return arrays


def _to_domains(arrays: dict[str, np.ndarray], names: list[str], image_size: int) -> list[Domain]:
    out = []
    for i, name in enumerate(names):
        x = torch.from_numpy(arrays[f"x{i}"])
        if x.ndim == 3:
            x = x[:, None]
        if image_size != x.shape[-1]:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                              align_corners=False)
        out.append(Domain(name, x.contiguous(), torch.from_numpy(arrays[f"y{i}"])))
    return out


def rotated_digits(seed: int = 0, image_size: int = 28, cache_dir: str | Path | None = None
                   ) -> list[Domain]:
    """The six RotatedDigits domains ('0'...'75'), images (N, 1, size, size) in [0, 1]."""

    def build():
        images, labels = _load_digits()
        perm = np.random.RandomState(seed).permutation(len(labels))
        images, labels = images[perm], labels[perm]
        arrays = {}
        for i, deg in enumerate(ROTATIONS):
            arrays[f"x{i}"] = _rotate(images[i::len(ROTATIONS)], deg).astype(np.float32)
            arrays[f"y{i}"] = labels[i::len(ROTATIONS)]
        return arrays

    arrays = _cached("rotated_digits", seed, cache_dir, build)
    return _to_domains(arrays, [str(r) for r in ROTATIONS], image_size)


def colored_digits(seed: int = 0, image_size: int = 28, cache_dir: str | Path | None = None
                   ) -> list[Domain]:
    """The three ColoredDigits domains ('+90%', '+80%', '-90%'), images (N, 2, size, size)."""

    def build():
        images, digits = _load_digits()
        rng = np.random.RandomState(seed)
        perm = rng.permutation(len(digits))
        images, digits = images[perm], digits[perm]
        arrays = {}
        for i, flip in enumerate(COLOR_FLIPS):
            x, d = images[i::len(COLOR_FLIPS)], digits[i::len(COLOR_FLIPS)]
            y = (d < 5).astype(np.int64) ^ (rng.rand(len(d)) < 0.25)
            color = y ^ (rng.rand(len(d)) < flip)
            two = np.zeros((len(x), 2, 8, 8), np.float32)
            two[np.arange(len(x)), color.astype(np.int64)] = x
            two = np.pad(two, ((0, 0), (0, 0), (2, 2), (2, 2)))
            arrays[f"x{i}"], arrays[f"y{i}"] = two, y.astype(np.int64)
        return arrays

    arrays = _cached("colored_digits", seed, cache_dir, build)
    return _to_domains(arrays, ["+90%", "+80%", "-90%"], image_size)
