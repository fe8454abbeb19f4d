"""BigGAN-deep generator in the layout of huggingface/pytorch-pretrained-BigGAN (``config.json`` +
``pytorch_model.bin``), written in plain PyTorch.

State-dict keys are those of that package: ``embeddings.weight`` (z_dim, num_classes), ``generator.gen_z.*``,
``generator.layers.N.{bn_0..bn_3, conv_0..conv_3}.*`` (GenBlocks), ``generator.layers.K.snconv1x1_*`` and
``gamma`` (self-attention at ``attention_layer_position``), ``generator.bn.*``, ``generator.conv_to_rgb.*``.
Spectrally normalised layers store ``weight_orig``, ``weight_u``, ``weight_v`` and use, as torch's
``spectral_norm`` does in eval mode, W = weight_orig / (u . (W_orig v)); no power iteration is run.

Shapes: z (B, z_dim) float, class vector (B, num_classes) (one-hot or any mixture), truncation in (0, 1],
images (B, 3, output_dim, output_dim).
"""
from __future__ import annotations

import json
import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import as_tensor, check_floating, check_int, check_ndim
from .adapters import Generator, check_latent

Tensor = torch.Tensor

__all__ = ["BigGANConfig", "BigGANGenerator", "BIGGAN_DEEP_128_LAYERS"]

BIGGAN_DEEP_128_LAYERS = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
                          (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)]


class BigGANConfig(dict):
    """The fields of pytorch-pretrained-BigGAN's config.json, with that package's defaults (biggan-deep-128)."""

    DEFAULTS = dict(output_dim=128, z_dim=128, class_embed_dim=128, channel_width=128, num_classes=1000,
                    layers=BIGGAN_DEEP_128_LAYERS, attention_layer_position=8, eps=1e-4, n_stats=51)

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"config: unknown BigGAN config fields {sorted(unknown)}; expected a subset of "
                             f"{sorted(self.DEFAULTS)}")
        super().__init__({**self.DEFAULTS, **kwargs})
        self["layers"] = [tuple(layer) for layer in self["layers"]]
        prev = 16  # gen_z produces 16 * channel_width channels
        for i, layer in enumerate(self["layers"]):
            if len(layer) != 3 or layer[1] != prev or layer[2] not in (layer[1], layer[1] / 2):
                raise ValueError(f"config.layers[{i}]: expected (upsample, in_mult={prev}, out_mult equal to or half "
                                 f"of in_mult), got {layer!r}")
            prev = layer[2]
        if prev != 1 or self["channel_width"] < 3:
            raise ValueError(f"config: expected the last layer to end at 1 x channel_width channels and "
                             f"channel_width >= 3, got out_mult {prev} and channel_width {self['channel_width']}")

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def from_json_file(cls, path) -> "BigGANConfig":
        with open(path, "r", encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: expected a BigGAN config.json, got invalid JSON ({e})") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of BigGAN config fields, got {type(data).__name__}")
        return cls(**data)


class _SpectralNorm(nn.Module):
    """Eval-mode spectral normalisation of ``weight_orig`` with the stored singular vectors u, v."""

    def _init_sn(self, weight_shape):
        self.weight_orig = nn.Parameter(torch.randn(*weight_shape) * 0.02)
        rows, cols = weight_shape[0], int(math.prod(weight_shape[1:]))
        self.register_buffer("weight_u", F.normalize(torch.randn(rows), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(cols), dim=0))

    def sn_weight(self) -> Tensor:
        w = self.weight_orig
        sigma = torch.dot(self.weight_u, torch.mv(w.reshape(w.shape[0], -1), self.weight_v))
        return w / sigma


