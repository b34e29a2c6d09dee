"""StyledGlyphs: a large embedded DG benchmark with PACS-like *style* domains; nothing downloaded.

RotatedDigits has 1,797 images in all, so one seed's held-out accuracy moves by ±4 points and
no 0.5-point claim can be settled on it. This benchmark is generated instead, at any size:

- content: ``num_classes`` letters (an alphabet without look-alikes such as O/Q or I/J), each
  rendered once per font at 4x resolution from the TrueType fonts matplotlib ships (DejaVu,
  STIX, Computer Modern), then placed under a random affine jitter (rotation, scale, shear,
  translation) by one batched ``grid_sample`` and box-filtered to ``image_size`` (antialiased);
- style, one per domain (PACS's photo / art painting / cartoon / sketch):
  ``photo``: glyph and background are crops of scikit-image's bundled photos, the glyph's
  crop brightened or darkened against its background; ``painting``: low-frequency colour
  fields, a brush-stroke grain (directionally blurred noise), then a blur (no sharp edge);
  ``cartoon``: comic print, flat colours of one luminance (hue edges only), the glyph extruded
  as a dark block, Ben-Day dots behind; ``sketch``: pencil hatching whose direction (not its
  brightness) separates glyph and paper, and a faint outline. Each style draws the glyph with a
  cue the others lack, so that a held-out style is a real shift (docs/results/frontier.md).

Every image draws class, font, jitter and style parameters from a ``torch.Generator`` seeded by
(``seed``, domain index), so the data are identical for one seed and differ between seeds; the
labels are balanced per domain. The generation is vectorized (a whole domain at once through
``grid_sample`` and pooling: seconds per domain on one CPU thread, measured in
docs/results/frontier_benchmark_resnet.md) and cached as uint8 .npz (see `digits._cached`)
under ``$DGSAMP_DATA_CACHE`` or ``~/.cache/dgsamp/data``, one file per seed and
parameter set; a corrupt cache file is regenerated with a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .digits import _cached
from .multidomain import Domain

STYLES = ("photo", "painting", "cartoon", "sketch")
ALPHABET = "ABCDEFGHKLMNPRSTUVWXYZ"  # no look-alikes (O/Q/D-ish, I/J, ...): 22 classes at most
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
              "DejaVuSans-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
              "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "DejaVuSansMono.ttf",
              "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
              "DejaVuSansMono-BoldOblique.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
              "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmss10.ttf",
              "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf")
# colour photos shipped inside scikit-image's package data (never fetched over the network)
PHOTO_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
               "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "color.png", "brick.png",
               "grass.png", "gravel.png")
FORMAT_VERSION = 2  # 2: comic cartoons (v1's plain flat colours transferred: gap 2.8)
_OVERSAMPLE = 4  # masters and the warp run at 4x the output size, then a box filter


# ---------------------------------------------------------------------------- package assets
@cache
def _glyph_masters(num_classes: int, size: int) -> torch.Tensor:
    """(fonts, classes, size, size) float masks in [0, 1], every glyph centred on its box."""
    from matplotlib import get_data_path
    from PIL import Image, ImageDraw, ImageFont

    font_dir = Path(get_data_path()) / "fonts" / "ttf"
    fonts = [font_dir / f for f in FONT_FILES if (font_dir / f).is_file()]
    if len(fonts) < 4:
        raise FileNotFoundError(f"StyledGlyphs needs matplotlib's bundled fonts in {font_dir}; "
                                f"found {len(fonts)} of {FONT_FILES}. Fix: reinstall matplotlib.")
    out = np.zeros((len(fonts), num_classes, size, size), np.float32)
    for f, path in enumerate(fonts):
        font = ImageFont.truetype(str(path), int(size * 0.7))
        for c, char in enumerate(ALPHABET[:num_classes]):
            canvas = Image.new("L", (size * 2, size * 2))
            ImageDraw.Draw(canvas).text((size // 2, size // 2), char, fill=255, font=font)
            box = canvas.getbbox()
            glyph = np.asarray(canvas.crop(box), np.float32) / 255.0
            h, w = glyph.shape
            top, left = (size - h) // 2, (size - w) // 2
            out[f, c, top:top + h, left:left + w] = glyph[:size - max(top, 0), :size]
    return torch.from_numpy(out)


@cache
def _photos() -> tuple[torch.Tensor, ...]:
    """scikit-image's bundled colour photos as (3, H, W) float tensors in [0, 1]."""
    import skimage
    from PIL import Image

    data_dir = Path(skimage.__file__).parent / "data"
    found = [data_dir / f for f in PHOTO_FILES if (data_dir / f).is_file()]
    if len(found) < 4:
        raise FileNotFoundError(f"StyledGlyphs needs scikit-image's bundled photos in {data_dir};"
                                f" found {len(found)} of {PHOTO_FILES}. Fix: reinstall "
                                f"scikit-image.")
    out = []
    for path in found:
        img = Image.open(path).convert("RGB")
        img.thumbnail((256, 256))  # crops are resized to 32 px anyway
        out.append(torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1))
    return tuple(out)


