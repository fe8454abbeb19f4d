"""The paper's warpage study: how far apart are local subspaces, near and far, against random and global ones.

For latents z_1..z_B and subspace sizes k:
  * local(eps):       d(U_k(z_i), U_k(z_i + eps * e_i)), e_i a random unit vector, for each eps
  * random_points:    d(U_k(z_i), U_k(z_j)) for disjoint random pairs of the given latents (within each block
                      when a job is split into blocks of rows, as ``latentfast warpage`` does)
  * random_subspaces: d between Haar-random k-dim subspaces of the same output space (the "no structure" level)
  * global:           d(U_k(z_i), span of the first k columns of a given global basis (d_out, K)), if given
:func:`warpage_rows` gives these distances per latent; :meth:`Warpage.from_rows` reports each as mean and
standard deviation (:func:`warpage` does both).  W is "warped" when random_points approaches random_subspaces
while local(eps) stays small for small eps.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import torch

from .. import _checks
from ..ops.small_linalg._threads import single_threaded
from .basis import local_basis
from .grassmann import METRICS, grassmann_distance

Tensor = torch.Tensor


@dataclass
class WarpageStats:
    mean: float
    std: float

    @staticmethod
    def of(values: Tensor) -> "WarpageStats":
        v = values.double()
        return WarpageStats(float(v.mean()), float(v.std(unbiased=False)))


@dataclass
class Warpage:
    """Per k: ``local[k][eps]``, ``random_points[k]``, ``random_subspaces[k]``, ``global_[k]`` (or empty)."""

    metric: str
    ks: list
    eps: list
    local: Dict[int, Dict[float, WarpageStats]] = field(default_factory=dict)
    random_points: Dict[int, WarpageStats] = field(default_factory=dict)
    random_subspaces: Dict[int, WarpageStats] = field(default_factory=dict)
    global_: Dict[int, WarpageStats] = field(default_factory=dict)

    @staticmethod
    def from_rows(rows: "WarpageRows", *, num_random_subspaces: Optional[int] = None,
                  generator: Optional[torch.Generator] = None) -> "Warpage":
        """Mean and std over the latents of :class:`WarpageRows` (random pairs: over the paired latents, each
        pair counted once per member, which leaves mean and std as over the pairs), with the random-subspace
        level drawn from ``generator`` (default: seeded with 0); ``num_random_subspaces`` pairs of subspaces
        (default max(B // 2, 16))."""
        B = rows.local.shape[0]
        count = num_random_subspaces if num_random_subspaces is not None else max(B // 2, 16)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        paired = rows.partner.to(rows.random_points.device) >= 0
        if not bool(paired.any()):
            raise ValueError(f"rows: no latent has a partner (random pairs need blocks of >= 2 latents), got {B} "
                             f"row(s)")
        out = Warpage(rows.metric, list(rows.ks), list(rows.eps))
        for j, kk in enumerate(rows.ks):
            out.local[kk] = {e: WarpageStats.of(rows.local[:, j, i]) for i, e in enumerate(rows.eps)}
            out.random_points[kk] = WarpageStats.of(rows.random_points[paired, j])
            R1 = _random_subspaces(rows.d_out, kk, count, rows.local.dtype, gen)
            R2 = _random_subspaces(rows.d_out, kk, count, rows.local.dtype, gen)
            out.random_subspaces[kk] = WarpageStats.of(grassmann_distance(R1, R2, rows.metric))
            if rows.global_ is not None:
                out.global_[kk] = WarpageStats.of(rows.global_[:, j])
        return out

    def to_dict(self) -> dict:
        s = lambda st: {"mean": st.mean, "std": st.std}
        return {
            "metric": self.metric,
            "k": self.ks,
            "eps": self.eps,
            "local": {str(k): {str(e): s(v) for e, v in d.items()} for k, d in self.local.items()},
            "random_points": {str(k): s(v) for k, v in self.random_points.items()},
            "random_subspaces": {str(k): s(v) for k, v in self.random_subspaces.items()},
            "global": {str(k): s(v) for k, v in self.global_.items()},
        }


def _random_subspaces(n: int, k: int, count: int, dtype, generator) -> Tensor:
    g = torch.randn(count, n, k, generator=generator, dtype=torch.float64, device=generator.device).cpu()
    with single_threaded(g):
        return torch.linalg.qr(g).Q.to(dtype)  # QR of a Gaussian matrix: Haar-distributed subspace


@dataclass
class WarpageRows:
    """Per-latent warpage distances, the rows :meth:`Warpage.from_rows` summarises (row i: latent z_i).

    ``local`` (B, len(ks), len(eps)): d(U_k(z_i), U_k(z_i + eps * e_i)).  ``random_points`` (B, len(ks)):
    d(U_k(z_i), U_k(z_partner[i])), NaN where the latent has no partner.  ``partner`` (B,) int64: the index of
    the latent z_i is paired with (an involution over disjoint random pairs; -1 for the one left over when B is
    odd).  ``global_`` (B, len(ks)) or None: d(U_k(z_i), the first k global columns).  ``d_out``: the width of
    the output space (the random-subspace level needs it).  Rows of several calls (blocks of one job), with
    ``partner`` offset to index the concatenation, summarise as one: ``latentfast warpage`` under torchrun.
    """

    metric: str
    ks: list
    eps: list
    d_out: int
    local: Tensor
    random_points: Tensor
    partner: Tensor
    global_: Optional[Tensor] = None


def warpage_rows(f, z, k, *, eps: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0), global_basis=None,
                 metric: str = "geodesic", generator: Optional[torch.Generator] = None, method: str = "auto",
                 **basis_kwargs) -> WarpageRows:
    """Per-latent warpage distances of f around latents z (B, d_in), B >= 1 (see :class:`WarpageRows`); the
    arguments are :func:`warpage`'s.  Random pairs are drawn among these B latents, so a job split into blocks
    (one call per block) pairs latents within each block."""
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    return _rows(f, z, k, eps, global_basis, metric, generator, gen, method, basis_kwargs, min_rows=1)


def warpage(f, z, k, *, eps: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0), global_basis=None,
            metric: str = "geodesic", num_random_subspaces: Optional[int] = None,
            generator: Optional[torch.Generator] = None, method: str = "auto", **basis_kwargs) -> "Warpage":
    """Grassmannian warpage statistics of f around latents z (B, d_in), B >= 2, for k an int or a list of ints.

    k: an int or a non-empty sequence of ints >= 1 (numpy integers and arrays accepted).
    eps: a number or a non-empty sequence of finite numbers (perturbation sizes).
    global_basis: optional (d_out, K) finite columns with K >= max(k) (e.g. GANSpace components as columns);
    its first k columns are orthonormalised for each k.  num_random_subspaces: a count >= 1 (default max(B // 2, 16)).
    float16/bfloat16 latents are supported (bases and distances computed in float32).
    Local bases are computed once with k = max(k) and sliced.  Returns :class:`Warpage`, the summary of
    :func:`warpage_rows` (same generator stream: the rows' draws, then the random subspaces).
    """
    if num_random_subspaces is not None:
        num_random_subspaces = _checks.as_positive_int("num_random_subspaces", num_random_subspaces)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    rows = _rows(f, z, k, eps, global_basis, metric, generator, gen, method, basis_kwargs, min_rows=2)
    return Warpage.from_rows(rows, num_random_subspaces=num_random_subspaces, generator=gen)


def _rows(f, z, k, eps, global_basis, metric, generator, gen, method, basis_kwargs, min_rows) -> WarpageRows:
    _checks.check_choice("metric", metric, METRICS)
    z = _checks.check_floating("z", _checks.as_tensor("z", z))
    _checks.check_ndim("z", z, 2, "(B, d_in)")
    if z.shape[0] < min_rows:
        raise ValueError(f"z: expected at least {min_rows} latent(s) (random pairs need them), got shape "
                         f"{tuple(z.shape)}")
    _checks.check_finite("z", z)
    ks = _checks.as_int_sequence("k", k, low=1)
    eps = _checks.as_float_sequence("eps", eps)
    kmax = max(ks)
    B, d_in = z.shape

    base = local_basis(f, z, kmax, method, generator=generator, **basis_kwargs)
    d_out = base.basis.shape[1]
    if global_basis is not None:
        global_basis = _checks.check_floating("global_basis", _checks.as_tensor("global_basis", global_basis))
        if global_basis.dim() != 2 or global_basis.shape[0] != d_out or global_basis.shape[1] < kmax:
            raise ValueError(f"global_basis: expected shape ({d_out}, K) with K >= {kmax}, got {tuple(global_basis.shape)}")
        _checks.check_finite("global_basis", global_basis)
        global_basis = global_basis.to(base.basis)

    perturbed = {}
    for e in eps:
        direction = torch.randn(B, d_in, generator=gen, dtype=torch.float64, device=gen.device).to(z)
        direction = direction / direction.norm(dim=1, keepdim=True)
        moved = z + e * direction
        if not _checks._all_finite(moved):
            raise ValueError(f"eps: {e:g} moves z past the range of {z.dtype} (z + eps * direction is not finite)")
        perturbed[e] = local_basis(f, moved, kmax, method, generator=generator, **basis_kwargs).basis
    perm = torch.randperm(B, generator=gen, device=gen.device).cpu()
    half = B // 2
    a_idx, b_idx = perm[:half], perm[half:2 * half]
    partner = torch.full((B,), -1, dtype=torch.int64)
    partner[a_idx], partner[b_idx] = b_idx, a_idx
    U = base.basis
    local = torch.empty(B, len(ks), len(eps), dtype=U.dtype, device=U.device)
    pairs = torch.full((B, len(ks)), math.nan, dtype=U.dtype, device=U.device)
    glob = None if global_basis is None else torch.empty(B, len(ks), dtype=U.dtype, device=U.device)
    a_dev, b_dev = a_idx.to(U.device), b_idx.to(U.device)
    for j, kk in enumerate(ks):
        Uk = U[:, :, :kk]
        for i, e in enumerate(eps):
            local[:, j, i] = grassmann_distance(Uk, perturbed[e][:, :, :kk], metric)
        if half:
            d = grassmann_distance(Uk[a_dev], Uk[b_dev], metric)
            pairs[a_dev, j], pairs[b_dev, j] = d, d
        if glob is not None:
            G = torch.linalg.qr(global_basis[:, :kk].double()).Q.to(U.dtype)
            glob[:, j] = grassmann_distance(Uk, G.expand(B, -1, -1), metric)
    return WarpageRows(metric, ks, eps, d_out, local, pairs, partner, glob)