class SNLinear(_SpectralNorm):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self._init_sn((out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.sn_weight(), self.bias)


class SNConv2d(_SpectralNorm):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, padding: int = 0, bias: bool = True):
        super().__init__()
        self._init_sn((out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.sn_weight(), self.bias, padding=self.padding)


class BigGANBatchNorm(nn.Module):
    """Batch norm with pre-computed statistics for n_stats truncation values, interpolated exactly as the
    reference does (``modf(truncation / step)``); class-conditional gain/offset through SN linears."""

    def __init__(self, num_features: int, cond_dim: Optional[int], n_stats: int, eps: float):
        super().__init__()
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.step, self.eps, self.conditional = 1.0 / (n_stats - 1), eps, cond_dim is not None
        if self.conditional:
            self.scale = SNLinear(cond_dim, num_features, bias=False)
            self.offset = SNLinear(cond_dim, num_features, bias=False)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor, truncation: float, cond: Optional[Tensor] = None) -> Tensor:
        coef, start = math.modf(truncation / self.step)
        start = int(start)
        mean, var = self.running_means[start], self.running_vars[start]
        if coef != 0.0:
            mean = mean * coef + self.running_means[start + 1] * (1 - coef)
            var = var * coef + self.running_vars[start + 1] * (1 - coef)
        x = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        if self.conditional:
            return x * (1 + self.scale(cond))[:, :, None, None] + self.offset(cond)[:, :, None, None]
        return x * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class SelfAttn(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.snconv1x1_theta = SNConv2d(ch, ch // 8, 1, bias=False)
        self.snconv1x1_phi = SNConv2d(ch, ch // 8, 1, bias=False)
        self.snconv1x1_g = SNConv2d(ch, ch // 2, 1, bias=False)
        self.snconv1x1_o_conv = SNConv2d(ch // 2, ch, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        theta = self.snconv1x1_theta(x).reshape(B, C // 8, H * W)
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).reshape(B, C // 8, H * W // 4)
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (B, HW, HW/4)
        g = F.max_pool2d(self.snconv1x1_g(x), 2).reshape(B, C // 2, H * W // 4)
        o = self.snconv1x1_o_conv((g @ attn.transpose(1, 2)).reshape(B, C // 2, H, W))
        return x + self.gamma * o


class GenBlock(nn.Module):
    """Bottleneck residual block: 4 x (cond-BN, ReLU, SN conv 1-3-3-1), nearest 2x upsampling, channel drop."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, up: bool, n_stats: int, eps: float):
        super().__init__()
        mid = in_ch // 4
        self.up, self.drop = up, in_ch != out_ch
        self.bn_0 = BigGANBatchNorm(in_ch, cond_dim, n_stats, eps)
        self.conv_0 = SNConv2d(in_ch, mid, 1)
        self.bn_1 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_1 = SNConv2d(mid, mid, 3, padding=1)
        self.bn_2 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_2 = SNConv2d(mid, mid, 3, padding=1)
        self.bn_3 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_3 = SNConv2d(mid, out_ch, 1)

    def forward(self, x: Tensor, cond: Tensor, truncation: float) -> Tensor:
        h = self.conv_0(F.relu(self.bn_0(x, truncation, cond)))
        h = F.relu(self.bn_1(h, truncation, cond))
        if self.up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_1(h)
        h = self.conv_2(F.relu(self.bn_2(h, truncation, cond)))
        h = self.conv_3(F.relu(self.bn_3(h, truncation, cond)))
        if self.drop:
            x = x[:, : x.shape[1] // 2]
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return h + x


class _Body(nn.Module):
    def __init__(self, cfg: BigGANConfig):
        super().__init__()
        ch, cond_dim = cfg.channel_width, 2 * cfg.z_dim
        self.gen_z = SNLinear(cond_dim, 4 * 4 * 16 * ch)
        layers = []
        for i, (up, a, b) in enumerate(cfg.layers):
            if i == cfg.attention_layer_position:
                layers.append(SelfAttn(ch * a))
            layers.append(GenBlock(ch * a, ch * b, cond_dim, bool(up), cfg.n_stats, cfg.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = BigGANBatchNorm(ch, None, cfg.n_stats, cfg.eps)
        self.conv_to_rgb = SNConv2d(ch, ch, 3, padding=1)


class BigGANGenerator(nn.Module, Generator):
    """BigGAN-deep.  ``forward(z, class_vector, truncation)`` is the reference API; as a :class:`Generator` the
    class and truncation are fixed (``class_index`` or ``set_class``), ``f`` maps z to the output of ``f_layer``
    ("gen_z": the first linear layer, (B, 4*4*16*ch); "layers.N": the N-th entry of generator.layers,
    (B, C, H, W)), and ``synthesize(z)`` renders images clamped to [-1, 1]."""

    def __init__(self, config: Union[BigGANConfig, dict, None] = None, *, class_index: int = 0,
                 truncation: float = 1.0, f_layer: str = "gen_z"):
        super().__init__()
        cfg = config if isinstance(config, BigGANConfig) else BigGANConfig(**(config or {}))
        self.config = cfg
        self.z_dim, self.num_classes = int(cfg.z_dim), int(cfg.num_classes)
        self.embeddings = nn.Linear(cfg.num_classes, cfg.z_dim, bias=False)
        self.generator = _Body(cfg)
        self.truncation = self._check_truncation(truncation)
        self.register_buffer("class_vector", torch.zeros(cfg.num_classes))
        self.set_class(class_index)
        self.f_layer = self._check_f_layer(f_layer)

    @staticmethod
    def _check_truncation(t) -> float:
        if not isinstance(t, (int, float)) or not 0 < float(t) <= 1:
            raise ValueError(f"truncation: expected a number in (0, 1], got {t!r}")
        return float(t)

    def _check_f_layer(self, name: str) -> str:
        ok = ["gen_z"] + [f"layers.{i}" for i in range(len(self.generator.layers))]
        if name not in ok:
            raise ValueError(f"f_layer: expected 'gen_z' or 'layers.N' with N < {len(self.generator.layers)}, "
                             f"got {name!r}")
        return name

    def set_class(self, class_index: Union[int, Tensor]) -> None:
        """Fix the class used by f / synthesize: an index, or a (num_classes,) class vector."""
        if isinstance(class_index, Tensor):
            v = check_floating("class_index", class_index)
            if tuple(v.shape) != (self.num_classes,):
                raise ValueError(f"class_index: expected an int or a class vector of shape ({self.num_classes},), "
                                 f"got shape {tuple(v.shape)}")
            self.class_vector.copy_(v)
        else:
            i = check_int("class_index", class_index, low=0, high=self.num_classes - 1)
            self.class_vector.zero_()
            self.class_vector[i] = 1.0

    def _cond(self, z: Tensor, class_vector: Tensor) -> Tensor:
        z = check_latent("z", z, self.z_dim)
        c = check_floating("class_vector", as_tensor("class_vector", class_vector))
        check_ndim("class_vector", c, 2, f"(B, {self.num_classes})")
        if c.shape[1] != self.num_classes or c.shape[0] != z.shape[0]:
            raise ValueError(f"class_vector: expected shape ({z.shape[0]}, {self.num_classes}), "
                             f"got shape {tuple(c.shape)}")
        return torch.cat([z, self.embeddings(c.to(z.dtype))], dim=1)

    def _run(self, z: Tensor, class_vector: Tensor, truncation: float, stop: Optional[str] = None) -> Tensor:
        truncation = self._check_truncation(truncation)
        g = self.generator
        cond = self._cond(z, class_vector)
        h = g.gen_z(cond)
        if stop == "gen_z":
            return h
        ch = self.config.channel_width
        h = h.reshape(-1, 4, 4, 16 * ch).permute(0, 3, 1, 2)  # stored in TF's NHWC order
        for i, layer in enumerate(g.layers):
            h = layer(h, cond, truncation) if isinstance(layer, GenBlock) else layer(h)
            if stop == f"layers.{i}":
                return h
        h = g.conv_to_rgb(F.relu(g.bn(h, truncation)))
        return torch.tanh(h[:, :3])

    def forward(self, z: Tensor, class_vector: Tensor, truncation: float = 1.0) -> Tensor:
        """z (B, z_dim), class_vector (B, num_classes) -> images (B, 3, output_dim, output_dim) in [-1, 1]."""
        return self._run(z, class_vector, truncation)

    def _classes(self, z: Tensor) -> Tensor:
        return self.class_vector.to(z.dtype).expand(z.shape[0], -1)

    def f(self, z: Tensor) -> Tensor:
        z = check_latent("z", z, self.z_dim)
        return self._run(z, self._classes(z), self.truncation, stop=self.f_layer)

    def synthesize(self, latent: Tensor) -> Tensor:
        z = check_latent("latent", latent, self.z_dim)
        return self._run(z, self._classes(z), self.truncation).clamp(-1, 1)
