"""Pictures with pillow only: image grids with labels, and simple line/bar charts (no matplotlib needed)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

Tensor = torch.Tensor


def to_uint8(images: Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def _font():
    return ImageFont.load_default()


def image_grid(images: Tensor, rows: int, cols: int, *, scale: int = 1, pad: int = 2,
               row_labels: Optional[Sequence[str]] = None, title: Optional[str] = None,
               label_width: int = 0) -> Image.Image:
    """Tile (rows*cols, 3, H, W) images in [-1, 1] row-major; optional row labels on the left and a title."""
    arr = to_uint8(images)
    n, h, w, _ = arr.shape
    if n != rows * cols:
        raise ValueError(f"images: expected rows*cols = {rows * cols} images, got {n}")
    h, w = h * scale, w * scale
    lw = label_width if row_labels else 0
    th = 14 if title else 0
    canvas = Image.new("RGB", (lw + cols * (w + pad) + pad, th + rows * (h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 1), title, fill=(0, 0, 0), font=_font())
    for i in range(n):
        r, c = divmod(i, cols)
        tile = Image.fromarray(arr[i]).resize((w, h), Image.NEAREST)
        canvas.paste(tile, (lw + pad + c * (w + pad), th + pad + r * (h + pad)))
    if row_labels:
        for r, lab in enumerate(row_labels):
            draw.text((2, th + pad + r * (h + pad) + h // 2 - 5), str(lab)[: max(1, lw // 6)], fill=(0, 0, 0),
                      font=_font())
    return canvas


def vertex_grid(images: Tensor, title: str, cols: int = 8, scale: int = 2) -> Image.Image:
    """One image per curve vertex, row-major in curve order, the last row padded with white tiles."""
    n = images.shape[0]
    cols = min(cols, n)
    rows = -(-n // cols)
    if rows * cols > n:
        images = torch.cat([images, torch.ones(rows * cols - n, *images.shape[1:], dtype=images.dtype)])
    return image_grid(images, rows, cols, scale=scale, title=title)


def hstack(panels: List[Image.Image], gap: int = 8) -> Image.Image:
    """Side-by-side panels, top-aligned."""
    W = sum(p.width for p in panels) + gap * (len(panels) - 1)
    H = max(p.height for p in panels)
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    x = 0
    for p in panels:
        canvas.paste(p, (x, 0))
        x += p.width + gap
    return canvas


PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]


def line_chart(x: Sequence[float], series: Dict[str, Sequence[float]], *, title: str = "", xlabel: str = "",
               ylabel: str = "", size=(560, 360), errors: Optional[Dict[str, Sequence[float]]] = None) -> Image.Image:
    """A small line chart with a legend; ``errors`` draws +-error bars."""
    W, H = size
    left, right, top, bottom = 60, 170, 28, 40
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = _font()
    xs = np.asarray(x, dtype=float)
    ys_all = [np.asarray(v, dtype=float) for v in series.values()]
    err_all = [np.asarray(errors.get(k, np.zeros_like(v)), dtype=float) if errors else np.zeros(len(v))
               for k, v in series.items()] if series else []
    lo = min(float((y - e).min()) for y, e in zip(ys_all, err_all)) if ys_all else 0.0
    hi = max(float((y + e).max()) for y, e in zip(ys_all, err_all)) if ys_all else 1.0
    lo = min(lo, 0.0)
    hi = hi if hi > lo else lo + 1.0
    xlo, xhi = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1
    px = lambda v: left + (v - xlo) / (xhi - xlo) * (W - left - right)
    py = lambda v: H - bottom - (v - lo) / (hi - lo) * (H - top - bottom)
    d.rectangle([left, top, W - right, H - bottom], outline=(0, 0, 0))
    for t in np.linspace(lo, hi, 5):
        d.line([left - 4, py(t), left, py(t)], fill=(0, 0, 0))
        d.text((4, py(t) - 6), f"{t:.2f}", fill=(0, 0, 0), font=font)
    for t in xs:
        d.line([px(t), H - bottom, px(t), H - bottom + 4], fill=(0, 0, 0))
        d.text((px(t) - 6, H - bottom + 6), f"{t:g}", fill=(0, 0, 0), font=font)
    d.text((left, 6), title, fill=(0, 0, 0), font=font)
    d.text(((W - right + left) // 2 - 20, H - 16), xlabel, fill=(0, 0, 0), font=font)
    d.text((4, top - 16), ylabel, fill=(0, 0, 0), font=font)
    for i, ((name, ys), errs) in enumerate(zip(series.items(), err_all)):
        col = PALETTE[i % len(PALETTE)]
        pts = [(px(a), py(b)) for a, b in zip(xs, ys)]
        if len(pts) > 1:
            d.line(pts, fill=col, width=2)
        for (a, b), yv, e in zip(pts, ys, errs):
            d.ellipse([a - 3, b - 3, a + 3, b + 3], fill=col)
            if e > 0:
                d.line([a, py(yv - e), a, py(yv + e)], fill=col)
        d.rectangle([W - right + 10, top + 14 * i + 3, W - right + 20, top + 14 * i + 11], fill=col)
        d.text((W - right + 24, top + 14 * i), name[:24], fill=(0, 0, 0), font=font)
    return img


def save_png(img: Image.Image, path) -> None:
    img.save(path, format="PNG")
