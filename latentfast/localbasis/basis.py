"""Local Basis (Choi et al., ICLR 2022): the SVD of the Jacobian of a sub-network f at latents z.

J = U S V^T at z; the top columns of U (in the output space, e.g. W) are the local semantic directions, V the
matching input directions.  Two methods:

* ``exact``: the dense Jacobian (d_in JVPs or d_out VJPs per latent, chunked over the batch), then a batched
  SVD.  Cost ~ B * min(d_in, d_out) tangent passes + B SVDs of d_out x d_in.
* ``randomized``: a randomized block Krylov range finder (Halko, Martinsson, Tropp 2011; Musco & Musco 2015)
  driven only by batched JVPs/VJPs, with a posteriori residuals and a per-direction angle bound
  (``krylov.py`` has the maths).  By default it iterates until every direction is certified within ``tol``
  (1e-3 rad) of the exact one, or is too close to a neighbouring singular value to chase (relative gap below
  ``min_gap``, 1 %), at most ``max_iters`` (12) iterations; ``power_iters=q`` runs a fixed count instead.
  Cost ~ B * r * (2 q + 3) tangent columns (r = k + oversample) + float64 eigendecompositions of the
  ((q+1) r)^2 Gram W^T W; no d_out x d_in matrix is ever formed.  Orthonormalisation is batched CholeskyQR2
  (``ops/small_linalg``).

Sign convention (both methods): the largest-magnitude entry of each u_i is positive and v_i is flipped with it,
so results are deterministic and comparable across methods and backends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .. import _checks
from .jacobian import JacobianOperator, TangentPlan, default_memory_budget, linearize, mlp_spec_of
from .krylov import (DEFAULT_MIN_GAP, DEFAULT_TOL, MAX_ITERS, angle_bounds, output_signs, randomized_svd,
                     rounding_floor)

Tensor = torch.Tensor

METHODS = ("auto", "exact", "randomized")


@dataclass
class LocalBasis:
    """Local basis of f at B latents (batch dimension dropped when a single (d_in,) latent was given).

    points:          (B, d_out) f(z), flattened
    basis:           (B, d_out, k) U, orthonormal columns, descending singular values; None with
                     ``output_basis=False``
    singular_values: (B, k)
    input_basis:     (B, d_in, k) V, orthonormal columns; J v_i = s_i u_i; (B, num_ws, w_dim, k) when z was
                     given in W+ layout (B, num_ws, w_dim)
    residual:        (B,) ||J - U S V^T||_2: exactly sigma_{k+1} (0 at full rank) for ``exact``; for
                     ``randomized`` the sketch's estimate of sigma_{k+1} (a lower bound, tight once converged)
    method:          "exact" or "randomized", what actually ran
    angle_bound:     (B, k) radians: bound on the angle of u_i and of v_i to the exact singular vectors
                     (sin-theta bound from a posteriori residuals and the gaps to the neighbouring singular
                     values; see ``krylov.py``); pi/2 where nothing is certified (a gap too small for the
                     residual, e.g. a repeated singular value).  For ``exact``, from the SVD's rounding.
    converged:       (B, k) bool, angle_bound <= tol
    iterations:      (B,) int64 block-Krylov iterations run (0 for ``exact``)
    tangent_columns: (B,) int64 JVP + VJP columns pushed through f per latent (the cost)
    """

    points: Tensor
    basis: Optional[Tensor]
    singular_values: Tensor
    input_basis: Tensor
    residual: Tensor
    method: str
    angle_bound: Optional[Tensor] = None
    converged: Optional[Tensor] = None
    iterations: Optional[Tensor] = None
    tangent_columns: Optional[Tensor] = None

    @property
    def k(self) -> int:
        return self.singular_values.shape[-1]


def fix_signs(U: Tensor, V: Tensor):
    """Flip (u_i, v_i) pairs so that each u_i's largest-magnitude entry is positive.  U (B, n, k), V (B, m, k)."""
    idx = U.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(U.gather(1, idx))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return U * sign, V * sign


def _validate_z(z) -> tuple[Tensor, bool]:
    z = _checks.as_tensor("z", z)
    _checks.check_floating("z", z)
    _checks.check_ndim("z", z, (1, 2, 3), "(B, d_in), (d_in,) or W+ (B, num_ws, w_dim)")
    single = z.dim() == 1
    if single:
        z = z.unsqueeze(0)
    _checks.check_nonempty("z", z, 0, "batch of latents")
    if z.shape[1] == 0:
        raise ValueError(f"z: expected d_in >= 1, got shape {tuple(z.shape)}")
    _checks.check_finite("z", z)
    return z, single


