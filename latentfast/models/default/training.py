"""Training pieces for the shipped default generator (used by ``scripts/train_default_generator.py``).

* :func:`synthesis_fast` — the same function as ``StyleGAN2Generator.synthesis`` (random noise mode) computed with
  "non-fused" modulation: scale the input channels by the style, convolve with the shared weight, scale the output
  channels by the demodulation factor.  Mathematically identical to the grouped per-sample convolution and several
  times faster on a CPU; used only for training (the tests check it against the module).
* :class:`Discriminator` — a compact StyleGAN2-style residual discriminator with equalised learning rate and a
  minibatch standard-deviation layer.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..stylegan2 import SQRT2, StyleGAN2Generator, _lrelu

Tensor = torch.Tensor

__all__ = ["synthesis_fast", "Discriminator", "mapping_ws"]


def _fir_sep(x: Tensor, kernel: Tensor, pad0: int, pad1: int, gain: float = 1.0) -> Tensor:
    """:func:`fir_filter` for a separable symmetric kernel (outer(k, k) / sum(k)^2, as StyleGAN's) computed with
    shifted slices: far cheaper than a depthwise conv2d (and its backward) on a CPU."""
    taps = kernel.sum(1).tolist()
    n = len(taps)
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    H, W = x.shape[-2] - n + 1, x.shape[-1] - n + 1
    x = sum(t * x[..., :, j:j + W] for j, t in enumerate(taps))
    x = sum(t * x[..., j:j + H, :] for j, t in enumerate(taps))
    return x * gain


def _up2x(x: Tensor, kernel: Tensor) -> Tensor:
    B, C, H, W = x.shape
    up = x.new_zeros(B, C, H, 2, W, 2)
    up[:, :, :, 0, :, 0] = x
    kh = kernel.shape[0]
    return _fir_sep(up.reshape(B, C, 2 * H, 2 * W), kernel, (kh + 1) // 2, (kh - 2) // 2, gain=4.0)


def _styled_fast(layer, x: Tensor, w: Tensor, noise: Optional[Tensor]) -> Tensor:
    conv = layer.conv
    s = conv.affine(w) * conv.scale  # (B, I)
    weight = conv.weight  # (O, I, k, k)
    x = x * s[:, :, None, None]
    if conv.up:
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        kh, k = conv.kernel.shape[0], weight.shape[-1]
        p = kh - 2 - (k - 1)
        x = _fir_sep(x, conv.kernel, (p + 1) // 2 + 1, p // 2 + 1, gain=4.0)
    else:
        x = F.conv2d(x, weight, padding=conv.padding)
    if conv.demodulate:
        d = (s.square() @ weight.square().sum(dim=[2, 3]).T + 1e-8).rsqrt()  # (B, O)
        x = x * d[:, :, None, None]
    if noise is not None:
        x = x + noise * layer.noise_strength
    x = _lrelu(x + layer.bias[None, :, None, None])
    if layer.conv_clamp is not None:
        x = x.clamp(-layer.conv_clamp, layer.conv_clamp)
    return x


def _torgb_fast(torgb, x: Tensor, w: Tensor) -> Tensor:
    conv = torgb.conv
    s = conv.affine(w) * conv.scale
    x = F.conv2d(x * s[:, :, None, None], conv.weight) + torgb.bias[None, :, None, None]
    return x.clamp(-torgb.conv_clamp, torgb.conv_clamp) if torgb.conv_clamp is not None else x


def synthesis_fast(G: StyleGAN2Generator, ws: Tensor, noise_mode: str = "random",
                   generator: Optional[torch.Generator] = None) -> Tensor:
    """ws (B, num_ws, w_dim) -> raw images (B, 3, size, size), equal (to float rounding) to
    ``G.synthesis(ws, noise_mode)`` for noise_mode "const" / "none"; "random" draws fresh noise per sample."""
    syn = G.synthesis
    B = ws.shape[0]
    x = img = None
    i = 0

    def noise(layer):
        if noise_mode == "none":
            return None
        if noise_mode == "const":
            return layer.noise_const[None, None]
        r = layer.resolution
        return torch.randn(B, 1, r, r, generator=generator, device=ws.device, dtype=ws.dtype)

    for blk in syn.blocks:
        if blk.first:
            x = blk.const[None].expand(B, -1, -1, -1)
        else:
            x = _styled_fast(blk.conv0, x, ws[:, i], noise(blk.conv0))
            i += 1
        x = _styled_fast(blk.conv1, x, ws[:, i], noise(blk.conv1))
        i += 1
        y = _torgb_fast(blk.torgb, x, ws[:, i])
        img = y if img is None else _up2x(img, blk.kernel) + y
    return img


def mapping_ws(G: StyleGAN2Generator, z: Tensor, mixing_prob: float = 0.0,
               generator: Optional[torch.Generator] = None) -> Tensor:
    """z (B, z_dim) -> ws (B, num_ws, w_dim); with probability ``mixing_prob`` per sample, the layers from a random
    cut-off on take the w of a second latent (StyleGAN2's style-mixing regularisation)."""
    B, L = z.shape[0], G.num_ws
    w = G.mapping(z)
    ws = w[:, None].expand(B, L, -1)
    if mixing_prob > 0:
        w2 = G.mapping(torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype))
        cut = torch.randint(1, L, (B,), generator=generator, device=z.device)
        use = torch.rand(B, generator=generator, device=z.device) < mixing_prob
        cut = torch.where(use, cut, torch.full_like(cut, L))
        layer = torch.arange(L, device=z.device)[None, :, None]
        ws = torch.where(layer < cut[:, None, None], ws, w2[:, None].expand(B, L, -1))
    return ws


class EqConv2d(nn.Module):
    """Conv2d with equalised learning rate (weights ~ N(0, 1) scaled by 1/sqrt(fan_in) at run time)."""

    def __init__(self, in_ch: int, out_ch: int, k: int, *, bias: bool = True, activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale, self.pad, self.activate = 1.0 / math.sqrt(in_ch * k * k), k // 2, activate

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)
        return _lrelu(x) if self.activate else x


class EqLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, *, activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale, self.activate = 1.0 / math.sqrt(in_dim), activate

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias)
        return _lrelu(x) if self.activate else x


