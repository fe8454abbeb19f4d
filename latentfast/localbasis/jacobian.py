"""The Jacobian of a sub-network f at a batch of latents, as a linear operator: JVPs and VJPs, no dense J.

Two implementations behind one interface, both reached through :func:`linearize`, which is where f's output
enters latentfast and is checked (:func:`check_f_output`: a tensor of z's dtype with one row per latent;
finite values of f(z) and of every tangent pass, per latent):
  * ``MLPOperator`` — f is an MLP that latentfast understands (an :class:`MLPSpec`, or a module with
    ``mlp_spec()``, such as latentfast's StyleGAN2 mapping network): hand-written tangent passes, one GEMM of
    B*r rows per layer (``ops/mlp_jvp``), no autograd;
  * ``FuncOperator`` — anything else, through torch.func (``jvp`` / ``vjp`` vectorised with ``vmap``).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .. import _checks
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


def check_f_output(y, z: Tensor) -> Tensor:
    """f(z) as it enters latentfast: a tensor on z's device, in z's (floating) dtype, with exactly one row per
    latent (B = z.shape[0]).  Returns it flattened to (B, d_out).  TypeError/ValueError naming ``f`` otherwise.
    Works on torch.func's wrapped tensors too (only shapes and dtypes are read; finiteness is checked by
    :func:`check_finite_rows` on the concrete values)."""
    B = z.shape[0]
    if not isinstance(y, Tensor):
        raise TypeError(f"f: expected f(z) to return a torch.Tensor of shape (B, ...), got {type(y).__name__}")
    if y.dim() == 0 or y.shape[0] != B:
        raise ValueError(f"f: expected f(z) to have one row per latent, shape ({B}, ...) for z of shape "
                         f"{tuple(z.shape)}, got shape {tuple(y.shape)}")
    if y.dtype != z.dtype:
        raise TypeError(f"f: expected f(z) in z's dtype {z.dtype}, got {y.dtype}; make f and z agree "
                        f"(e.g. z.to({y.dtype}) or f.to({z.dtype}))" if y.is_floating_point() else
                        f"f: expected a floating-point f(z) in z's dtype {z.dtype}, got {y.dtype}")
    if y.device != z.device:
        raise ValueError(f"f: expected f(z) on z's device {z.device}, got {y.device}")
    if y[0].numel() == 0:
        raise ValueError(f"f: expected f(z) to have at least one output per latent, got shape {tuple(y.shape)}")
    return y.reshape(B, -1)


def check_finite_rows(what: str, x: Tensor, row_offset: int = 0) -> Tensor:
    """x (B, ...): raise naming the first latent (row ``row_offset + b`` of z) where ``what`` is not finite."""
    if x.numel() and not _checks._all_finite(x):
        bad_rows = (~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).nonzero().flatten()
        b = int(bad_rows[0])
        n = int((~torch.isfinite(x[b])).sum())
        raise ValueError(
            f"f: {what} is not finite at latent {row_offset + b} (row {row_offset + b} of z; {len(bad_rows)} "
            f"latent(s) affected, {n} NaN/Inf entries in this one): f overflows or is not differentiable there "
            f"(e.g. |z| too large for {x.dtype})")
    return x


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
        self._f = lambda zz: check_f_output(f(zz), z)
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


class CheckedOperator(JacobianOperator):
    """``op`` with every tangent pass checked for NaN/Inf per latent, and computed in ``compute`` dtype: tangents
    go into f in f's dtype and come out in ``compute`` (float32 for half-precision f, see
    ``_checks.float_compute_dtype``).  ``points`` stay in f's dtype."""

    def __init__(self, op: JacobianOperator, row_offset: int = 0):
        self.op, self.row_offset = op, row_offset
        self.points = check_finite_rows("f(z)", op.points, row_offset)
        self.d_in, self.d_out = op.d_in, op.d_out
        self.dtype = _checks.float_compute_dtype(op.points.dtype)

    def jvp(self, V):
        out = self.op.jvp(V.to(self.points.dtype)).to(self.dtype)
        return check_finite_rows("the Jacobian of f (a JVP)", out, self.row_offset)

    def vjp(self, U):
        out = self.op.vjp(U.to(self.points.dtype)).to(self.dtype)
        return check_finite_rows("the Jacobian of f (a VJP)", out, self.row_offset)


def linearize(f, z: Tensor, backend: str = "auto", *, row_offset: int = 0) -> CheckedOperator:
    """The Jacobian operator of f at z, checked (see :class:`CheckedOperator`); ``backend`` picks the mlp_jvp
    backend for MLP-shaped f; ``row_offset``: index of z's first row among all latents (for error messages)."""
    spec = mlp_spec_of(f)
    op = MLPOperator(spec, z, backend) if spec is not None else FuncOperator(f, z)
    return CheckedOperator(op, row_offset)
