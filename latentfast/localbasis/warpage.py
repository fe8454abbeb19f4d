"""The paper's warpage study: how far apart are local subspaces, near and far, against random and global ones.

For latents z_1..z_B and subspace sizes k:
  * local(eps):       d(U_k(z_i), U_k(z_i + eps * e_i)), e_i a random unit vector, for each eps
  * random_points:    d(U_k(z_i), U_k(z_j)) for disjoint random pairs of the given latents
  * random_subspaces: d between Haar-random k-dim subspaces of the same output space (the "no structure" level)
  * global:           d(U_k(z_i), span of the first k columns of a given global basis (d_out, K)), if given
Each is reported as mean and standard deviation.  W is "warped" when random_points approaches random_subspaces
while local(eps) stays small for small eps.
"""
from __future__ import annotations

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
    g = torch.randn(count, n, k, generator=generator, dtype=torch.float64)
    with single_threaded(g):
        return torch.linalg.qr(g).Q.to(dtype)  # QR of a Gaussian matrix: Haar-distributed subspace


def warpage(f, z, k, *, eps: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0), global_basis=None,
            metric: str = "geodesic", num_random_subspaces: Optional[int] = None,
            generator: Optional[torch.Generator] = None, method: str = "auto", **basis_kwargs) -> Warpage:
    """Grassmannian warpage statistics of f around latents z (B, d_in), B >= 2, for k an int or a list of ints.

    k: an int or a non-empty sequence of ints >= 1 (numpy integers and arrays accepted).
    eps: a number or a non-empty sequence of finite numbers (perturbation sizes).
    global_basis: optional (d_out, K) finite columns with K >= max(k) (e.g. GANSpace components as columns);
    its first k columns are orthonormalised for each k.  num_random_subspaces: a count >= 1 (default max(B // 2, 16)).
    float16/bfloat16 latents are supported (bases and distances computed in float32).
    Local bases are computed once with k = max(k) and sliced.  Returns :class:`Warpage`.
    """
    _checks.check_choice("metric", metric, METRICS)
    z = _checks.check_floating("z", _checks.as_tensor("z", z))
    _checks.check_ndim("z", z, 2, "(B, d_in) with B >= 2")
    if z.shape[0] < 2:
        raise ValueError(f"z: expected at least 2 latents (random pairs need them), got shape {tuple(z.shape)}")
    _checks.check_finite("z", z)
    ks = _checks.as_int_sequence("k", k, low=1)
    eps = _checks.as_float_sequence("eps", eps)
    if num_random_subspaces is not None:
        num_random_subspaces = _checks.as_positive_int("num_random_subspaces", num_random_subspaces)
    kmax = max(ks)
    B, d_in = z.shape
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    base = local_basis(f, z, kmax, method, generator=generator, **basis_kwargs)
    d_out = base.basis.shape[1]
    if global_basis is not None:
        global_basis = _checks.check_floating("global_basis", _checks.as_tensor("global_basis", global_basis))
        if global_basis.dim() != 2 or global_basis.shape[0] != d_out or global_basis.shape[1] < kmax:
            raise ValueError(f"global_basis: expected shape ({d_out}, K) with K >= {kmax}, got {tuple(global_basis.shape)}")
        _checks.check_finite("global_basis", global_basis)
        global_basis = global_basis.to(base.basis)

    out = Warpage(metric, ks, eps)
    perturbed = {}
    for e in eps:
        direction = torch.randn(B, d_in, generator=gen, dtype=torch.float64).to(z)
        direction = direction / direction.norm(dim=1, keepdim=True)
        moved = z + e * direction
        if not _checks._all_finite(moved):
            raise ValueError(f"eps: {e:g} moves z past the range of {z.dtype} (z + eps * direction is not finite)")
        perturbed[e] = local_basis(f, moved, kmax, method, generator=generator, **basis_kwargs).basis
    perm = torch.randperm(B, generator=gen)
    half = B // 2
    a_idx, b_idx = perm[:half], perm[half:2 * half]
    count = num_random_subspaces if num_random_subspaces is not None else max(half, 16)
    for kk in ks:
        U = base.basis[:, :, :kk]
        out.local[kk] = {e: WarpageStats.of(grassmann_distance(U, perturbed[e][:, :, :kk], metric)) for e in eps}
        out.random_points[kk] = WarpageStats.of(grassmann_distance(U[a_idx], U[b_idx], metric))
        R1 = _random_subspaces(d_out, kk, count, U.dtype, gen)
        R2 = _random_subspaces(d_out, kk, count, U.dtype, gen)
        out.random_subspaces[kk] = WarpageStats.of(grassmann_distance(R1, R2, metric))
        if global_basis is not None:
            G = torch.linalg.qr(global_basis[:, :kk].double()).Q.to(U.dtype)
            out.global_[kk] = WarpageStats.of(grassmann_distance(U, G.expand(B, -1, -1), metric))
    return out
