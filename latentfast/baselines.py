"""Global latent directions to compare against: GANSpace (PCA of W samples) and SeFa (closed-form factorization).

* GANSpace (Härkönen et al., NeurIPS 2020): principal components of sampled W latents.  The result carries the
  fields GANSpace stores in its ``.npz``: ``lat_comp`` (components), ``lat_mean`` (mean), ``lat_stdev`` (the
  standard deviation of the samples along each component).
* SeFa (Shen & Zhou, CVPR 2021): eigenvectors of A^T A, A the weight of the affine layer(s) that map a latent to
  the style/modulation vector(s).  As in SeFa, several layers are stacked along the output axis and every
  output unit's weight row is scaled to unit length before the eigen-decomposition.

Both compute in float64 and return in the input's floating dtype.  Signs are fixed: in every direction the entry
of largest absolute value is positive (the first such entry on an exact tie), so the same input gives the same
output on any machine/LAPACK.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from . import _checks

Tensor = torch.Tensor

#: rows per chunk when accumulating the Gram matrix of the latents
_CHUNK_ROWS = 65536


class GANSpaceDirections(NamedTuple):
    """Result of :func:`ganspace_directions`.

    components: (k, d) unit rows, orthonormal, by decreasing variance (GANSpace ``lat_comp``)
    mean:       (d,) mean latent (``lat_mean``)
    stdev:      (k,) standard deviation of the latents along each component, population (1/N) convention as
                GANSpace computes it (``lat_stdev``)
    """

    components: Tensor
    mean: Tensor
    stdev: Tensor


class SeFaDirections(NamedTuple):
    """Result of :func:`sefa_directions`.

    directions:  (k, d_in) orthonormal unit rows, eigenvectors of A^T A by decreasing eigenvalue
    eigenvalues: (k,) the matching eigenvalues of A^T A (A with unit-length rows), decreasing
    """

    directions: Tensor
    eigenvalues: Tensor


def _fix_signs(rows: Tensor) -> Tensor:
    """Flip each row so its largest-|.| entry is positive (argmax returns the first index on exact ties)."""
    pivot = rows.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(torch.gather(rows, 1, pivot))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return rows * sign


def _top_eigh(gram: Tensor, k: int):
    """Top-k eigenpairs of a symmetric float64 matrix, eigenvalues decreasing, eigenvectors as sign-fixed rows."""
    evals, evecs = torch.linalg.eigh(gram)  # ascending
    evals = evals.flip(0)[:k]
    rows = evecs.flip(1)[:, :k].T.contiguous()
    return evals, _fix_signs(rows)


def ganspace_directions(latents, k: int) -> GANSpaceDirections:
    """PCA of latent samples, the GANSpace way.

    latents: (N, d) floating tensor or array of W samples, finite, N >= 1; k: 1 <= k <= min(N, d).
    Math: the centred SVD X_c = U S V^T; components = the first k rows of V^T, stdev = S / sqrt(N).  It is
    computed as the eigen-decomposition of the float64 Gram matrix X_c^T X_c = V S^2 V^T, accumulated in
    chunks, so memory is O(d^2 + chunk x d) however many samples there are.  Components whose variance is
    zero (k above the rank of X_c) are still orthonormal but their direction inside the null space is arbitrary.
    Returns :class:`GANSpaceDirections` in the latents' dtype (float32 for half precision) and device.
    Raises ValueError/TypeError naming ``latents`` or ``k``.
    """
    x = _checks.as_tensor("latents", latents)
    _checks.check_ndim("latents", x, 2, "(N, d)")
    _checks.check_floating("latents", x)
    _checks.check_nonempty("latents", x, 0, "set of samples")
    _checks.check_finite("latents", x)
    n, d = x.shape
    k = _checks.check_int("k", k, low=1, high=min(n, d))
    out_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32

    mean = torch.zeros(d, dtype=torch.float64, device=x.device)
    for s in range(0, n, _CHUNK_ROWS):
        mean += x[s:s + _CHUNK_ROWS].to(torch.float64).sum(0)
    mean /= n
    gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for s in range(0, n, _CHUNK_ROWS):
        xc = x[s:s + _CHUNK_ROWS].to(torch.float64) - mean
        gram += xc.T @ xc
    evals, comps = _top_eigh(gram, k)
    # rounding can leave tiny negative eigenvalues for a rank-deficient X_c: their variance is zero
    stdev = torch.sqrt(evals.clamp_min(0) / n)
    return GANSpaceDirections(comps.to(out_dtype), mean.to(out_dtype), stdev.to(out_dtype))


def sefa_directions(weight: Union[Tensor, np.ndarray, Sequence], k: int) -> SeFaDirections:
    """SeFa: top-k eigenvectors of A^T A for the modulation weight(s) A.

    weight: (out, in) weight of a style affine layer (``nn.Linear`` convention: style = A w + b), or a list /
    tuple of such weights with one common ``in``, or a stacked (L, out, in) tensor; several layers are
    concatenated along ``out`` (SeFa's multi-layer mode).  Every row of A (one output unit) is scaled to unit
    length first, as SeFa does, so a layer's overall weight scale (e.g. StyleGAN2's equalized-lr constant) does
    not matter.  k: 1 <= k <= in.
    Returns :class:`SeFaDirections` (directions (k, in), eigenvalues (k,)) in the weight's dtype (float32 for
    half precision).  SeFa itself calls ``np.linalg.eig`` and relies on its order; here the eigenvalues are
    sorted (decreasing) explicitly.  Raises ValueError/TypeError naming ``weight`` or ``k`` (a zero row cannot
    be normalised and is an error).
    """
    if isinstance(weight, (list, tuple)):
        if len(weight) == 0:
            raise ValueError("weight: expected at least one (out, in) weight, got an empty sequence")
        mats = [_checks.as_tensor(f"weight[{i}]", w) for i, w in enumerate(weight)]
        for i, w in enumerate(mats):
            _checks.check_ndim(f"weight[{i}]", w, 2, "(out, in)")
            _checks.check_floating(f"weight[{i}]", w)
            if w.shape[1] != mats[0].shape[1]:
                raise ValueError(f"weight[{i}]: expected in = {mats[0].shape[1]} like weight[0], got shape "
                                 f"{tuple(w.shape)}")
        _checks.check_same_device(**{f"weight{i}": w for i, w in enumerate(mats)})
        a = torch.cat([w.to(torch.float64) for w in mats], dim=0)
        in_dtype = mats[0].dtype
    else:
        w = _checks.as_tensor("weight", weight)
        _checks.check_ndim("weight", w, (2, 3), "(out, in) or (L, out, in)")
        _checks.check_floating("weight", w)
        a = w.to(torch.float64).reshape(-1, w.shape[-1])
        in_dtype = w.dtype
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"weight: expected a non-empty matrix, got {a.shape[0]} rows of width {a.shape[1]}")
    _checks.check_finite("weight", a)
    k = _checks.check_int("k", k, low=1, high=a.shape[1])
    norms = torch.linalg.vector_norm(a, dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError(f"weight: expected no all-zero rows (each output unit's row is normalised), got "
                         f"{int((norms == 0).sum())} zero rows")
    a = a / norms
    evals, dirs = _top_eigh(a.T @ a, k)
    out_dtype = torch.float64 if in_dtype == torch.float64 else torch.float32
    return SeFaDirections(dirs.to(out_dtype), evals.to(out_dtype))
