"""Local Basis (Choi et al., ICLR 2022): the SVD of the Jacobian of a sub-network f at latents z.

J = U S V^T at z; the top columns of U (in the output space, e.g. W) are the local semantic directions, V the
matching input directions.  Two methods:

* ``exact``: the dense Jacobian (d_in JVPs or d_out VJPs per latent, chunked over the batch), then a batched
  SVD.  Cost ~ B * min(d_in, d_out) tangent passes + B SVDs of d_out x d_in.
* ``randomized``: a randomized range finder (Halko, Martinsson, Tropp 2011) driven only by batched JVPs/VJPs:
      K_0 = orth(J Omega)  (r = k + oversample Gaussian probes)
      K_i = orth(J J^T K_{i-1}, against K_0..K_{i-1})        (block Krylov iterations, i = 1..q)
      W = J^T [K_0..K_q] = P S R^T (thin SVD)                ->  U = K R,  V = P
  Accuracy is governed by ``oversample`` (more probes: better subspace) and ``power_iters`` = q (each
  iteration adds a block of the Krylov space; the error of sigma_i falls like a Chebyshev polynomial of the
  spectral gap, far faster than plain power iteration on the flat spectra of mapping networks).  Default
  q = 2; with ``tol`` given instead, iterations run until the top-(k+1) singular values change by less than
  ``tol`` (relative to sigma_1, at most 10 iterations).  Cost ~ B * r * (2 q + 2) tangent passes + a thin SVD of
  (d_in, (q+1) r); no d_out x d_in matrix is ever formed.
  Orthonormalisation is batched CholeskyQR2 (``ops/small_linalg``).

Sign convention (both methods): the largest-magnitude entry of each u_i is positive and v_i is flipped with it,
so results are deterministic and comparable across methods and backends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .. import _checks
from ..ops.small_linalg import orthonormalize, thin_svd
from ..ops.small_linalg._threads import single_threaded
from .jacobian import JacobianOperator, TangentPlan, default_memory_budget, linearize, mlp_spec_of

Tensor = torch.Tensor

METHODS = ("auto", "exact", "randomized")
DEFAULT_KRYLOV_ITERS = 2  # measured: top-10 singular values within 0.25 % on flat and decaying spectra (tests)
MAX_POWER_ITERS = 10


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
    """

    points: Tensor
    basis: Optional[Tensor]
    singular_values: Tensor
    input_basis: Tensor
    residual: Tensor
    method: str

    @property
    def k(self) -> int:
        return self.singular_values.shape[-1]


def fix_signs(U: Tensor, V: Tensor):
    """Flip (u_i, v_i) pairs so that each u_i's largest-magnitude entry is positive.  U (B, n, k), V (B, m, k)."""
    idx = U.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(U.gather(1, idx))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return U * sign, V * sign


def _output_signs(A: Tensor, M: Tensor, rows: int = 4096) -> Tensor:
    """(B, 1, k) sign of the largest-magnitude entry of each column of A @ M (A (B, n, m), M (B, m, k)), the
    first on ties, without forming the (B, n, k) product: row blocks of ``rows``."""
    best = sign = None
    for s in range(0, A.shape[1], rows):
        blk = A[:, s:s + rows] @ M
        idx = blk.abs().argmax(dim=1, keepdim=True)
        val = blk.gather(1, idx)
        if best is None:
            best, sign = val.abs(), torch.sign(val)
        else:
            take = val.abs() > best
            best, sign = torch.where(take, val.abs(), best), torch.where(take, torch.sign(val), sign)
    return torch.where(sign == 0, torch.ones_like(sign), sign)


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
        U = _output_signs(J, V)  # only the signs of U = J V / S
    else:
        U, S, Vh = torch.linalg.svd(J, full_matrices=False)
        U, V = U[:, :, :k], Vh[:, :k, :].transpose(1, 2)
        if not output_basis:  # U is small here (d_out <= d_in); hand back only its signs, like the QR route
            U = _output_signs(U, torch.eye(k, dtype=U.dtype, device=U.device).expand(U.shape[0], k, k))
    kmax = S.shape[-1]
    residual = S[:, k] if k < kmax else torch.zeros_like(S[:, 0])
    return U, S[:, :k], V, residual


def _orthogonalize_against(Y: Tensor, blocks) -> Tensor:
    """Y minus its components in the earlier orthonormal blocks, twice (classical Gram-Schmidt needs the
    second pass to stay orthogonal in floating point), then orthonormalised."""
    for _ in range(2):
        for K in blocks:
            Y = Y - K @ (K.transpose(1, 2) @ Y)
    return orthonormalize(Y)


