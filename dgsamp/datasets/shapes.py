"""Embedded shapes benchmark for detection and segmentation under domain shift.

Procedurally drawn, non-overlapping objects of three classes (circle, square, triangle; squares
and triangles randomly rotated) in one source style and three target styles:

- ``clean``   (source): flat light background, flat-coloured objects.
- ``fog``     : the clean rendering blended towards a grey-white haze (spatially varying
  density) and blurred: low contrast, soft edges.
- ``dark``    : brightness scaled to ~25% and Gaussian sensor noise added.
- ``texture`` : backgrounds cut from scikit-image's bundled textures (brick, grass, gravel),
  tinted; edges everywhere.

Masks, boxes and label maps are exact: every object's mask is drawn on the pixel grid first,
the box is the tight box of its mask (COCO ``[x, y, w, h]`` with ``w = x1 - x0 + 1``), the
label map is the union of masks (0 = background, k = class k; 255 is never written and is the
ignore index). Everything is deterministic by ``seed``; each (style, split) draws its own
scenes, so target images are not re-styled copies of source images.

Written once to ``<cache>/shapes/<hash of the parameters>/`` (cache: ``$DGSAMP_DATA_CACHE`` or
``~/.cache/dgsamp/data``) and reused::

    <root>/meta.json
    <root>/<style>/<split>.json             COCO: images, annotations (bbox, uncompressed RLE
                                            segmentation, area, iscrowd=0), categories 1..3
    <root>/<style>/<split>/images/000000.png
    <root>/<style>/<split>/labels/000000.png  uint8 label map (same stem as the image)

mmdet's ``CocoDataset`` reads the json, mmseg's ``BaseSegDataset`` the image/label pairs
(`dgsamp.detseg.det_datasets.ShapesDetDataset`, `dgsamp.detseg.seg_datasets.ShapesSegDataset`
are thin subclasses that call `generate_shapes` and fill in paths and METAINFO). This module
needs only numpy, Pillow and scikit-image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("circle", "square", "triangle")
SEG_CLASSES = ("background",) + CLASSES
PALETTE = [(220, 20, 60), (0, 130, 230), (20, 180, 40)]
SEG_PALETTE = [(0, 0, 0)] + PALETTE
STYLES = ("clean", "fog", "dark", "texture")
SOURCE_STYLE = "clean"
TARGET_STYLES = ("fog", "dark", "texture")
IGNORE_INDEX = 255
FORMAT_VERSION = 1
DEFAULT_CACHE = Path(os.environ.get("DGSAMP_DATA_CACHE",
                                   Path.home() / ".cache" / "dgsamp" / "data")) / "shapes"
_TEXTURES = ("brick", "grass", "gravel")


# ---------------------------------------------------------------------------- drawing
def _shape_mask(cls: str, size: int, cx: float, cy: float, angle: float,
                shape: tuple[int, int]) -> np.ndarray:
    from skimage.draw import polygon

    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    if cls == "circle":
        yy, xx = np.mgrid[:h, :w]
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= (size / 2) ** 2] = True
        return mask
    if cls == "square":
        r = size / 2 * np.sqrt(2)
        angles = angle + np.pi / 4 + np.arange(4) * np.pi / 2
    else:  # triangle (equilateral, circumradius so that it spans about `size`)
        r = size / np.sqrt(3) * 1.1
        angles = angle + np.arange(3) * 2 * np.pi / 3
    rows, cols = polygon(cy + r * np.sin(angles), cx + r * np.cos(angles), shape=shape)
    mask[rows, cols] = True
    return mask


def _scene(rng: np.random.Generator, size: int, max_objects: int, min_size: int,
           max_size: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Non-overlapping objects: list of (class index, mask, RGB colour in [0, 1])."""
    objects: list[tuple[int, np.ndarray, np.ndarray]] = []
    occupied = np.zeros((size, size), dtype=bool)
    n = int(rng.integers(1, max_objects + 1))
    for _ in range(n * 10):
        if len(objects) == n:
            break
        cls = int(rng.integers(len(CLASSES)))
        s = int(rng.integers(min_size, max_size + 1))
        margin = s * 0.8
        cx, cy = rng.uniform(margin, size - margin, size=2)
        mask = _shape_mask(CLASSES[cls], s, cx, cy, rng.uniform(0, 2 * np.pi), (size, size))
        grown = np.zeros_like(mask)
        ys, xs = np.nonzero(mask)
        if len(ys) < 20:
            continue
        grown[max(ys.min() - 2, 0):ys.max() + 3, max(xs.min() - 2, 0):xs.max() + 3] = True
        if (grown & occupied).any():
            continue
        occupied |= grown
        hue_color = rng.uniform(0.1, 0.9, size=3)
        hue_color[rng.integers(3)] = rng.uniform(0.0, 0.2)  # saturated-ish colours
        objects.append((cls, mask, hue_color))
    return objects


