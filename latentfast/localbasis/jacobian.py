"""The Jacobian of a sub-network f at a batch of latents, as a linear operator: JVPs and VJPs, no dense J.

Two implementations behind one interface:
  * ``MLPOperator`` — f is an MLP that latentfast understands (an :class:`MLPSpec`, or a module with
    ``mlp_spec()``, such as latentfast's StyleGAN2 mapping network): hand-written tangent passes, one GEMM of
    B*r rows per layer (``ops/mlp_jvp``), no autograd;
  * ``FuncOperator`` — anything else, through torch.func (``jvp`` / ``vjp`` vectorised with ``vmap``).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..ops import mlp_jvp
from ..ops.mlp_jvp.reference import MLPSpec

Tensor = torch.Tensor


def mlp_spec_of(f) -> Optional[MLPSpec]:
    """The :class:`MLPSpec` of f when latentfast recognises it, else None."""
    if isinstance(f, MLPSpec):
        return f
    getter = getattr(f, "mlp_spec", None)
    if callable(getter):
        spec = getter()
        if isinstance(spec, MLPSpec):
            return spec
    return None


class JacobianOperator:
    """J(z) for a batch z (B, d_in): ``points`` (B, d_out) = f(z), ``jvp`` (B, d_in, r) -> (B, d_out, r),
    ``vjp`` (B, d_out, r) -> (B, d_in, r)."""

    points: Tensor
    d_in: int
    d_out: int

    def jvp(self, V: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def vjp(self, U: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def dense(self) -> Tensor:
        """The full Jacobian (B, d_out, d_in), by the cheaper side (d_in JVPs or d_out VJPs)."""
        B = self.points.shape[0]
        dt, dev = self.points.dtype, self.points.device
        if self.d_in <= self.d_out:
            eye = torch.eye(self.d_in, dtype=dt, device=dev).expand(B, -1, -1)
            return self.jvp(eye)
        eye = torch.eye(self.d_out, dtype=dt, device=dev).expand(B, -1, -1)
        return self.vjp(eye).transpose(1, 2)


class MLPOperator(JacobianOperator):
    """Hand-written tangent passes of an :class:`MLPSpec` (dispatched: Triton on CUDA, PyTorch otherwise)."""

    def __init__(self, spec: MLPSpec, z: Tensor, backend: str = "auto"):
        self._lin = mlp_jvp.linearize(spec, z, backend=backend)
        self.points = self._lin.points
        self.d_in, self.d_out = spec.d_in, spec.d_out

    def jvp(self, V):
        return self._lin.jvp(V)

    def vjp(self, U):
        return self._lin.vjp(U)


class FuncOperator(JacobianOperator):
    """torch.func linearisation of f at z; f maps (B, d_in) -> (B, ...) and must treat rows independently."""

    def __init__(self, f: Callable[[Tensor], Tensor], z: Tensor):
        B = z.shape[0]
        self._f = lambda zz: f(zz).reshape(B, -1)
        self._z = z
        self.points, self._vjp_fn = torch.func.vjp(self._f, z)
        self.points = self.points.detach()
        self.d_in, self.d_out = z.shape[1], self.points.shape[1]

    def jvp(self, V):
        one = lambda v: torch.func.jvp(self._f, (self._z,), (v,))[1]
        return torch.func.vmap(one, in_dims=2, out_dims=2)(V).detach()

    def vjp(self, U):
        one = lambda u: self._vjp_fn(u)[0]
        return torch.func.vmap(one, in_dims=2, out_dims=2)(U).detach()


def linearize(f, z: Tensor, backend: str = "auto") -> JacobianOperator:
    """The Jacobian operator of f at z; ``backend`` picks the mlp_jvp backend for MLP-shaped f."""
    spec = mlp_spec_of(f)
    if spec is not None:
        return MLPOperator(spec, z, backend)
    return FuncOperator(f, z)