def _exact(op: JacobianOperator, k: int, output_basis: bool = True):
    J = op.dense()
    if not output_basis and op.d_out > op.d_in:  # J = Q R: V and S from R (d_in x d_in), Q never formed
        R = torch.linalg.qr(J, mode="r")[1]
        _, S, Vh = torch.linalg.svd(R, full_matrices=False)
        V = Vh[:, :k, :].transpose(1, 2)
        U = output_signs(J, V)  # only the signs of U = J V / S
    else:
        U, S, Vh = torch.linalg.svd(J, full_matrices=False)
        U, V = U[:, :, :k], Vh[:, :k, :].transpose(1, 2)
        if not output_basis:  # U is small here (d_out <= d_in); hand back only its signs, like the QR route
            U = output_signs(U, torch.eye(k, dtype=U.dtype, device=U.device).expand(U.shape[0], k, k))
    kmax = S.shape[-1]
    residual = S[:, k] if k < kmax else torch.zeros_like(S[:, 0])
    # LAPACK's SVD is backward stable: exact for J + E, ||E|| ~ eps ||J||; the bound is that rounding over the gaps
    s = torch.cat([S, torch.zeros_like(S[:, :1])], 1)[:, :k + 1].double()
    rho = rounding_floor(s[:, :1], J.dtype).expand_as(s)
    bound = angle_bounds(s, rho, k).to(J.dtype)
    return U, S[:, :k], V, residual, bound, 0, min(op.d_in, op.d_out)


