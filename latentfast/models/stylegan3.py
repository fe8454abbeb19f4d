"""StyleGAN3 generator (alias-free, configs T and R) in plain PyTorch ops.

Layout and numerics follow NVlabs/stylegan3 ``training/networks_stylegan3.py`` with its custom ops replaced by
their definitions: ``upfirdn2d`` is zero insertion + pad/crop + a depthwise convolution with the stored FIR filter
(separable 1-D or 2-D, e.g. StyleGAN3-R's radial down filters) + subsampling, and ``filtered_lrelu`` is bias,
upsample (gain up**2), leaky ReLU (slope 0.2, gain sqrt 2; identity for ToRGB), clamp to +-conv_clamp, downsample.
Every layer runs in float32 (NVIDIA's fp16 layers too).  One deliberate difference: the style pre-normalisation of
the modulated convolution is taken per sample instead of over the batch (it cancels in the demodulation, so the
images agree to float rounding) — rows stay independent, as Jacobian methods need.

The networks are built from the per-layer settings an NVIDIA pickle stores (filters, up/down factors, padding,
sizes); :func:`latentfast.models.load_generator` does that.  Shapes: z (B, z_dim), w (B, w_dim),
ws (B, num_ws, w_dim), images (B, img_channels, size, size) float32 in about [-1, 1].
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import as_tensor, check_choice, check_floating, check_ndim, check_nonempty
from .adapters import Generator
from .stylegan2 import EqualLinear, MappingNetwork, StyleMappingMixin

Tensor = torch.Tensor

__all__ = ["StyleGAN3Generator", "SynthesisNetwork3", "SynthesisInput3", "SynthesisLayer3", "upfirdn2d"]


def upfirdn2d(x: Tensor, f: Optional[Tensor], up: int = 1, down: int = 1, padding: Sequence[int] = (0, 0, 0, 0),
              gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad (negative = crop; [x0, x1, y0, y1]), convolve every channel with the FIR
    filter ``f`` (None = identity, (k,) = separable, (kh, kw)) times ``gain``, keep every ``down``-th sample.
    x (B, C, H, W) -> (B, C, (H*up + y0 + y1 - kh + 1) / down, ...), rounded up."""
    B, C, H, W = x.shape
    if up > 1:
        x = F.pad(x.reshape(B, C, H, 1, W, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(B, C, H * up, W * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    if f is None:
        x = x * gain if gain != 1 else x
        return x[:, :, ::down, ::down]
    f = (f * gain ** (f.dim() / 2)).to(x.dtype).flip(list(range(f.dim())))  # convolution, not correlation
    h, w = x.shape[2:]
    x = x.reshape(B * C, 1, h, w)
    if f.dim() == 2:
        x = F.conv2d(x, f[None, None], stride=down)
    else:
        x = F.conv2d(x, f[None, None, None, :], stride=(1, down))
        x = F.conv2d(x, f[None, None, :, None], stride=(down, 1))
    return x.reshape(B, C, *x.shape[2:])


class SynthesisInput3(nn.Module):
    """Fourier features: w -> (rotation, translation) of ``channels`` sinusoids (``freqs``, ``phases``) sampled on a
    ``size`` grid at ``sampling_rate``, composed with the user ``transform`` (3x3, inverse, image coordinates),
    out-of-band frequencies damped, then mixed by ``weight`` / sqrt(channels).  w (B, w_dim) -> (B, C, h, w)."""

    def __init__(self, w_dim: int, channels: int, size: Sequence[int], sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.size = (int(size[0]), int(size[1]))  # (width, height)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        self.weight = nn.Parameter(torch.zeros(channels, channels))
        self.affine = EqualLinear(w_dim, 4)
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", torch.zeros(channels, 2))
        self.register_buffer("phases", torch.zeros(channels))

    def forward(self, w: Tensor) -> Tensor:
        t = self.affine(w)  # (r_c, r_s, t_x, t_y)
        c, s, tx, ty = (t / t[:, :2].norm(dim=1, keepdim=True)).unbind(1)
        o, i = torch.zeros_like(c), torch.ones_like(c)
        rows = lambda *r: torch.stack([torch.stack(x, -1) for x in r], -2)  # noqa: E731  (no in-place: vmap-safe)
        m_r = rows((c, -s, o), (s, c, o), (o, o, i))  # inverse rotation, then translation, of the image
        m_t = rows((i, o, -tx), (o, i, -ty), (o, o, i))
        transforms = m_r @ m_t @ self.transform.to(w.dtype)[None]
        freqs0 = self.freqs.to(w.dtype)[None]
        phases = self.phases.to(w.dtype)[None] + (freqs0 @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs0 @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        theta = torch.eye(2, 3, device=w.device, dtype=w.dtype)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grids = F.affine_grid(theta[None], [1, 1, self.size[1], self.size[0]], align_corners=False)
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1)[:, None, None]).squeeze(3)  # (B, h, w, C)
        x = torch.sin((x + phases[:, None, None]) * (2 * math.pi)) * amplitudes[:, None, None]
        x = x @ (self.weight / math.sqrt(self.channels)).to(w.dtype).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer3(nn.Module):
    """Modulated convolution (input scaled by magnitude_ema**-1/2, demodulated unless ToRGB) then the filtered
    leaky ReLU with the stored ``up_filter`` / ``down_filter`` (None = identity), ``up`` / ``down`` factors and
    ``padding`` [x0, x1, y0, y1], clamped to +-``conv_clamp``.  x (B, in_ch, in_h, in_w) -> (B, out_ch, out_h, out_w).
    """

    def __init__(self, w_dim: int, in_channels: int, out_channels: int, conv_kernel: int, *, is_torgb: bool,
                 up: int, down: int, padding: Sequence[int], up_filter: Optional[Tensor],
                 down_filter: Optional[Tensor], conv_clamp: Optional[float], out_size: Sequence[int]):
        super().__init__()
        self.in_channels, self.out_channels, self.conv_kernel = in_channels, out_channels, conv_kernel
        self.is_torgb, self.up, self.down = bool(is_torgb), int(up), int(down)
        self.padding = [int(p) for p in padding]
        self.conv_clamp = None if conv_clamp is None else float(conv_clamp)
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, conv_kernel, conv_kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("magnitude_ema", torch.ones(()))
        self.register_buffer("up_filter", None if up_filter is None else up_filter.detach().float().clone())
        self.register_buffer("down_filter", None if down_filter is None else down_filter.detach().float().clone())

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        B, I, H, W = x.shape
        O, _, k, _ = self.weight.shape
        styles = self.affine(w)
        weight = self.weight.to(x.dtype)
        if self.is_torgb:
            styles = styles / math.sqrt(I * k * k)
        else:  # pre-normalisation (per sample; NVIDIA takes the style mean over the batch, which demodulation cancels)
            weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
            styles = styles * styles.square().mean(1, keepdim=True).rsqrt()
        wt = weight[None] * styles[:, None, :, None, None]  # (B, O, I, k, k)
        if not self.is_torgb:
            wt = wt * (wt.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        wt = wt * self.magnitude_ema.to(x.dtype).rsqrt()
        x = F.conv2d(x.reshape(1, B * I, H, W), wt.reshape(B * O, I, k, k), padding=k - 1, groups=B)
        x = x.reshape(B, O, *x.shape[2:]) + self.bias.to(x.dtype)[None, :, None, None]
        x = upfirdn2d(x, self.up_filter, up=self.up, padding=self.padding, gain=self.up ** 2)
        if not self.is_torgb:
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return upfirdn2d(x, self.down_filter, down=self.down)


class SynthesisNetwork3(nn.Module):
    """ws (B, num_ws, w_dim) -> images (B, img_channels, size, size): ``input`` takes ws[:, 0], ``layers[i]`` takes
    ws[:, i + 1]; the output is scaled by ``output_scale``.  num_ws = len(layers) + 1."""

    def __init__(self, input: SynthesisInput3, layers: Sequence[SynthesisLayer3], *, size: int,
                 img_channels: int, output_scale: float):
        super().__init__()
        self.input, self.layers = input, nn.ModuleList(layers)
        self.w_dim, self.size, self.img_channels = input.w_dim, int(size), int(img_channels)
        self.output_scale, self.num_ws = float(output_scale), len(self.layers) + 1

    def forward(self, ws: Tensor) -> Tensor:
        ws = check_floating("ws", as_tensor("ws", ws))
        check_ndim("ws", ws, 3, f"(B, {self.num_ws}, {self.w_dim})")
        if tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"ws: expected shape (B, {self.num_ws}, {self.w_dim}), got shape {tuple(ws.shape)}")
        check_nonempty("ws", ws)
        x = self.input(ws[:, 0])
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i + 1])
        return x * self.output_scale if self.output_scale != 1 else x


class StyleGAN3Generator(StyleMappingMixin, nn.Module, Generator):
    """StyleGAN3 generator: ``mapping`` z [, c] -> w, broadcast to W+ with truncation towards ``w_avg``
    (:class:`~latentfast.models.stylegan2.StyleMappingMixin`: ``f``, ``mlp_spec``, ``set_class``, ``truncate``),
    ``synthesis`` (:class:`SynthesisNetwork3`).  Same adapter surface as StyleGAN2Generator: ``sample_z``, ``f``,
    ``mlp_spec``, ``synthesize(w or ws)``, ``num_ws``, ``w_dim``, ``z_dim``.  Built by the NVIDIA pickle loader.
    """

    def __init__(self, mapping: MappingNetwork, synthesis: SynthesisNetwork3, w_avg: Optional[Tensor] = None):
        super().__init__()
        if mapping.w_dim != synthesis.w_dim:
            raise ValueError(f"synthesis: expected w_dim {mapping.w_dim} (the mapping's), got {synthesis.w_dim}")
        self.mapping, self.synthesis = mapping, synthesis
        self.z_dim, self.w_dim, self.num_ws, self.size = mapping.z_dim, mapping.w_dim, synthesis.num_ws, synthesis.size
        self.register_buffer("w_avg", torch.zeros(self.w_dim) if w_avg is None else w_avg.detach().float().clone())
        self.has_w_avg = w_avg is not None

    def synthesize(self, latent: Tensor, noise_mode: str = "const") -> Tensor:
        """w (B, w_dim) or ws (B, num_ws, w_dim) -> images (B, img_channels, size, size) clamped to [-1, 1].
        ``noise_mode`` is accepted for StyleGAN2 compatibility; StyleGAN3 has no noise inputs."""
        check_choice("noise_mode", noise_mode, ["const", "random", "none"])
        return self.synthesis(self.as_ws(latent)).clamp(-1, 1)

    def forward(self, z: Tensor, truncation: float = 1.0, truncation_cutoff: Optional[int] = None,
                noise_mode: str = "const", *, c=None) -> Tensor:
        """z (B, z_dim) -> images (B, img_channels, size, size), unclamped; ``c``: class of a conditional G."""
        check_choice("noise_mode", noise_mode, ["const", "random", "none"])
        return self.synthesis(self.mapping_ws(z, c, truncation, truncation_cutoff))

