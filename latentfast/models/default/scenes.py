"""Procedurally rendered 32x32 scenes with known generative factors: the training data of the shipped default
generator and the ground truth of the factor benchmark.

A scene is one filled object on a plain background.  Its factors:

=============  ========================================================================================
``shape``      class index into :data:`SHAPES` (circle, square, triangle, cross)
``x``, ``y``   object centre, 0 = left/top, 1 = right/bottom (centre in [-0.45, 0.45] of the half-width)
``size``       object radius, 0 -> 0.25, 1 -> 0.55 of the half-width (shapes are scaled to similar areas)
``rotation``   0 -> 0 deg, 1 -> 45 deg counter-clockwise (no symmetry of any shape wraps inside this range;
               a circle does not show it)
``hue``        object hue, 0 -> 0 (red) ... 1 -> 0.8 of the hue circle (magenta); saturation 0.9, value 0.95
``bg_hue``     background hue on the same 0..0.8 range; saturation 0.45, value 0.45 (darker, greyer)
=============  ========================================================================================

Hues stop at 0.8 of the circle so no continuous factor wraps around: every factor is a plain number in [0, 1].
Rendering is vectorised in torch (a batch at once), anti-aliased by ``supersample``x``supersample`` averaging,
and deterministic given the seed.  Images are float32 (B, 3, 32, 32) in [-1, 1].
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..._checks import check_int

Tensor = torch.Tensor

__all__ = ["SHAPES", "CONTINUOUS_FACTORS", "FACTOR_NAMES", "sample_factors", "render", "render_scenes",
           "hsv_to_rgb", "HUE_SPAN", "POS_SPAN", "SIZE_RANGE", "ROT_SPAN_DEG", "OBJ_SV", "BG_SV"]

SHAPES = ("circle", "square", "triangle", "cross")
CONTINUOUS_FACTORS = ("x", "y", "size", "rotation", "hue", "bg_hue")
FACTOR_NAMES = ("shape",) + CONTINUOUS_FACTORS
HUE_SPAN = 0.8
POS_SPAN = 0.45
SIZE_RANGE = (0.25, 0.55)
ROT_SPAN_DEG = 45.0
OBJ_SV = (0.9, 0.95)
BG_SV = (0.45, 0.45)


def hsv_to_rgb(h: Tensor, s: Union[Tensor, float], v: Union[Tensor, float]) -> Tensor:
    """HSV (each (B,), h in [0, 1)) -> RGB (B, 3) in [0, 1] (the standard hexcone formula, continuous)."""
    h = torch.as_tensor(h, dtype=torch.float32)
    s = torch.as_tensor(s, dtype=torch.float32).expand_as(h)
    v = torch.as_tensor(v, dtype=torch.float32).expand_as(h)
    k = (torch.tensor([5.0, 3.0, 1.0])[None] + h[:, None] * 6.0) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4.0 - k)).clamp(0.0, 1.0)


def sample_factors(n: int, seed: Optional[int] = None, *, generator: Optional[torch.Generator] = None
                   ) -> Dict[str, Tensor]:
    """n independent scenes' factors: ``shape`` int64 (n,) uniform over :data:`SHAPES`, every continuous factor
    float32 (n,) uniform in [0, 1].  Give ``seed`` or ``generator`` (not both) for reproducibility."""
    n = check_int("n", n, low=1)
    if seed is not None and generator is not None:
        raise ValueError("seed, generator: expected at most one of them, got both")
    g = generator if generator is not None else torch.Generator().manual_seed(
        int(seed) if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    out = {"shape": torch.randint(0, len(SHAPES), (n,), generator=g)}
    for name in CONTINUOUS_FACTORS:
        out[name] = torch.rand(n, generator=g)
    return out


def _check_factors(factors: Dict[str, Tensor]) -> int:
    if not isinstance(factors, dict):
        raise TypeError(f"factors: expected a dict of tensors with keys {FACTOR_NAMES}, got "
                        f"{type(factors).__name__}")
    missing = [k for k in FACTOR_NAMES if k not in factors]
    if missing:
        raise ValueError(f"factors: missing keys {missing} (expected {FACTOR_NAMES})")
    n = None
    for k in FACTOR_NAMES:
        t = torch.as_tensor(factors[k])
        if t.dim() != 1 or (n is not None and t.shape[0] != n):
            raise ValueError(f"factors[{k!r}]: expected shape ({n if n is not None else 'B'},), got "
                             f"{tuple(t.shape)}")
        n = t.shape[0]
    shape = torch.as_tensor(factors["shape"])
    if shape.is_floating_point() or ((shape < 0) | (shape >= len(SHAPES))).any():
        raise ValueError(f"factors['shape']: expected integer class indices in [0, {len(SHAPES)})")
    return int(n)


def render(factors: Dict[str, Tensor], size: int = 32, supersample: int = 4) -> Tensor:
    """Render scenes with the given factors -> float32 (B, 3, size, size) in [-1, 1].  Deterministic: the image is a
    function of the factors alone.  ``supersample``: anti-aliasing factor (samples per pixel per axis)."""
    B = _check_factors(factors)
    size = check_int("size", size, low=4)
    ss = check_int("supersample", supersample, low=1)
    f = {k: torch.as_tensor(factors[k]).float() for k in CONTINUOUS_FACTORS}
    shape = torch.as_tensor(factors["shape"]).long()
    R = size * ss
    c = (torch.arange(R, dtype=torch.float32) + 0.5) / R * 2.0 - 1.0  # sample centres in [-1, 1]
    gy, gx = torch.meshgrid(c, c, indexing="ij")  # y grows downwards (image rows)
    cx = (f["x"] * 2.0 - 1.0) * POS_SPAN
    cy = (f["y"] * 2.0 - 1.0) * POS_SPAN
    r = SIZE_RANGE[0] + f["size"] * (SIZE_RANGE[1] - SIZE_RANGE[0])
    th = f["rotation"] * math.radians(ROT_SPAN_DEG)
    dx = gx[None] - cx[:, None, None]
    dy = -(gy[None] - cy[:, None, None])  # y up, so positive rotation is counter-clockwise on screen
    cos, sin = th.cos()[:, None, None], th.sin()[:, None, None]
    rr = r[:, None, None]
    u = (cos * dx + sin * dy) / rr  # object frame (rotate the sample points by -theta), unit radius
    v = (-sin * dx + cos * dy) / rr
    # Scale factors chosen so every shape covers a similar area (circle: pi ~ 3.14 at radius 1).
    circle = u.square() + v.square() <= 1.0
    square = torch.maximum(u.abs(), v.abs()) <= 0.886  # area 3.14
    tri = torch.ones_like(circle)
    tr = math.sqrt(2.6 / (3.0 * math.sqrt(3.0)))  # inradius of the equilateral triangle: area 3 sqrt(3) tr^2 = 2.6
    for k in range(3):
        a = math.radians(90.0 + 120.0 * k)  # outward normals of the edges; apex points down (-90 deg)
        tri = tri & (u * math.cos(a) + v * math.sin(a) <= tr)
    arm, half = 0.36, 1.05  # cross: two 2*half x 2*arm bars, area 8*arm*half - 4*arm^2 = 2.5
    cross = ((u.abs() <= half) & (v.abs() <= arm)) | ((v.abs() <= half) & (u.abs() <= arm))
    masks = torch.stack([circle, square, tri, cross], 1).float()  # (B, 4, R, R)
    mask = masks.gather(1, shape[:, None, None, None].expand(-1, 1, R, R))  # (B, 1, R, R)
    if ss > 1:
        mask = F.avg_pool2d(mask, ss)
    obj = hsv_to_rgb(f["hue"] * HUE_SPAN, *OBJ_SV)[:, :, None, None]
    bg = hsv_to_rgb(f["bg_hue"] * HUE_SPAN, *BG_SV)[:, :, None, None]
    img = mask * obj + (1.0 - mask) * bg
    return img * 2.0 - 1.0


def render_scenes(n: int, seed: Optional[int] = None, *, generator: Optional[torch.Generator] = None,
                  size: int = 32, supersample: int = 4):
    """Sample n scenes' factors (see :func:`sample_factors`) and render them -> (images (n, 3, size, size) in
    [-1, 1], factors dict)."""
    factors = sample_factors(n, seed, generator=generator)
    return render(factors, size=size, supersample=supersample), factors


def factors_to_array(factors: Dict[str, Tensor]) -> np.ndarray:
    """The continuous factors as a float32 array (B, 6) in :data:`CONTINUOUS_FACTORS` order."""
    _check_factors(factors)
    return torch.stack([torch.as_tensor(factors[k]).float() for k in CONTINUOUS_FACTORS], 1).numpy()
