"""The Local Basis authors' Grassmannian geodesic metric, restated: one pair at a time in numpy.

Follows isno0907/localbasis, ``notebooks/localbasis_utils.py``, ``_metric_by_geodesic`` (called through
``compute_grsm_metric(..., metric_type='geodesic')``): take the first ``subspace_dim`` columns of both bases as
numpy arrays, SVD of A^T B (``np.linalg.svd``), clip the singular values at 1, ``arccos``, 2-norm.
:func:`pairwise` is the all-pairs loop a user writes around it (the original evaluates pairs one call at a time,
e.g. in ``evaluate_basis_consistency``); each unordered pair is computed once and mirrored.
"""
from __future__ import annotations

import numpy as np


def metric_by_geodesic(local_basis_1, local_basis_2, subspace_dim: int) -> float:
    a = np.array(local_basis_1[:, :subspace_dim])
    b = np.array(local_basis_2[:, :subspace_dim])
    _, s, _ = np.linalg.svd(np.matmul(a.transpose(), b))
    s[s > 1] = 1
    return float(np.linalg.norm(np.arccos(s)))


def pairwise(bases: np.ndarray, subspace_dim: int, count: int | None = None) -> np.ndarray:
    """(P, P) distances for bases (P, n, k); with ``count`` only the first ``count`` bases (P = count)."""
    P = bases.shape[0] if count is None else count
    out = np.zeros((P, P), dtype=np.float64)
    for i in range(P):
        for j in range(i + 1, P):
            out[i, j] = out[j, i] = metric_by_geodesic(bases[i], bases[j], subspace_dim)
    return out