def _chunk_budget(device: torch.device) -> int:
    """Elements of working memory per chunk: 2^24 on the CPU (stays near the caches); on a GPU an eighth of
    its memory in float32 elements, so that a batch of thousands of latents is a handful of large launches
    rather than a hundred small ones (a chunk's launches cost the same at 100 latents as at 1,000)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 32
    return 1 << 24


def local_basis(f: Callable[[Tensor], Tensor], z, k: Optional[int] = None, method: str = "auto", *,
                oversample: int = 10, power_iters: Optional[int] = None, tol: Optional[float] = None,
                max_iters: Optional[int] = None, min_gap: float = DEFAULT_MIN_GAP,
                chunk_size: Optional[int] = None, generator: Optional[torch.Generator] = None,
                backend: str = "auto", max_memory: Optional[int] = None,
                output_basis: bool = True) -> LocalBasis:
    """Local basis of ``f`` at ``z``.

    f: callable (B, d_in) -> (B, ...), rows independent (output flattened to d_out); an :class:`MLPSpec` or a
       module with ``mlp_spec()`` (latentfast's mapping networks) takes the fused MLP path, anything else
       goes through torch.func.
    z: (B, d_in) or (d_in,) floating tensor, finite, B >= 1; or W+ latents (B, num_ws, w_dim), which f takes
       in that layout (d_in = num_ws * w_dim, flattened inside; ``input_basis`` comes back (B, num_ws, w_dim,
       k)).  One W+ latent is (1, num_ws, w_dim).
    k: number of directions, 1 <= k <= min(d_in, d_out); None = all (exact).
    method: "exact", "randomized" (needs k), or "auto" (randomized when k + oversample <= min(d_in, d_out) / 4
       and the problem is large enough for it to pay, exact otherwise).
    oversample, power_iters, tol, max_iters, min_gap: randomized accuracy/cost knobs (module docstring):
       tol (radians, default 1e-3) is the adaptive target and sets ``converged``; power_iters = a fixed number
       of block-Krylov iterations (no adaptivity); max_iters (default 12) caps the adaptive count; directions
       whose relative gap to a neighbouring singular value is below min_gap (default 0.01) are not iterated for.
    chunk_size: latents per chunk (bounds memory: exact holds chunk x d_out x d_in; default ~64 MB on the CPU,
       an eighth of the memory on a GPU).
    generator: torch.Generator for the random probes (reproducible results).
    backend: for MLP-shaped f, the mlp_jvp backend ("auto", "triton", "reference"); ignored otherwise.
    max_memory: bytes of working memory one torch.func tangent pass may allocate: the r tangents (cotangents)
       of a chunk of latents go through f in as many passes as that needs, at least one tangent each (see
       :class:`~latentfast.localbasis.jacobian.FuncOperator`).  Default: half the free memory of a CUDA
       device, a quarter of the available RAM on the CPU.  Ignored on the fused MLP path.
    output_basis: False returns only V, the singular values and the residual (``basis`` is None): the
       eigenvectors of the pullback metric J^T J = V S^2 V^T, without ever storing U (B, d_out, k) — what an
       image-space Jacobian needs (d_out = 3 H W).  Same V, S and sign convention as with True.
    Raises ValueError/TypeError naming the argument on bad shapes, dtypes, NaN/Inf, k out of range.
    """
    z, single = _validate_z(z)
    latent_shape = None
    if z.dim() == 3 and mlp_spec_of(f) is not None:
        raise ValueError(f"z: expected shape (B, d_in) for an MLP f, got shape {tuple(z.shape)} (W+ latents "
                         f"(B, num_ws, w_dim) need an f that takes them, e.g. G.synthesis_f('wplus'))")
    if z.dim() == 3:  # W+ latents: f takes (B, num_ws, w_dim); the operator sees them flattened
        latent_shape = tuple(z.shape[1:])
        f_wplus = f
        f = lambda flat: f_wplus(flat.reshape(flat.shape[0], *latent_shape))  # noqa: E731
        z = z.reshape(z.shape[0], -1)
    _checks.check_choice("method", method, METHODS)
    oversample = _checks.check_int("oversample", oversample, low=0)
    if power_iters is not None:
        power_iters = _checks.check_int("power_iters", power_iters, low=0)
    tol = DEFAULT_TOL if tol is None else _checks.as_float("tol", tol, positive=True)
    max_iters = MAX_ITERS if max_iters is None else _checks.check_int("max_iters", max_iters, low=0)
    min_gap = _checks.as_float("min_gap", min_gap, low=0.0)
    if max_memory is not None:
        max_memory = _checks.check_int("max_memory", max_memory, low=1)
    else:
        max_memory = default_memory_budget(z.device)
    plan = TangentPlan(max_memory)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")

    if not callable(f):
        raise TypeError(f"f: expected a callable (B, d_in) -> (B, ...), got {type(f).__name__}")
    spec = mlp_spec_of(f)
    if spec is not None and spec.d_in != z.shape[1]:
        raise ValueError(f"z: expected width d_in = {spec.d_in} for this MLP, got shape {tuple(z.shape)}")
    def lin(s, e):  # f's output enters here: checked in jacobian.linearize
        try:  # an MLP f's spec once per call, not once per chunk (f.mlp_spec() may rebuild its weights)
            return linearize(f if spec is None else spec, z[s:e], backend, row_offset=s, plan=plan)
        except RuntimeError as exc:  # typically a shape or dtype mismatch inside f
            raise ValueError(f"z: f could not be applied to latents of shape {tuple(z[s:e].shape)} "
                             f"({z.dtype}): {exc}") from exc

    first = lin(0, 1)
    d_in, d_out = z.shape[1], first.d_out
    kmax = min(d_in, d_out)
    if k is None:
        if method == "randomized":
            raise ValueError("k: method='randomized' needs k (the number of directions), got None")
        k = kmax
    if not isinstance(k, bool) and isinstance(k, int) and not 1 <= k <= kmax:
        raise ValueError(f"k: expected 1 <= k <= min(d_in, d_out) = {kmax} (d_in = {d_in}, d_out = {d_out}), "
                         f"got {k}")
    k = _checks.check_int("k", k, low=1, high=kmax)
    if method == "auto":
        method = "randomized" if (k + oversample) * 4 <= kmax and kmax >= 64 else "exact"

    if chunk_size is None:
        iters = power_iters if power_iters is not None else max_iters
        per_latent = d_in * d_out if method == "exact" else (d_in + 2 * d_out) * (k + oversample) * (iters + 1)
        chunk_size = max(1, _chunk_budget(z.device) // max(per_latent, 1))
    chunk_size = _checks.check_int("chunk_size", chunk_size, low=1)

    outs = []
    for s in range(0, z.shape[0], chunk_size):
        op = first if (s == 0 and z.shape[0] == 1) else lin(s, s + chunk_size)
        if method == "exact":
            U, S, V, res, bound, iters, cols = _exact(op, k, output_basis)
        else:
            kr = randomized_svd(op, k, oversample, power_iters, tol, max_iters, min_gap, generator, output_basis)
            U, S, V, res, bound, iters, cols = kr.U, kr.S, kr.V, kr.residual, kr.angle_bound, kr.iterations, kr.columns
        if output_basis:
            U, V = fix_signs(U, V)
            U = U.to(z.dtype)
        else:  # U holds the (B, 1, k) signs of the columns of U
            U, V = None, V * U
        n = op.points.shape[0]
        count = lambda v: torch.full((n,), v, dtype=torch.int64, device=z.device)  # noqa: E731
        outs.append((op.points, U, *(t.to(z.dtype) for t in (S, V, res)), bound.to(z.dtype), bound <= tol,
                     count(iters), count(cols)))
    points, U, S, V, res, bound, conv, iters, cols = (None if parts[0] is None else torch.cat(parts)
                                                      for parts in zip(*outs))
    if latent_shape is not None:
        V = V.reshape(V.shape[0], *latent_shape, V.shape[-1])
    if single:
        points, S, V, res, bound, conv, iters, cols = (t[0] for t in (points, S, V, res, bound, conv, iters, cols))
        U = None if U is None else U[0]
    return LocalBasis(points, U, S, V, res, method, bound, conv, iters, cols)