# ---------------------------------------------------------------------------- random pieces
def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _warp_glyphs(masters: torch.Tensor, fonts: torch.Tensor, labels: torch.Tensor,
                 size: int, g: torch.Generator) -> torch.Tensor:
    """Each image's glyph under a random affine jitter: (N, 1, size, size) masks."""
    n = len(labels)
    angle = _uniform(g, n, -25, 25) * math.pi / 180
    scale = _uniform(g, n, 0.8, 1.15)  # >1 zooms out (grid coordinates are output -> input)
    shear = _uniform(g, n, -0.25, 0.25)
    shift = _uniform(g, 2 * n, -0.18, 0.18).view(n, 2)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin + shear * cos, shift[:, 0]], 1),
                         torch.stack([sin, cos + shear * sin, shift[:, 1]], 1)], 1)
    big = size * _OVERSAMPLE
    src = masters[fonts, labels][:, None]
    grid = F.affine_grid(theta, [n, 1, big, big], align_corners=False)
    warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(warped, _OVERSAMPLE)


def _photo_crops(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """(N, 3, size, size): random crops (random position and zoom) of the bundled photos."""
    photos = _photos()
    which = torch.randint(len(photos), (n,), generator=g)
    frac = _uniform(g, n, 0.15, 0.5)
    cx, cy = _uniform(g, n, -1, 1), _uniform(g, n, -1, 1)
    out = torch.empty(n, 3, size, size)
    for p, photo in enumerate(photos):
        idx = (which == p).nonzero().flatten()
        if len(idx) == 0:
            continue
        f = frac[idx]
        theta = torch.zeros(len(idx), 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = f
        theta[:, 0, 2], theta[:, 1, 2] = cx[idx] * (1 - f), cy[idx] * (1 - f)
        grid = F.affine_grid(theta, [len(idx), 3, size, size], align_corners=False)
        out[idx] = F.grid_sample(photo.expand(len(idx), -1, -1, -1), grid, mode="bilinear",
                                 align_corners=False)
    return out


def _colours(n: int, g: torch.Generator, sat: tuple[float, float], val: tuple[float, float],
             hue: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 3) RGB colours from the hue (random if None) and saturation / value ranges (HSV)."""
    h = torch.rand(n, generator=g) if hue is None else hue % 1.0
    s, v = _uniform(g, n, *sat), _uniform(g, n, *val)
    k = (torch.tensor([5.0, 3.0, 1.0]) + h[:, None] * 6) % 6
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def _smooth_noise(n: int, chans: int, size: int, cells: int, g: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(n, chans, cells, cells, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2 * sigma)))
    k = torch.exp(-(torch.arange(-r, r + 1.0) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                 groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"),
                    k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _edges(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Outline of a soft mask: its dilation minus its erosion (max-pool morphology)."""
    k = 2 * width + 1
    dilated = F.max_pool2d(mask, k, 1, width)
    eroded = -F.max_pool2d(-mask, k, 1, width)
    return (dilated - eroded).clamp(0, 1)


# ---------------------------------------------------------------------------- the four styles
def _against(fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """``fg`` (in [0, 1]) moved into the brightness half opposite ``bg``'s mean: the glyph
    always stands out of its background, whatever the two crops or colours are."""
    dark_bg = bg.mean(dim=(1, 2, 3), keepdim=True) < 0.5
    return torch.where(dark_bg, 0.5 + 0.5 * fg, 0.5 * fg)


def _style_photo(mask, g):
    n, _, s, _ = mask.shape
    bg, fg = _photo_crops(n, s, g), _photo_crops(n, s, g)
    return _against(fg, bg) * mask + bg * (1 - mask)


def _style_painting(mask, g):
    n, _, s, _ = mask.shape
    base = _colours(n, g, (0.3, 0.8), (0.4, 0.95))[:, :, None, None]
    other = _colours(n, g, (0.3, 0.8), (0.4, 1.0))[:, :, None, None]
    bg = (base * (0.7 + 0.6 * _smooth_noise(n, 3, s, 4, g))).clamp(0, 1)
    fg = _against(other * (0.8 + 0.4 * _smooth_noise(n, 3, s, 3, g)), bg).clamp(0, 1)
    grain = torch.rand(n, 1, s, s, generator=g) - 0.5
    # brush strokes: noise smeared along one axis (even images horizontal, odd vertical)
    strokes = torch.where(torch.arange(n)[:, None, None, None] % 2 == 0,
                          F.avg_pool2d(grain, (1, 7), 1, (0, 3)),
                          F.avg_pool2d(grain, (7, 1), 1, (3, 0)))
    # wet paint: no sharp edge survives (the other styles' glyphs all have sharp edges)
    return _blur(fg * mask + bg * (1 - mask) + 0.6 * strokes, 1.4)


def _luminance(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)


def _style_cartoon(mask, g):
    """Comic print: flat colours of one luminance (hue edges only), the glyph extruded (a dark
    3-D block behind it, offset 2-3 px) on a Ben-Day dot background (dots every 3-4.5 px)."""
    n, _, s, _ = mask.shape
    hue = torch.rand(n, generator=g)
    bg = _colours(n, g, (0.6, 1.0), (0.7, 1.0), hue)
    fg = _colours(n, g, (0.7, 1.0), (0.7, 1.0), hue + _uniform(g, n, 0.3, 0.7))
    fg = fg * _luminance(bg) / _luminance(fg).clamp_min(1e-3)
    over = fg.amax(-1, keepdim=True).clamp_min(1.0)
    fg, bg = fg / over, bg / over
    hard = (mask > 0.5).float()
    # the extrusion's offset: one draw per domain (all its glyphs lit from the same side)
    dx = int(torch.randint(2, 4, (1,), generator=g))
    dy = int(torch.randint(2, 4, (1,), generator=g))
    block = hard.clone()
    for k in range(1, max(dx, dy) + 1):
        block = torch.maximum(block, torch.roll(hard, (min(k, dy), min(k, dx)), (2, 3)))
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32),
                            torch.arange(s, dtype=torch.float32), indexing="ij")
    period = _uniform(g, n, 3.0, 4.5)[:, None, None, None]
    dots = ((torch.cos(2 * math.pi * xx / period) * torch.cos(2 * math.pi * yy / period)) > 0.3)
    paper = bg[:, :, None, None] * (1 - 0.45 * dots.float())
    shade = 0.25 * bg[:, :, None, None]
    img = paper * (1 - block) + shade * block
    return fg[:, :, None, None] * hard + img * (1 - hard)


def _hatching(n: int, size: int, angle: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(N, 1, size, size) pencil hatching: thin dark lines (period 3-4 px) at ``angle``."""
    period = _uniform(g, n, 3.0, 4.0)[:, None, None, None]
    phase = _uniform(g, n, 0, 2 * math.pi)[:, None, None, None]
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    a = angle[:, None, None, None]
    wave = torch.cos(2 * math.pi * (xx * torch.cos(a) + yy * torch.sin(a)) / period + phase)
    return ((wave - 0.3) / 0.7).clamp(0, 1)


def _style_sketch(mask, g):
    """Pencil on paper: the glyph is hatched in one direction, the paper around it in the
    crossing one, at the same density (texture, not brightness, draws the glyph), plus a faint
    outline."""
    n, _, s, _ = mask.shape
    paper = _uniform(g, n, 0.85, 1.0)[:, None, None, None]
    paper = paper - 0.06 * torch.rand(n, 1, s, s, generator=g)
    lead = _uniform(g, n, 0.05, 0.45)[:, None, None, None]  # pencil darkness
    angle = _uniform(g, n, 0, math.pi)
    inside, outside = _hatching(n, s, angle, g), _hatching(n, s, angle + math.pi / 2, g)
    stroke = (inside * mask + outside * (1 - mask)) * 0.6 + 0.6 * _edges(mask, 1)
    stroke = stroke.clamp(0, 1) * (0.7 + 0.3 * torch.rand(n, 1, s, s, generator=g))
    return (paper * (1 - stroke) + lead * stroke).expand(-1, 3, -1, -1)


_STYLE_FNS = dict(photo=_style_photo, painting=_style_painting, cartoon=_style_cartoon,
                  sketch=_style_sketch)


def render_domain(style: str, n: int, num_classes: int, size: int, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of one style: uint8 (n, 3, size, size) and balanced int64 labels (n,)."""
    g = torch.Generator().manual_seed(seed)
    masters = _glyph_masters(num_classes, size * _OVERSAMPLE)
    labels = (torch.randperm(n, generator=g) % num_classes).long()
    fonts = torch.randint(masters.shape[0], (n,), generator=g)
    mask = _warp_glyphs(masters, fonts, labels, size, g)
    img = _STYLE_FNS[style](mask, g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8), labels


def check_params(styles: Sequence[str], images_per_domain: int, num_classes: int,
                 image_size: int) -> None:
    """Every StyledGlyphs parameter, checked once where it enters, with the fix in the error."""
    unknown = [s for s in styles if s not in STYLES]
    if unknown or not styles or len(set(styles)) != len(styles):
        raise ValueError(f"StyledGlyphs styles={list(styles)}: each style once, from {STYLES} "
                         f"(unknown: {unknown}).")
    if not isinstance(num_classes, int) or not 2 <= num_classes <= len(ALPHABET):
        raise ValueError(f"StyledGlyphs num_classes={num_classes!r}: choose 2..{len(ALPHABET)}.")
    for name, value, lo, why in (
            ("images_per_domain", images_per_domain, num_classes, " (one image per class)"),
            ("image_size", image_size, 8, "")):
        if not isinstance(value, int) or value < lo:
            raise ValueError(f"StyledGlyphs {name}={value!r}: must be an integer >= {lo}{why}.")


def styled_glyphs(seed: int = 0, images_per_domain: int = 4000, num_classes: int = 10,
                  image_size: int = 32, styles: Sequence[str] = STYLES,
                  cache_dir: str | Path | None = None) -> tuple[list[Domain], list[str]]:
    """The StyledGlyphs domains (one per style, named by it), images (N, 3, size, size) in
    [0, 1], and the class names (the letters)."""
    styles = list(styles)
    check_params(styles, images_per_domain, num_classes, image_size)
    params = dict(v=FORMAT_VERSION, n=images_per_domain, c=num_classes, s=image_size,
                  styles=styles)
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]

    def build() -> dict[str, np.ndarray]:
        arrays = {}
        for i, style in enumerate(styles):
            x, y = render_domain(style, images_per_domain, num_classes, image_size,
                                 seed * 1009 + STYLES.index(style))
            arrays[f"x{i}"], arrays[f"y{i}"] = x.numpy(), y.numpy()
        return arrays

    arrays = _cached(f"styled_glyphs_{key}", seed, cache_dir, build)
    domains = [Domain(style, torch.from_numpy(arrays[f"x{i}"]).float().div_(255),
                      torch.from_numpy(arrays[f"y{i}"])) for i, style in enumerate(styles)]
    return domains, list(ALPHABET[:num_classes])
