"""Forward pass, JVPs and VJPs of MLP-shaped networks, written out by hand in pure PyTorch.

An :class:`MLPSpec` describes  x0 = PixelNorm(z) (optional);  x_{l+1} = act(W_l x_l + b_l)  with
act(u) = gain * leaky_relu(u, negative_slope)  — the StyleGAN/StyleGAN2 mapping network.  Because every latent
shares the weights, the tangents of all B latents and r directions go through each layer as ONE GEMM of
(B*r, d) rows, with the activation's derivative (gain or gain*slope, by the sign of the pre-activation) applied
elementwise afterwards, in place; the VJP runs the same layers transposed.  No autograd graph is built.

    JVP:  t_{l+1} = act'(u_l) * (W_l t_l)                       t_0 = dPixelNorm(z)[v]
    VJP:  g_l     = W_l^T (act'(u_l) * g_{l+1})                 dz  = dPixelNorm(z)^T[g_0]
    PixelNorm: y = x / n,  n = sqrt(mean(x^2) + eps);  dy = dx / n - x <x, dx> / (d n^3)  (self-adjoint)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch

Tensor = torch.Tensor


@dataclass
class MLPSpec:
    """Explicit description of an MLP sub-network f: (B, d_in) -> (B, d_out).

    weights: effective (out, in) matrices, any learning-rate multiplier / equalised-lr scale already folded in.
    biases:  effective (out,) vectors or None.
    """

    weights: List[Tensor]
    biases: List[Optional[Tensor]]
    negative_slope: float = 0.2
    gain: float = math.sqrt(2.0)
    pixel_norm: bool = True
    pixel_norm_eps: float = 1e-8
    activate_last: bool = True

    def __post_init__(self):
        from ... import _checks

        for name in ("weights", "biases"):
            if not isinstance(getattr(self, name), (list, tuple)):
                raise TypeError(f"{name}: expected a list with one entry per layer, got {type(getattr(self, name)).__name__}")
        # numpy arrays are accepted and converted; anything else is named
        self.weights = [_checks.check_floating(f"weights[{i}]", _checks.as_tensor(f"weights[{i}]", w))
                        for i, w in enumerate(self.weights)]
        self.biases = [None if b is None else _checks.check_floating(f"biases[{i}]", _checks.as_tensor(f"biases[{i}]", b))
                       for i, b in enumerate(self.biases)]
        if len(self.weights) == 0:
            raise ValueError("weights: expected at least one layer, got an empty list")
        if len(self.biases) != len(self.weights):
            raise ValueError(f"biases: expected {len(self.weights)} entries (one per layer), got {len(self.biases)}")
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.dim() != 2:
                raise ValueError(f"weights[{i}]: expected shape (out, in), got {tuple(w.shape)}")
            if i and w.shape[1] != self.weights[i - 1].shape[0]:
                raise ValueError(
                    f"weights[{i}]: expected {self.weights[i - 1].shape[0]} input features to follow layer {i - 1}, "
                    f"got shape {tuple(w.shape)}"
                )
            if b is not None and tuple(b.shape) != (w.shape[0],):
                raise ValueError(f"biases[{i}]: expected shape ({w.shape[0]},), got {tuple(b.shape)}")

    @property
    def d_in(self) -> int:
        return self.weights[0].shape[1]

    @property
    def d_out(self) -> int:
        return self.weights[-1].shape[0]

    def activated(self, layer: int) -> bool:
        return self.activate_last or layer < len(self.weights) - 1

    def to(self, dtype=None, device=None) -> "MLPSpec":
        conv = lambda t: None if t is None else t.detach().to(dtype=dtype or t.dtype, device=device or t.device)
        return MLPSpec([conv(w) for w in self.weights], [conv(b) for b in self.biases], self.negative_slope,
                       self.gain, self.pixel_norm, self.pixel_norm_eps, self.activate_last)

    def __call__(self, z: Tensor) -> Tensor:
        return forward(self, z)[0]


def _pixel_norm(z: Tensor, eps: float):
    n = (z.square().mean(-1, keepdim=True) + eps).sqrt()
    return z / n, n


def _pixel_norm_tangent(z: Tensor, n: Tensor, v: Tensor) -> Tensor:
    """d PixelNorm at z applied to v (..., d, r) or (..., d); self-adjoint, so it also serves the VJP."""
    d = z.shape[-1]
    if v.dim() == z.dim() + 1:
        zz, nn = z.unsqueeze(-1), n.unsqueeze(-1)
        return v / nn - zz * (zz * v).sum(-2, keepdim=True) / (d * nn**3)
    return v / n - z * (z * v).sum(-1, keepdim=True) / (d * n**3)


@dataclass
class Linearization:
    """Saved state of one forward pass: what the JVP/VJP passes need (activation slopes per layer)."""

    spec: MLPSpec
    z: Tensor
    norm: Optional[Tensor]
    slopes: List[Optional[Tensor]] = field(default_factory=list)  # (B, d_l) derivative of act, None = identity


def forward(spec: MLPSpec, z: Tensor):
    """f(z) for z (B, d_in), and the :class:`Linearization` at z."""
    x, norm = _pixel_norm(z, spec.pixel_norm_eps) if spec.pixel_norm else (z, None)
    lin = Linearization(spec, z, norm)
    for i, (w, b) in enumerate(zip(spec.weights, spec.biases)):
        u = torch.addmm(b, x, w.T) if b is not None else x @ w.T
        if spec.activated(i):
            # scalars as tensors of u's dtype: torch.where with Python floats would round them to float32
            slope = torch.where(u >= 0, u.new_tensor(spec.gain), u.new_tensor(spec.gain * spec.negative_slope))
            x = u * slope
            lin.slopes.append(slope)
        else:
            x = u
            lin.slopes.append(None)
    return x, lin


def _layers(t: Tensor, B: int, r: int, weights, slopes, jvp: bool) -> Tensor:
    """t (B*r, d) through the layers: t @ W^T followed by the activation's derivative (the JVP), or the
    derivative then t @ W (the VJP; it scales t in place), the derivative applied in place, the GEMMs writing
    into two work buffers per width that alternate.  Returns the last buffer (t itself without layers)."""
    bufs = {}
    for w, slope in zip(weights, slopes):
        if slope is not None and not jvp:
            t.view(B, r, -1).mul_(slope.unsqueeze(1))
        n = w.shape[0] if jvp else w.shape[1]
        pair = bufs.setdefault(n, [])
        out = next((b for b in pair if b.data_ptr() != t.data_ptr()), None)
        if out is None:
            out = t.new_empty(t.shape[0], n)
            pair.append(out)
        torch.mm(t, w.T if jvp else w, out=out)
        t = out
        if slope is not None and jvp:
            t.view(B, r, -1).mul_(slope.unsqueeze(1))
    return t


def jvp(lin: Linearization, V: Tensor) -> Tensor:
    """J(z) V for tangents V (B, d_in, r) -> (B, d_out, r), one GEMM of B*r rows per layer."""
    B, _, r = V.shape
    t = _pixel_norm_tangent(lin.z, lin.norm, V) if lin.spec.pixel_norm else V
    t = t.transpose(1, 2).reshape(B * r, -1)  # rows = (latent, direction); only read below
    t = _layers(t, B, r, lin.spec.weights, lin.slopes, jvp=True)
    return t.view(B, r, -1).transpose(1, 2)


def vjp(lin: Linearization, U: Tensor) -> Tensor:
    """J(z)^T U for cotangents U (B, d_out, r) -> (B, d_in, r)."""
    B, _, r = U.shape
    g = U.transpose(1, 2).reshape(B * r, -1)
    if g.untyped_storage().data_ptr() == U.untyped_storage().data_ptr():
        g = g.clone()  # a view of U (r = 1, or U laid out (B, r, d)): the in-place derivative must not touch it
    g = _layers(g, B, r, lin.spec.weights[::-1], lin.slopes[::-1], jvp=False)
    g = g.view(B, r, -1).transpose(1, 2)
    return _pixel_norm_tangent(lin.z, lin.norm, g) if lin.spec.pixel_norm else g