class _DBlock(nn.Module):
    """conv3x3, conv3x3, 2x average-pool downsample; residual 1x1 skip; sum / sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = EqConv2d(in_ch, in_ch, 3)
        self.conv1 = EqConv2d(in_ch, out_ch, 3)
        self.skip = EqConv2d(in_ch, out_ch, 1, bias=False, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        y = F.avg_pool2d(self.conv1(self.conv0(x)), 2)
        return (y + self.skip(F.avg_pool2d(x, 2))) / SQRT2


class Discriminator(nn.Module):
    """images (B, 3, size, size) -> logits (B,).  ``channels`` {resolution: channels} for size, size/2, ..., 4."""

    def __init__(self, size: int, channels: Dict[int, int], *, mbstd_group: int = 4, img_channels: int = 3):
        super().__init__()
        res = [2**i for i in range(int(math.log2(size)), 1, -1)]  # size ... 4
        self.from_rgb = EqConv2d(img_channels, channels[size], 1)
        self.blocks = nn.ModuleList(_DBlock(channels[r], channels[r // 2]) for r in res[:-1])
        c4 = channels[4]
        self.mbstd_group = mbstd_group
        self.conv = EqConv2d(c4 + 1, c4, 3)
        self.fc = EqLinear(c4 * 16, c4)
        self.out = EqLinear(c4, 1, activate=False)

    def forward(self, img: Tensor) -> Tensor:
        x = self.from_rgb(img)
        for blk in self.blocks:
            x = blk(x)
        B, C, H, W = x.shape
        g = min(self.mbstd_group, B)
        if B % g:
            g = 1
        y = x.reshape(g, -1, C, H, W)
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # (B/g,)
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, H, W)
        x = self.conv(torch.cat([x, y], 1))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
