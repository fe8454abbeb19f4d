"""Forward, JVPs and VJPs of MLP-shaped sub-networks (:class:`MLPSpec`) without autograd.

``linearize(spec, z, backend="auto")`` runs the forward pass and returns an object with ``points`` (B, d_out),
``jvp(V (B, d_in, r)) -> (B, d_out, r)`` and ``vjp(U (B, d_out, r)) -> (B, d_in, r)``.
Backends: ``triton`` (CUDA tensors; fused GEMM + activation-derivative epilogue), ``reference`` (PyTorch).
"""
from __future__ import annotations

import torch

from ..._dispatch import Backend, Op, register, triton_auto_why_not, triton_why_not
from . import reference
from .reference import MLPSpec

Tensor = torch.Tensor


class _ReferenceLinearization:
    def __init__(self, spec: MLPSpec, z: Tensor):
        with torch.no_grad():
            self.points, self._lin = reference.forward(spec, z)

    def jvp(self, V: Tensor) -> Tensor:
        with torch.no_grad():
            return reference.jvp(self._lin, V)

    def vjp(self, U: Tensor) -> Tensor:
        with torch.no_grad():
            return reference.vjp(self._lin, U)


class _TritonLinearization:
    """Same maths as reference.py, each layer one fused kernel (see triton.py)."""

    def __init__(self, spec: MLPSpec, z: Tensor):
        from . import triton as tk

        self._tk, self.spec, self.z = tk, spec, z
        self._wt = [w.t().contiguous() for w in spec.weights]  # (in, out) for the JVP direction
        self._w = [w.contiguous() for w in spec.weights]  # (out, in) for the VJP direction
        with torch.no_grad():
            x, self.norm = reference._pixel_norm(z, spec.pixel_norm_eps) if spec.pixel_norm else (z, None)
            self.slopes = []
            for i, (wt, b) in enumerate(zip(self._wt, spec.biases)):
                if spec.activated(i):
                    x, s = tk.linear_epilogue(x, wt, bias=b, epi=tk.EPI_ACT, gain=spec.gain,
                                              negative_slope=spec.negative_slope)
                else:
                    x, s = tk.linear_epilogue(x, wt, bias=b), None
                self.slopes.append(s)
        self.points = x

    def jvp(self, V: Tensor) -> Tensor:
        tk, spec = self._tk, self.spec
        B, _, r = V.shape
        with torch.no_grad():
            t = reference._pixel_norm_tangent(self.z, self.norm, V) if spec.pixel_norm else V
            t = t.transpose(1, 2).reshape(B * r, -1)
            for wt, s in zip(self._wt, self.slopes):
                t = tk.linear_epilogue(t, wt, epi=tk.EPI_SCALE, S=s, rows_per_group=r) if s is not None \
                    else tk.linear_epilogue(t, wt)
        return t.view(B, r, -1).transpose(1, 2)

    def vjp(self, U: Tensor) -> Tensor:
        tk, spec = self._tk, self.spec
        B, _, r = U.shape
        L = len(self._w)
        with torch.no_grad():
            g = U.transpose(1, 2).reshape(B * r, -1)
            if self.slopes[-1] is not None:  # the top layer's slope has no GEMM above it to fold into
                g = (g.view(B, r, -1) * self.slopes[-1].unsqueeze(1)).view(B * r, -1)
            for l in range(L - 1, -1, -1):
                below = self.slopes[l - 1] if l > 0 else None
                g = tk.linear_epilogue(g, self._w[l], epi=tk.EPI_SCALE, S=below, rows_per_group=r) \
                    if below is not None else tk.linear_epilogue(g, self._w[l])
            g = g.view(B, r, -1).transpose(1, 2)
            return reference._pixel_norm_tangent(self.z, self.norm, g) if spec.pixel_norm else g


def _triton_why_not(spec: MLPSpec, z: Tensor):
    reasons = triton_why_not(z)
    if z.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        reasons.append(f"dtype {z.dtype}: the Triton kernel accumulates in float32 and takes float32/16/bf16 only")
    return reasons


OP = register(Op("mlp_jvp", [
    Backend("triton", _triton_why_not, _TritonLinearization, "fused GEMM + activation-derivative epilogue",
            auto_why_not=lambda spec, z: triton_auto_why_not(z)),
    Backend("reference", lambda spec, z: [], _ReferenceLinearization, "PyTorch: one GEMM of B*r rows per layer"),
]))


def linearize(spec: MLPSpec, z: Tensor, backend: str = "auto"):
    """Forward pass of ``spec`` at z (B, d_in) and its linearisation (see the module docstring)."""
    spec = spec.to(dtype=z.dtype, device=z.device)
    return OP(spec, z, backend=backend)


__all__ = ["MLPSpec", "linearize", "OP"]
