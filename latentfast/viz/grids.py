"""Image grids with pillow: tiles, text headers (DejaVu Sans, shipped with matplotlib) and difference maps."""
from __future__ import annotations

import os
from functools import lru_cache
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

Tensor = torch.Tensor
WHITE, BLACK, GREY, MARK = (255, 255, 255), (0, 0, 0), (110, 110, 110), (200, 30, 30)


def to_uint8(images: Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@lru_cache(maxsize=None)
def font(size: int = 12, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans at ``size`` px (the TrueType font matplotlib ships, so text is kerned); pillow's own default
    font when that file is missing."""
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default(size)


def _text_size(text: str, f) -> tuple:
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox((0, 0), text, font=f, spacing=2)
    return box[2] - box[0], box[3] - box[1]


def _magma_lut() -> np.ndarray:
    import matplotlib

    return (matplotlib.colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def diff_map(edited: Tensor, original: Tensor, gain: float = 4.0) -> np.ndarray:
    """|edited - original| as a colour map: (N, 3, H, W) and (N or 1, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8.

    The absolute difference in [0, 1] image units (mean over channels), times ``gain``, clipped at 1, through the
    magma colour map (black = unchanged, yellow = changed by 1/gain or more)."""
    d = ((edited.detach().float() - original.detach().float()).abs() / 2).mean(1)  # (N, H, W) in [0, 1]
    idx = (d * gain).clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return _magma_lut()[idx]


def image_grid(images: Tensor, rows: int, cols: int, *, scale: int = 1, pad: int = 2,
               row_labels: Optional[Sequence[str]] = None, title: Optional[str] = None,
               label_width: int = 0) -> Image.Image:
    """Tile (rows*cols, 3, H, W) images in [-1, 1] row-major; optional row labels on the left and a title."""
    arr = to_uint8(images)
    n, h, w, _ = arr.shape
    if n != rows * cols:
        raise ValueError(f"images: expected rows*cols = {rows * cols} images, got {n}")
    h, w = h * scale, w * scale
    f = font(12)
    lw = max(label_width, max(_text_size(str(s), f)[0] for s in row_labels) + 8) if row_labels else 0
    th = _text_size(title, font(13, True))[1] + 8 if title else 0
    canvas = Image.new("RGB", (lw + cols * (w + pad) + pad, th + rows * (h + pad) + pad), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 2), title, fill=BLACK, font=font(13, True))
    for i in range(n):
        r, c = divmod(i, cols)
        canvas.paste(Image.fromarray(arr[i]).resize((w, h), Image.NEAREST), (lw + pad + c * (w + pad), th + pad + r * (h + pad)))
    for r, lab in enumerate(row_labels or []):
        draw.multiline_text((2, th + pad + r * (h + pad) + h // 2), str(lab), fill=BLACK, font=f, anchor="lm")
    return canvas


def vertex_grid(images: Tensor, title: str, cols: int = 8, scale: int = 2, labels: Optional[Sequence[str]] = None
                ) -> Image.Image:
    """One image per curve vertex, row-major in curve order, each with its label (default: its index) above it."""
    n = images.shape[0]
    cols = min(cols, n)
    labels = [f"vertex {i}" for i in range(n)] if labels is None else list(labels)
    arr = to_uint8(images)
    h, w = arr.shape[1] * scale, arr.shape[2] * scale
    f, pad = font(11), 4
    lh = _text_size("Ag", f)[1] + 4
    th = _text_size(title, font(13, True))[1] + 10
    rows = -(-n // cols)
    canvas = Image.new("RGB", (cols * (w + pad) + pad, th + rows * (lh + h + pad) + pad), WHITE)
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 3), title, fill=BLACK, font=font(13, True))
    for i in range(n):
        r, c = divmod(i, cols)
        x, y = pad + c * (w + pad), th + r * (lh + h + pad)
        draw.text((x + w // 2, y + lh // 2), labels[i], fill=BLACK, font=f, anchor="mm")
        canvas.paste(Image.fromarray(arr[i]).resize((w, h), Image.NEAREST), (x, y + lh))
    return canvas


def traversal_grid(images: Tensor, originals: Tensor, alphas: Sequence[float], row_labels: Sequence[Sequence[str]],
                   *, title: str, block_labels: Optional[Sequence[str]] = None, scale: int = 2,
                   diff_gain: float = 2.0) -> Image.Image:
    """A labelled traversal grid: B base latents (blocks) x k edits (rows) x F edit sizes (columns).

    images:     (B, k, F, 3, H, W) in [-1, 1], the edited images
    originals:  (B, 3, H, W), the unedited image of each base latent (the difference maps' reference)
    alphas:     F edit sizes, the column headers; the column with alpha == 0 is framed and headed "original"
    row_labels: B lists of k labels (multi-line text allowed), drawn left of each row
    Under every row of edits a row of half-size difference maps |edited - original| (see :func:`diff_map`).
    """
    if images.dim() != 6:
        raise ValueError(f"images: expected shape (B, k, F, 3, H, W), got {tuple(images.shape)}")
    B, k, F = images.shape[:3]
    if len(alphas) != F:
        raise ValueError(f"alphas: expected {F} values (one per column), got {len(alphas)}")
    if len(row_labels) != B or any(len(r) != k for r in row_labels):
        raise ValueError(f"row_labels: expected {B} lists of {k} labels")
    H, W = images.shape[-2] * scale, images.shape[-1] * scale
    hd, wd = H // 2, W // 2
    pad, gap = 3, 10
    f, fs, fb = font(12), font(10), font(13, True)
    centre = min(range(F), key=lambda j: abs(float(alphas[j])))
    centre = centre if abs(float(alphas[centre])) < 1e-12 else None
    lw = max(_text_size(s, f)[0] for r in row_labels for s in r) + 10
    lw = max(lw, _text_size(f"|edit − orig| ×{diff_gain:g}", fs)[0] + 8)
    th = _text_size(title, fb)[1] + 10
    heads = ["original\nα = 0" if j == centre else f"α = {float(a):+.2f}" for j, a in enumerate(alphas)]
    hh = max(_text_size(s, fs)[1] for s in heads) + 8
    bh = _text_size("Ag", fb)[1] + 8 if block_labels else 0
    row_h = H + pad + hd + pad + gap
    width = lw + F * (W + pad) + pad
    height = th + hh + B * (bh + k * row_h) + pad
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 3), title, fill=BLACK, font=fb)
    col_x = [lw + pad + j * (W + pad) for j in range(F)]
    for j, s in enumerate(heads):
        draw.multiline_text((col_x[j] + W // 2, th + hh - 4), s, fill=MARK if j == centre else BLACK, font=fs,
                            anchor="md", align="center", spacing=2)
    y = th + hh
    for b in range(B):
        if block_labels:
            draw.text((pad, y + 3), block_labels[b], fill=BLACK, font=fb)
            draw.line([(pad, y + bh - 3), (width - pad, y + bh - 3)], fill=GREY)
            y += bh
        tiles = to_uint8(images[b].reshape(k * F, *images.shape[3:]))
        diffs = diff_map(images[b].reshape(k * F, *images.shape[3:]), originals[b:b + 1], diff_gain)
        for i in range(k):
            draw.multiline_text((4, y + H // 2), row_labels[b][i], fill=BLACK, font=f, anchor="lm", spacing=2)
            draw.text((4, y + H + pad + hd // 2), f"|edit − orig| ×{diff_gain:g}", fill=GREY, font=fs, anchor="lm")
            for j in range(F):
                t = tiles[i * F + j]
                canvas.paste(Image.fromarray(t).resize((W, H), Image.NEAREST), (col_x[j], y))
                d = Image.fromarray(diffs[i * F + j]).resize((wd, hd), Image.NEAREST)
                canvas.paste(d, (col_x[j] + (W - wd) // 2, y + H + pad))
                if j == centre:
                    draw.rectangle([col_x[j] - 2, y - 2, col_x[j] + W + 1, y + H + 1], outline=MARK, width=2)
            y += row_h
    return canvas


def hstack(panels: List[Image.Image], gap: int = 12) -> Image.Image:
    """Side-by-side panels, top-aligned."""
    W = sum(p.width for p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (W, max(p.height for p in panels)), WHITE)
    x = 0
    for p in panels:
        canvas.paste(p, (x, 0))
        x += p.width + gap
    return canvas


def vstack(panels: List[Image.Image], gap: int = 12) -> Image.Image:
    """Panels one under the other, left-aligned."""
    H = sum(p.height for p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (max(p.width for p in panels), H), WHITE)
    y = 0
    for p in panels:
        canvas.paste(p, (0, y))
        y += p.height + gap
    return canvas


def with_caption(img: Image.Image, text: str, size: int = 12) -> Image.Image:
    """``img`` with a line of text under it."""
    f = font(size)
    tw, th = _text_size(text, f)
    canvas = Image.new("RGB", (max(img.width, tw + 8), img.height + th + 10), WHITE)
    canvas.paste(img, (0, 0))
    ImageDraw.Draw(canvas).multiline_text((4, img.height + 4), text, fill=BLACK, font=f, spacing=2)
    return canvas


def save_png(img: Image.Image, path) -> None:
    img.save(path, format="PNG")
