"""StyleGAN2 generator (config-e/f "skip" architecture) in plain PyTorch ops.

No custom CUDA kernels: the fused bias+leaky-ReLU becomes ``u * where(u >= 0, g, g * 0.2)`` and NVIDIA's
``upfirdn2d`` becomes zero-insertion + zero padding + a depthwise ``conv2d`` with the (symmetric) FIR kernel, so
``torch.func`` transforms and the hand-written MLP kernels apply.  Numerics follow rosinality/stylegan2-pytorch
and NVlabs/stylegan2-ada-pytorch, which agree on every operation used here (the loaders in
:mod:`latentfast.models.loaders` (rosinality, nvidia_pkl) map both checkpoint layouts onto this module).

Shapes: z (B, z_dim), w (B, w_dim), ws (B, num_ws, w_dim), images (B, img_channels, size, size) float32,
nominally in [-1, 1] (the network output is not clamped, like the originals; :meth:`StyleGAN2Generator.synthesize`
clamps).
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (as_tensor, check_choice, check_finite, check_floating, check_int, check_ndim,
                       check_nonempty)
from ..ops.mlp_jvp.reference import MLPSpec
from .adapters import Generator, check_latent

Tensor = torch.Tensor

__all__ = ["StyleGAN2Generator", "MappingNetwork", "SynthesisNetwork", "StyleMappingMixin", "class_vector",
           "rosinality_channels"]

SQRT2 = math.sqrt(2.0)


def _lrelu(u: Tensor, slope: float = 0.2, gain: float = SQRT2) -> Tensor:
    # Same expression as MLPSpec's forward so mlp_spec() reproduces the mapping network to the last bit.
    return u * torch.where(u >= 0, u.new_tensor(gain), u.new_tensor(gain * slope))


def rosinality_channels(size: int, channel_multiplier: int = 2) -> Dict[int, int]:
    """Channel count per resolution of rosinality's ``Generator`` (512 up to 32x32, then 2**(14-log2 res) * cm)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {r: c if r <= 32 else c * channel_multiplier for r, c in table.items() if r <= size}


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: y = x (w * lr_mul / sqrt(in))^T + b * lr_mul, then optionally
    the scaled leaky ReLU.  ``weight`` (out, in) and ``bias`` (out,) are the raw (stored) parameters."""

    def __init__(self, in_dim: int, out_dim: int, *, lr_mul: float = 1.0, bias_init: float = 0.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_dim)
        self.bias_gain = lr_mul
        self.activate = activate

    def effective(self):
        """(W_eff (out, in), b_eff (out,)) with the gains folded in."""
        return self.weight * self.weight_gain, self.bias * self.bias_gain

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.effective()
        u = torch.addmm(b.to(x.dtype), x, w.to(x.dtype).T)
        return _lrelu(u) if self.activate else u


def class_vector(c, c_dim: int, name: str = "c") -> Tensor:
    """A class label for a conditional mapping network: an int index (one-hot), a (c_dim,) vector or a (B, c_dim)
    batch -> float tensor (c_dim,) or (B, c_dim).  ValueError/TypeError naming ``name`` otherwise."""
    if isinstance(c, bool):
        raise TypeError(f"{name}: expected a class index or a class vector of width {c_dim}, got a bool")
    if isinstance(c, int) or (isinstance(c, Tensor) and c.dim() == 0 and not c.is_floating_point()):
        i = int(c)
        if not 0 <= i < c_dim:
            raise ValueError(f"{name}: expected a class index in [0, {c_dim}), got {i}")
        return F.one_hot(torch.tensor(i), c_dim).to(torch.float32)
    c = check_floating(name, as_tensor(name, c))
    if c.dim() not in (1, 2) or c.shape[-1] != c_dim:
        raise ValueError(f"{name}: expected a class index, a vector of shape ({c_dim},) or a batch of shape "
                         f"(B, {c_dim}), got shape {tuple(c.shape)}")
    return check_finite(name, c)


class MappingNetwork(nn.Module):
    """z (B, z_dim) [, c] -> w (B, w_dim): PixelNorm (2nd-moment normalisation), then ``n_layers`` activated
    :class:`EqualLinear` layers with learning-rate multiplier ``lr_mul``.

    Class-conditional (``c_dim > 0``, NVIDIA's layout): the class vector c goes through the linear ``embed`` layer
    (c_dim -> embed_dim, default w_dim) and PixelNorm, and is concatenated after the normalised z.
    """

    def __init__(self, z_dim: int, w_dim: int, n_layers: int, *, hidden_dim: Optional[int] = None,
                 lr_mul: float = 0.01, eps: float = 1e-8, c_dim: int = 0, embed_dim: Optional[int] = None):
        super().__init__()
        self.z_dim, self.w_dim, self.eps = check_int("z_dim", z_dim, low=1), check_int("w_dim", w_dim, low=1), eps
        self.c_dim = check_int("c_dim", c_dim, low=0)
        check_int("n_layers", n_layers, low=1)
        hidden = w_dim if hidden_dim is None else hidden_dim
        embed = (w_dim if embed_dim is None else check_int("embed_dim", embed_dim, low=1)) if self.c_dim else 0
        if self.c_dim:
            self.embed = EqualLinear(self.c_dim, embed, lr_mul=1.0)
        dims = [z_dim + embed] + [hidden] * (n_layers - 1) + [w_dim]
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=lr_mul, activate=True) for a, b in zip(dims, dims[1:]))

    def _pixel_norm(self, x: Tensor) -> Tensor:
        return x / (x.square().mean(-1, keepdim=True) + self.eps).sqrt()

    def _embedded_class(self, c) -> Tensor:
        if c is None:
            raise ValueError(f"c: this mapping network is class-conditional (c_dim={self.c_dim}); expected a class "
                             f"index or a class vector of width {self.c_dim}, got None")
        c = class_vector(c, self.c_dim)
        return self._pixel_norm(self.embed(c.to(self.embed.weight.device, self.embed.weight.dtype)[None]
                                           if c.dim() == 1 else c.to(self.embed.weight.device)))

    def forward(self, z: Tensor, c=None) -> Tensor:
        """z (B, z_dim) -> w (B, w_dim); ``c`` (conditional networks only): class index, (c_dim,) or (B, c_dim)."""
        z = check_latent("z", z, self.z_dim)
        x = self._pixel_norm(z)
        if self.c_dim:
            y = self._embedded_class(c).to(x.dtype)
            if y.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"c: expected 1 or {x.shape[0]} class vectors (one per z), got {y.shape[0]}")
            x = torch.cat([x, y.expand(x.shape[0], -1)], dim=1)
        elif c is not None:
            raise ValueError("c: this mapping network is unconditional (c_dim=0); expected None")
        for layer in self.layers:
            x = layer(x)
        return x

    def mlp_spec(self, c=None) -> MLPSpec:
        """The exact MLPSpec of this network (effective weights, detached).  Conditional networks need one fixed
        class ``c`` (index or (c_dim,) vector): its embedding is folded into the first layer's bias, so the spec
        maps z alone."""
        eff = [layer.effective() for layer in self.layers]
        Ws, bs = [w.detach() for w, _ in eff], [b.detach() for _, b in eff]
        if self.c_dim:
            with torch.no_grad():
                y = self._embedded_class(c)
            if y.shape[0] != 1:
                raise ValueError(f"c: expected one class for the mapping's MLPSpec, got a batch of {y.shape[0]}")
            bs[0] = torch.addmv(bs[0], Ws[0][:, self.z_dim:], y[0].to(bs[0].dtype))
            Ws[0] = Ws[0][:, :self.z_dim]
        elif c is not None:
            raise ValueError("c: this mapping network is unconditional (c_dim=0); expected None")
        return MLPSpec(Ws, bs, negative_slope=0.2, gain=SQRT2, pixel_norm=True, pixel_norm_eps=self.eps,
                       activate_last=True)


def _fir_kernel(taps: Sequence[float]) -> Tensor:
    k = torch.tensor(list(taps), dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum()


def fir_filter(x: Tensor, kernel: Tensor, pad0: int, pad1: int, gain: float = 1.0) -> Tensor:
    """upfirdn2d with up=down=1: zero-pad (pad0 before, pad1 after, both axes), then convolve every channel with
    ``kernel`` (kh, kw) * gain.  x (B, C, H, W) -> (B, C, H + pad0 + pad1 - kh + 1, ...)."""
    B, C, H, W = x.shape
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    k = (kernel.flip([0, 1]) * gain).to(x.dtype)[None, None]  # convolution = correlation with the flipped kernel
    x = F.conv2d(x.reshape(B * C, 1, *x.shape[2:]), k)
    return x.reshape(B, C, *x.shape[2:])


def upsample2x(x: Tensor, kernel: Tensor) -> Tensor:
    """upfirdn2d with up=2: zero insertion then the FIR filter (gain 4), x (B, C, H, W) -> (B, C, 2H, 2W)."""
    B, C, H, W = x.shape
    up = x.new_zeros(B, C, H, 2, W, 2)
    up[:, :, :, 0, :, 0] = x
    kh = kernel.shape[0]
    return fir_filter(up.reshape(B, C, 2 * H, 2 * W), kernel, (kh + 1) // 2, (kh - 2) // 2, gain=4.0)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution: per-sample weight  w' = weight * s / sqrt(fan_in),  s = affine(w),  optionally
    demodulated  w'' = w' / sqrt(sum w'^2 + 1e-8)  per output channel; with ``up`` a stride-2 transposed conv
    followed by the FIR blur (pad 1, gain 4) — identical to both reference implementations."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, w_dim: int, *, demodulate: bool = True,
                 up: bool = False, kernel: Optional[Tensor] = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.demodulate, self.up, self.padding = demodulate, up, kernel_size // 2
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        if up:
            self.register_buffer("kernel", _fir_kernel([1, 3, 3, 1]) if kernel is None else kernel.clone())

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        B, I, H, W = x.shape
        O, _, k, _ = self.weight.shape
        s = self.affine(w)  # (B, I)
        wt = self.weight[None] * (s * self.scale)[:, None, :, None, None]  # (B, O, I, k, k)
        if self.demodulate:
            wt = wt * (wt.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        x = x.reshape(1, B * I, H, W)
        if self.up:
            wt = wt.transpose(1, 2).reshape(B * I, O, k, k)
            x = F.conv_transpose2d(x, wt, stride=2, groups=B)
            x = x.reshape(B, O, *x.shape[2:])
            kh = self.kernel.shape[0]
            p = kh - 2 - (k - 1)
            return fir_filter(x, self.kernel, (p + 1) // 2 + 1, p // 2 + 1, gain=4.0)
        x = F.conv2d(x, wt.reshape(B * O, I, k, k), padding=self.padding, groups=B)
        return x.reshape(B, O, *x.shape[2:])


class StyledLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling), + noise_strength * noise, + bias, scaled leaky ReLU, optional
    clamp to +-conv_clamp.  ``noise_const`` (res, res) is the fixed noise used by noise_mode="const"."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, *, up: bool = False,
                 conv_clamp: Optional[float] = None, kernel: Optional[Tensor] = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, up=up, kernel=kernel)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.resolution, self.conv_clamp = resolution, conv_clamp

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "const",
                noise_generator: Optional[torch.Generator] = None) -> Tensor:
        x = self.conv(x, w)
        if noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        elif noise_mode == "random":
            n = torch.randn(x.shape[0], 1, self.resolution, self.resolution, generator=noise_generator,
                            device=noise_generator.device if noise_generator is not None else x.device)
            x = x + n.to(x.device, x.dtype) * self.noise_strength
        x = _lrelu(x + self.bias.to(x.dtype)[None, :, None, None])
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, + bias, optional clamp."""

    def __init__(self, in_ch: int, w_dim: int, img_channels: int = 3, conv_clamp: Optional[float] = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, img_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = self.conv(x, w) + self.bias.to(x.dtype)[None, :, None, None]
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x


class SynthesisBlock(nn.Module):
    """One resolution: (conv0 with 2x upsampling, unless first), conv1, torgb; uses 3 ws (2 for the 4x4 block)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: Optional[float], kernel: Tensor):
        super().__init__()
        self.resolution = resolution
        self.first = in_ch == 0
        if self.first:
            self.const = nn.Parameter(torch.randn(out_ch, resolution, resolution))
        else:
            self.conv0 = StyledLayer(in_ch, out_ch, w_dim, resolution, up=True, conv_clamp=conv_clamp, kernel=kernel)
        self.conv1 = StyledLayer(out_ch, out_ch, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGB(out_ch, w_dim, img_channels, conv_clamp)
        self.register_buffer("kernel", kernel.clone())

    @property
    def num_conv(self) -> int:
        return 1 if self.first else 2


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> images (B, img_channels, size, size); num_ws = 2 log2(size) - 2."""

    def __init__(self, w_dim: int, size: int, channels: Mapping[int, int], *, img_channels: int = 3,
                 conv_clamp: Optional[float] = None, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        size = check_int("size", size, low=4)
        if size & (size - 1):
            raise ValueError(f"size: expected a power of two >= 4, got {size}")
        self.w_dim, self.size, self.img_channels = w_dim, size, img_channels
        self.resolutions = [2**i for i in range(2, int(math.log2(size)) + 1)]
        missing = [r for r in self.resolutions if r not in channels]
        if missing:
            raise ValueError(f"channels: expected a channel count for every resolution {self.resolutions}, "
                             f"missing {missing}")
        kernel = _fir_kernel(blur_kernel)
        self.blocks = nn.ModuleList()
        for r in self.resolutions:
            self.blocks.append(SynthesisBlock(channels[r // 2] if r > 4 else 0, channels[r], w_dim, r, img_channels,
                                              conv_clamp, kernel))
        self.num_ws = 2 * len(self.resolutions)
        self.channels = {r: int(channels[r]) for r in self.resolutions}

    def forward(self, ws: Tensor, noise_mode: str = "const",
                noise_generator: Optional[torch.Generator] = None, features_at: Optional[int] = None) -> Tensor:
        """Images (B, img_channels, size, size); with ``features_at`` = a resolution, the feature map after that
        block's convolutions instead (B, channels[res], res, res), the later blocks skipped."""
        ws = check_floating("ws", as_tensor("ws", ws))
        check_ndim("ws", ws, 3, f"(B, {self.num_ws}, {self.w_dim})")
        if tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"ws: expected shape (B, {self.num_ws}, {self.w_dim}), got shape {tuple(ws.shape)}")
        check_nonempty("ws", ws)
        check_choice("noise_mode", noise_mode, ["const", "random", "none"])
        x = img = None
        i = 0
        for blk in self.blocks:
            if blk.first:
                x = blk.const.to(ws.dtype)[None].expand(ws.shape[0], -1, -1, -1)
            else:
                x = blk.conv0(x, ws[:, i], noise_mode, noise_generator)
                i += 1
            x = blk.conv1(x, ws[:, i], noise_mode, noise_generator)
            i += 1
            if blk.resolution == features_at:
                return x
            y = blk.torgb(x, ws[:, i])
            img = y if img is None else upsample2x(img, blk.kernel) + y
        return img


class StyleMappingMixin:
    """The mapping side shared by latentfast's StyleGAN generators (and :class:`MappingOnlyGenerator`): ``f``,
    ``mlp_spec``, classes of conditional generators, ``w_avg`` and truncation.

    Needs ``self.mapping`` (a :class:`MappingNetwork`), ``self.num_ws``, a ``w_avg`` buffer and ``has_w_avg``.
    Class-conditional generators (``c_dim > 0``): ``f(z, c)`` / ``mlp_spec(c)`` take the class (index, (c_dim,)
    vector, or for ``f`` a (B, c_dim) batch); ``set_class(c)`` fixes a default class so ``f(z)`` and
    ``mlp_spec()`` — what local_basis, traversals and SFVQ call — work per class.
    """

    class_label: Optional[Tensor] = None

    @property
    def c_dim(self) -> int:
        return self.mapping.c_dim

    def set_class(self, c) -> None:
        """Fix the class used when ``c`` is not given (conditional generators only); None clears it."""
        if c is not None and not self.c_dim:
            raise ValueError("c: this generator is unconditional (c_dim=0); expected None")
        self.class_label = None if c is None else class_vector(c, self.c_dim)

    def _class(self, c):
        return self.class_label if c is None and self.c_dim else c

    def f(self, z: Tensor, c=None) -> Tensor:
        """The mapping network: z (B, z_dim) -> w (B, w_dim), for class ``c`` (or the one set with set_class)."""
        return self.mapping(z, self._class(c))

    def mlp_spec(self, c=None) -> MLPSpec:
        """MLPSpec of ``f`` (for conditional generators: of the class ``c`` or the one set with set_class)."""
        return self.mapping.mlp_spec(self._class(c))

    def as_ws(self, latent) -> Tensor:
        """What ``synthesize`` takes, as W+: w (B, w_dim) broadcast to (B, num_ws, w_dim), or ws (B, num_ws,
        w_dim) as given.  ValueError naming ``latent`` for any other shape."""
        latent = check_floating("latent", as_tensor("latent", latent))
        if latent.dim() == 2:
            return check_latent("latent", latent, self.w_dim, what="w").unsqueeze(1).expand(-1, self.num_ws, -1)
        if latent.dim() != 3:
            raise ValueError(f"latent: expected w of shape (B, {self.w_dim}) or ws of shape (B, {self.num_ws}, "
                             f"{self.w_dim}), got shape {tuple(latent.shape)}")
        return latent

    @torch.no_grad()
    def mean_w(self, n: int = 10000, generator: Optional[torch.Generator] = None, c=None) -> Tensor:
        """Mean of mapping(z) over n standard-normal z, shape (w_dim,) (rosinality's ``mean_latent``)."""
        z = self.sample_z(n, generator, device=self.w_avg.device)
        return torch.cat([self.f(b, c) for b in z.split(4096)]).mean(0)

    def _truncation_center(self) -> Tensor:
        if not self.has_w_avg:
            self.w_avg.copy_(self.mean_w(10000, torch.Generator().manual_seed(0)))
            self.has_w_avg = True
        return self.w_avg

    def truncate(self, ws: Tensor, truncation: float = 1.0, truncation_cutoff: Optional[int] = None) -> Tensor:
        """w_avg + psi (ws - w_avg) on the first ``truncation_cutoff`` layers (all when None)."""
        if truncation == 1:
            return ws
        center = self._truncation_center().to(ws.dtype)
        k = self.num_ws if truncation_cutoff is None else check_int("truncation_cutoff", truncation_cutoff, low=0)
        out = ws.clone()
        out[:, :k] = center + truncation * (ws[:, :k] - center)
        return out

    def mapping_ws(self, z: Tensor, c=None, truncation: float = 1.0,
                   truncation_cutoff: Optional[int] = None) -> Tensor:
        """z (B, z_dim) -> ws (B, num_ws, w_dim): f(z, c) broadcast to every layer, then truncated."""
        ws = self.f(z, c).unsqueeze(1).repeat(1, self.num_ws, 1)
        return self.truncate(ws, truncation, truncation_cutoff)


class StyleGAN2Generator(StyleMappingMixin, nn.Module, Generator):
    """StyleGAN2 generator: ``mapping`` z -> w, broadcast to W+ and truncation towards ``w_avg``, ``synthesis``.

    size:               output resolution (power of two >= 4).
    style_dim:          w_dim (and z_dim unless ``z_dim`` is given).
    n_mlp:              number of mapping layers.
    channel_multiplier: rosinality's channel table (512 up to 32x32); ignored when ``channels`` is given.
    channels:           {resolution: channels} for every resolution 4..size (small networks, NVIDIA layouts).
    lr_mlp:             learning-rate multiplier of the mapping layers (0.01 in both reference codes).
    conv_clamp:         clamp conv outputs to +-conv_clamp (NVIDIA's FP16 configs use 256), None = off.
    c_dim:              class-vector width of a class-conditional mapping network (0 = unconditional).

    ``f`` is the mapping network (``f(z, c)`` for conditional generators, see :class:`StyleMappingMixin`);
    ``synthesize(latent)`` takes w (B, w_dim) or ws (B, num_ws, w_dim).
    """

    def __init__(self, size: int, style_dim: int, n_mlp: int = 8, channel_multiplier: int = 2, *,
                 channels: Optional[Mapping[int, int]] = None, z_dim: Optional[int] = None, lr_mlp: float = 0.01,
                 mapping_hidden_dim: Optional[int] = None, conv_clamp: Optional[float] = None,
                 img_channels: int = 3, blur_kernel: Sequence[float] = (1, 3, 3, 1), c_dim: int = 0):
        super().__init__()
        size = check_int("size", size, low=4)
        self.z_dim = check_int("z_dim", z_dim if z_dim is not None else style_dim, low=1)
        self.w_dim = check_int("style_dim", style_dim, low=1)
        if channels is None:
            channels = rosinality_channels(size, check_int("channel_multiplier", channel_multiplier, low=1))
        self.mapping = MappingNetwork(self.z_dim, self.w_dim, n_mlp, hidden_dim=mapping_hidden_dim, lr_mul=lr_mlp,
                                      c_dim=c_dim)
        self.synthesis = SynthesisNetwork(self.w_dim, size, channels, img_channels=img_channels,
                                          conv_clamp=conv_clamp, blur_kernel=blur_kernel)
        self.size, self.num_ws = size, self.synthesis.num_ws
        self.register_buffer("w_avg", torch.zeros(self.w_dim))
        self.has_w_avg = False  # set by loaders that read a tracked average, or lazily by mean_w on first use
        self.config = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channels=dict(self.synthesis.channels),
                           z_dim=self.z_dim, lr_mlp=lr_mlp, mapping_hidden_dim=mapping_hidden_dim,
                           conv_clamp=conv_clamp, img_channels=img_channels, blur_kernel=list(blur_kernel),
                           c_dim=c_dim)

    # -- Generator interface (f, mlp_spec, truncate, mean_w: StyleMappingMixin) -------------------------------
    def synthesize(self, latent: Tensor, noise_mode: str = "const") -> Tensor:
        """w (B, w_dim) or ws (B, num_ws, w_dim) -> images (B, 3, size, size) clamped to [-1, 1]."""
        return self.synthesis(self.as_ws(latent), noise_mode).clamp(-1, 1)

    def forward(self, z: Tensor, truncation: float = 1.0, truncation_cutoff: Optional[int] = None,
                noise_mode: str = "const", noise_generator: Optional[torch.Generator] = None, *, c=None) -> Tensor:
        """z (B, z_dim) -> images (B, 3, size, size), unclamped; ``c``: the class of a conditional generator."""
        ws = self.mapping_ws(z, c, truncation, truncation_cutoff)
        return self.synthesis(ws, noise_mode, noise_generator)

    # -- sub-networks for local_basis (image- and feature-space Jacobians) ---------------------------------------
    def synthesis_f(self, input: str = "w", layers=None, output: str = "image", resize: Optional[int] = None,
                    noise_mode: str = "const"):
        """A callable f for :func:`~latentfast.local_basis`: the synthesis network seen from W or W+.

        input:  "w"     f(w (B, w_dim)): w broadcast to every layer (the image w.r.t. W);
                "wplus" f(ws (B, num_ws, w_dim)): one latent per layer (pass W+ latents to local_basis).
        layers: None (all), or a range / slice / sequence of W+ layer indices: only those layers carry the
                tangent (the others see the same value, detached), so J is restricted to them; with "wplus"
                the other layers' rows of the input basis come out zero (same (num_ws, w_dim) layout).
        output: "image" (the unclamped network output, (B, 3, size, size)), or "features:<res>" (the feature
                map after the block at resolution res, (B, channels[res], res, res); later blocks skipped).
        resize: an output side length dividing the output's, averaged down in res/resize blocks (e.g. 256 for
                a 1024 image: 16x fewer rows of J), None = as is.
        Raises ValueError naming the argument for an unknown input/output, a layer out of range, a bad resize.
        """
        check_choice("input", input, ["w", "wplus"])
        mask = torch.zeros(self.num_ws, dtype=torch.bool)
        if layers is None:
            mask[:] = True
        else:
            idx = list(range(self.num_ws))[layers] if isinstance(layers, slice) else list(layers)
            bad = [i for i in idx if not isinstance(i, int) or not 0 <= i < self.num_ws]
            if bad or not idx:
                raise ValueError(f"layers: expected a non-empty range/slice/sequence of W+ layer indices in "
                                 f"[0, {self.num_ws}), got {layers!r}")
            mask[idx] = True
        features_at = None
        if output != "image":
            res = output.split(":", 1)[1] if output.startswith("features:") else ""
            if not res.isdigit() or int(res) not in self.synthesis.resolutions:
                raise ValueError(f"output: expected 'image' or 'features:<res>' with res in "
                                 f"{self.synthesis.resolutions}, got {output!r}")
            features_at = int(res)
        side = features_at or self.size
        if resize is not None:
            resize = check_int("resize", resize, low=1)
            if side % resize:
                raise ValueError(f"resize: expected a side length dividing the output's {side}, got {resize}")
        check_choice("noise_mode", noise_mode, ["const", "none"])  # "random" would make f(z) change per call
        synthesis, num_ws, w_dim = self.synthesis, self.num_ws, self.w_dim
        partial = not bool(mask.all())

        def f(latent: Tensor) -> Tensor:
            if input == "w":
                latent = check_latent("w", latent, w_dim, what="w")
                ws = latent.unsqueeze(1).expand(-1, num_ws, -1)
            else:
                ws = latent
            if partial:  # tangents flow only into the chosen layers
                m = mask.to(ws.device)[None, :, None]
                ws = torch.where(m, ws, ws.detach())
            y = synthesis(ws, noise_mode, features_at=features_at)
            if resize is not None and resize != side:
                y = F.avg_pool2d(y, side // resize)
            return y

        return f