def _randomized(op: JacobianOperator, k: int, oversample: int, power_iters: Optional[int], tol: Optional[float],
                generator: Optional[torch.Generator], output_basis: bool = True):
    """Block Krylov range finder (Musco & Musco 2015) driven by JVPs/VJPs; see the module docstring.

    Space: span{Y, (J J^T) Y, ..., (J J^T)^q Y}, Y = J Omega, built block by block, each block orthogonalised
    against the earlier ones.  Each iteration costs one VJP and one JVP of r columns — the same as a power
    iteration — but keeps every block, so the top singular values converge much faster on flat spectra.
    The VJPs of the blocks are exactly the columns of W = J^T K needed at the end: nothing is recomputed.
    """
    B = op.points.shape[0]
    kmax = min(op.d_in, op.d_out)
    r = min(k + oversample, kmax)
    dt, dev = op.points.dtype, op.points.device
    gdev = generator.device if generator is not None else dev
    omega = torch.randn(B, op.d_in, r, generator=generator, dtype=dt, device=gdev).to(dev)
    blocks = [orthonormalize(op.jvp(omega))]  # K_0
    Ws = [op.vjp(blocks[0])]  # J^T K_i
    top = min(k + 1, r)  # watch sigma_{k+1} too: it is the residual estimate
    previous = None
    adaptive = tol is not None
    iters = MAX_POWER_ITERS if adaptive else (DEFAULT_KRYLOV_ITERS if power_iters is None else power_iters)
    for _ in range(iters):
        width = sum(K.shape[-1] for K in blocks)
        if width + r > kmax:  # the Krylov space cannot grow past the full range
            break
        if adaptive:
            W = torch.cat(Ws, dim=2).to(torch.float64)
            with single_threaded(W):
                s_now = torch.linalg.eigvalsh(W.transpose(1, 2) @ W).flip(-1)[:, :top].clamp_min(0).sqrt()
            if previous is not None and bool(((s_now - previous).abs() <= tol * s_now[:, :1]).all()):
                break
            previous = s_now
        blocks.append(_orthogonalize_against(op.jvp(Ws[-1]), blocks))
        Ws.append(op.vjp(blocks[-1]))
    K = torch.cat(blocks, dim=2)
    W = torch.cat(Ws, dim=2)  # = J^T K
    P, S, Rh = thin_svd(W)  # W = J^T K = P S Rh  =>  K^T J = Rh^T S P^T
    M = Rh.transpose(1, 2)[:, :, :k]
    U = K @ M if output_basis else _output_signs(K, M)  # without U: only its signs, in row blocks
    residual = S[:, k] if k < S.shape[1] else torch.zeros_like(S[:, 0])
    return U, S[:, :k], P[:, :, :k], residual


def _chunk_budget(device: torch.device) -> int:
    """Elements of working memory per chunk: 2^24 on the CPU (stays near the caches); on a GPU an eighth of
    its memory in float32 elements, so that a batch of thousands of latents is a handful of large launches
    rather than a hundred small ones (a chunk's launches cost the same at 100 latents as at 1,000)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 32
    return 1 << 24


def local_basis(f: Callable[[Tensor], Tensor], z, k: Optional[int] = None, method: str = "auto", *,
                oversample: int = 10, power_iters: Optional[int] = None, tol: Optional[float] = None,
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
    oversample, power_iters, tol: randomized accuracy/cost knobs (see the module docstring); power_iters
       (fixed count, default 2) and tol (adaptive) are exclusive.
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
    if tol is not None:
        tol = float(tol)
        if not tol > 0:
            raise ValueError(f"tol: expected a positive float or None, got {tol!r}")
        if power_iters is not None:
            raise ValueError("tol: give either power_iters (a fixed count) or tol (adaptive), not both")
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
    try:
        first = linearize(f, z[:1], backend, plan=plan)
    except RuntimeError as exc:  # typically a shape mismatch inside f
        raise ValueError(f"z: f could not be applied to a latent of shape {tuple(z[:1].shape)}: {exc}") from exc
    if first.points.dim() != 2 or first.points.shape[0] != 1:
        raise ValueError(f"f: expected f(z) of shape (B, ...) with B = 1 for one latent, got {tuple(first.points.shape)}")
    d_in, d_out = z.shape[1], first.d_out
    kmax = min(d_in, d_out)
    if k is None:
        if method == "randomized":
            raise ValueError("k: method='randomized' needs k (the number of directions), got None")
        k = kmax
    k = _checks.check_int("k", k, low=1, high=kmax)
    if method == "auto":
        method = "randomized" if (k + oversample) * 4 <= kmax and kmax >= 64 else "exact"

    if chunk_size is None:
        per_latent = d_in * d_out if method == "exact" else (d_in + d_out) * (k + oversample) * 4
        chunk_size = max(1, _chunk_budget(z.device) // max(per_latent, 1))
    chunk_size = _checks.check_int("chunk_size", chunk_size, low=1)

    outs = []
    for s in range(0, z.shape[0], chunk_size):
        op = first if (s == 0 and z.shape[0] == 1) else linearize(f, z[s:s + chunk_size], backend, plan=plan)
        if method == "exact":
            U, S, V, res = _exact(op, k, output_basis)
        else:
            U, S, V, res = _randomized(op, k, oversample, power_iters, tol, generator, output_basis)
        if output_basis:
            U, V = fix_signs(U, V)
        else:  # U holds the (B, 1, k) signs of the columns of U
            U, V = None, V * U
        outs.append((op.points, U, S, V, res))
    points, U, S, V, res = (None if parts[0] is None else torch.cat(parts) for parts in zip(*outs))
    if latent_shape is not None:
        V = V.reshape(V.shape[0], *latent_shape, V.shape[-1])
    if single:
        points, S, V, res = points[0], S[0], V[0], res[0]
        U = None if U is None else U[0]
    return LocalBasis(points, U, S, V, res, method)