_texture_cache: dict[str, np.ndarray] = {}


def _texture(name: str) -> np.ndarray:
    if name not in _texture_cache:
        import skimage.data

        _texture_cache[name] = getattr(skimage.data, name)().astype(np.float32) / 255.0
    return _texture_cache[name]


def _background(style: str, rng: np.random.Generator, size: int) -> np.ndarray:
    if style == "texture":
        tex = _texture(_TEXTURES[int(rng.integers(len(_TEXTURES)))])
        scale = int(rng.integers(1, 3))  # 1x or 2x zoomed-out crops
        crop = size * scale
        y, x = rng.integers(0, tex.shape[0] - crop + 1, size=2)
        patch = tex[y:y + crop:scale, x:x + crop:scale]
        patch = (patch - patch.mean()) / (patch.std() + 1e-6) * 0.18 + 0.5
        tint = rng.uniform(0.5, 1.0, size=3)
        return np.clip(patch[..., None] * tint, 0, 1)
    base = rng.uniform(0.75, 0.95, size=3)
    return np.broadcast_to(base, (size, size, 3)).copy()


def _render(style: str, rng: np.random.Generator, objects, size: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    img = _background(style, rng, size)
    yy, xx = np.mgrid[:size, :size] / size
    for _, mask, color in objects:
        shade = 0.85 + 0.3 * (rng.uniform() * yy + rng.uniform() * xx) / 2  # mild gradient
        img[mask] = np.clip(color[None, :] * shade[mask][:, None], 0, 1)
    if style == "fog":
        density = rng.uniform(0.55, 0.75) + 0.15 * (yy - 0.5) * rng.choice([-1, 1])
        haze = rng.uniform(0.8, 0.95)
        img = gaussian_filter(img, sigma=(1.2, 1.2, 0))
        img = img * (1 - density[..., None]) + haze * density[..., None]
    elif style == "dark":
        img = img * rng.uniform(0.15, 0.3) + rng.normal(0, 0.05, size=img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------- COCO helpers
def rle_encode(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a binary mask (column-major runs, starting with zeros)."""
    flat = np.asarray(mask, dtype=np.uint8).T.ravel()
    change = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return dict(size=[int(mask.shape[0]), int(mask.shape[1])], counts=[int(c) for c in counts])


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of `rle_encode` (uncompressed RLE only)."""
    h, w = rle["size"]
    values = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for c in rle["counts"]:
        values[pos:pos + c] = val
        pos += c
        val = not val
    return values.reshape(w, h).T


def mask_to_box(mask: np.ndarray) -> list[int]:
    """Tight COCO box [x, y, w, h] of a mask's pixels (pixel (x, y) covers [x, x + 1))."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
            int(ys.max() - ys.min() + 1)]


# ---------------------------------------------------------------------------- writing
def shapes_params(image_size: int = 128, num_train: int = 200, num_val: int = 60,
                  max_objects: int = 4, min_size: int = 14, max_size: int = 36, seed: int = 0,
                  styles: tuple[str, ...] = STYLES) -> dict:
    """The parameters that define one version of the benchmark (and its cache hash)."""
    unknown = set(styles) - set(STYLES)
    if unknown:
        raise ValueError(f"Unknown shapes styles {sorted(unknown)}; choose from {STYLES}.")
    if not 2 * max_size < image_size:
        raise ValueError(f"max_size={max_size} too large for image_size={image_size}.")
    if not 6 <= min_size <= max_size:
        raise ValueError(f"need 6 <= min_size <= max_size, got {min_size}, {max_size}")
    return dict(image_size=int(image_size), num_train=int(num_train), num_val=int(num_val),
                max_objects=int(max_objects), min_size=int(min_size), max_size=int(max_size),
                seed=int(seed), styles=list(styles), version=FORMAT_VERSION)


def _write_split(out: Path, style: str, split: str, count: int, p: dict) -> None:
    seed_seq = np.random.SeedSequence([p["seed"], STYLES.index(style), ("train", "val").index(
        split)])
    rng = np.random.default_rng(seed_seq)
    img_dir, lbl_dir = out / style / split / "images", out / style / split / "labels"
    img_dir.mkdir(parents=True)
    lbl_dir.mkdir(parents=True)
    images, annotations = [], []
    size = p["image_size"]
    for i in range(count):
        objects = _scene(rng, size, p["max_objects"], p["min_size"], p["max_size"])
        img = _render(style, rng, objects, size)
        label = np.zeros((size, size), dtype=np.uint8)
        name = f"{i:06d}.png"
        images.append(dict(id=i, file_name=f"{split}/images/{name}", width=size, height=size))
        for cls, mask, _ in objects:
            label[mask] = cls + 1
            annotations.append(dict(
                id=len(annotations) + 1, image_id=i, category_id=cls + 1,
                bbox=mask_to_box(mask), area=int(mask.sum()), iscrowd=0,
                segmentation=rle_encode(mask)))
        Image.fromarray(img).save(img_dir / name)
        Image.fromarray(label).save(lbl_dir / name)
    coco = dict(info=dict(description=f"dgsamp shapes, style {style}, split {split}",
                          params=p),
                images=images, annotations=annotations,
                categories=[dict(id=k + 1, name=c) for k, c in enumerate(CLASSES)])
    (out / style / f"{split}.json").write_text(json.dumps(coco))


def generate_shapes(root: str | Path | None = None, **params) -> Path:
    """Write the benchmark once (atomically) and return its directory; reuse it afterwards.

    Args:
        root: cache directory holding one sub-directory per parameter hash
            (default ``$DGSAMP_DATA_CACHE/shapes`` or ``~/.cache/dgsamp/data/shapes``).
        **params: see `shapes_params` (image_size, num_train, num_val, max_objects, min_size,
            max_size, seed, styles).
    """
    p = shapes_params(**params)
    digest = hashlib.sha1(json.dumps(p, sort_keys=True).encode()).hexdigest()[:12]
    base = Path(root).expanduser() if root is not None else DEFAULT_CACHE
    out = base / digest
    if (out / "meta.json").is_file():
        return out
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=base))
    try:
        for style in p["styles"]:
            _write_split(tmp, style, "train", p["num_train"], p)
            _write_split(tmp, style, "val", p["num_val"], p)
        (tmp / "meta.json").write_text(json.dumps(dict(params=p, classes=list(CLASSES),
                                                       seg_classes=list(SEG_CLASSES),
                                                       ignore_index=IGNORE_INDEX), indent=1))
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first: use theirs
            if not (out / "meta.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


__all__ = ["CLASSES", "IGNORE_INDEX", "PALETTE", "SEG_CLASSES", "SEG_PALETTE", "SOURCE_STYLE",
           "STYLES", "TARGET_STYLES", "generate_shapes", "mask_to_box", "rle_decode",
           "rle_encode", "shapes_params"]
