"""The SFVQ curve's stages: the quartile start, the doubling schedule and growing a curve by twin vertices
(the recipe in :mod:`latentfast.sfvq.fit`)."""
from __future__ import annotations

from typing import List

import torch

from ._data import group_means
from .distributed import Comm

Tensor = torch.Tensor

#: fraction of a segment between a vertex and its new twin (the authors' codebook-extension eps)
TWIN_EPS = 0.01
#: the authors start every curve with this many vertices
START_VERTICES = 4


def stage_sizes(num_vertices: int) -> List[int]:
    """Vertex counts of the stages, e.g. 16 -> [4, 8, 16], 12 -> [4, 8, 12], 5 -> [4, 5], 3 -> [3]."""
    if num_vertices <= START_VERTICES:
        return [num_vertices]
    sizes = [START_VERTICES]
    while 2 * sizes[-1] < num_vertices:
        sizes.append(2 * sizes[-1])
    sizes.append(num_vertices)
    return sizes


def initial_vertices(latents: Tensor, num: int = START_VERTICES) -> Tensor:
    """Means of ``num`` equal groups of the latents sorted by norm: (num, D), in the latents' dtype.

    Each group has ``N // num`` rows; the last ``N % num`` rows of the sorted order are not used (as in the
    authors' initialisation).  Needs N >= num.  A stable sort makes ties in the norm deterministic; the sums
    run in float64.
    """
    n = latents.shape[0]
    if n < num:
        raise ValueError(f"latents: expected at least {num} rows to form the {num} starting vertices, got {n}")
    norms = torch.linalg.vector_norm(latents, dim=1)
    return group_means(norms, num, lambda: [(slice(0, n), latents)], latents.shape[1], Comm(None),
                       latents.device).to(latents.dtype)


def twin_positions(old: int, new: int, eps: float = TWIN_EPS) -> Tensor:
    """Fractional indices (float64, (new,)) of the grown curve's vertices on the old curve of ``old`` vertices.

    ``old < new <= 2 * old``.  With ``new == 2 * old`` every vertex is twinned (the authors' doubling);
    otherwise ``new - old`` vertices spread evenly along the curve are.  A twin of vertex i sits at i + eps in
    the first half of the curve (i < old // 2) and at i - eps in the second half, so the positions are
    strictly increasing and every grown vertex lies on the old curve.
    """
    if not old < new <= 2 * old:
        raise ValueError(f"new: expected {old} < new <= {2 * old} when growing a curve of {old} vertices, got {new}")
    r = new - old
    twinned = set(int((k + 0.5) * old / r) for k in range(r))
    pos: List[float] = []
    for i in range(old):
        if i in twinned and i < old // 2:
            pos += [float(i), i + eps]
        elif i in twinned:
            pos += [i - eps, float(i)]
        else:
            pos.append(float(i))
    return torch.tensor(pos, dtype=torch.float64)


def decode_on(vertices: Tensor, fractional_index: Tensor) -> Tensor:
    """Points at fractional positions of a polyline: c_f + (s - f) (c_{f+1} - c_f), f = clamp(floor(s), 0, M-2).

    vertices (M, D) with M >= 2; fractional_index (...) real; returns (..., D) in the vertices' dtype.
    Differentiable in ``vertices``.  No range check here (see :meth:`SFVQ.decode`).
    """
    m = vertices.shape[0]
    s = fractional_index.to(device=vertices.device)
    f = torch.floor(s).clamp(0, m - 2).to(torch.int64)
    frac = (s - f).to(vertices.dtype).unsqueeze(-1)
    a = vertices[f]
    return a + frac * (vertices[f + 1] - a)


def grow(vertices: Tensor, new: int, eps: float = TWIN_EPS) -> Tensor:
    """The curve with ``new`` vertices that traces ``vertices`` (see :func:`twin_positions`)."""
    pos = twin_positions(vertices.shape[0], new, eps)
    # fractional index in float64 so i + eps is exact enough; the interpolation itself runs in the curve's dtype
    return decode_on(vertices, pos)
