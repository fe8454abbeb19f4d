"""Traversals: straight lines, the paper's iterative curve traversal, and W+ layer edits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Union

import torch

from .. import _checks
from .basis import local_basis

Tensor = torch.Tensor


def traverse_linear(w, direction, alphas) -> Tensor:
    """Points ``w + alpha * direction`` for every alpha.

    w: (..., d); direction: (d,) or broadcastable to w; alphas: (A,) or a sequence of floats.
    Returns (..., A, d).
    """
    w = _checks.check_floating("w", _checks.as_tensor("w", w))
    direction = _checks.check_floating("direction", _checks.as_tensor("direction", direction)).to(w)
    alphas = torch.as_tensor(alphas, dtype=w.dtype, device=w.device)
    if alphas.dim() != 1:
        raise ValueError(f"alphas: expected a 1-D sequence of step sizes, got shape {tuple(alphas.shape)}")
    if w.dim() == 0 or direction.dim() == 0 or direction.shape[-1] != w.shape[-1]:
        raise ValueError(f"direction: expected last dim {w.shape[-1] if w.dim() else '?'} to match w {tuple(w.shape)}, "
                         f"got shape {tuple(direction.shape)}")
    return w.unsqueeze(-2) + alphas[:, None] * direction.unsqueeze(-2)


def apply_to_layers(ws, direction, layers: Union[int, slice, range, Iterable[int]], alpha) -> Tensor:
    """Edit a W+ tensor on some layers: ``ws[:, l] + alpha * direction`` for l in ``layers``, others unchanged.

    ws: (B, num_ws, d); direction: (d,) or (B, d); alpha: float or (B,).  ``layers``: an int, a slice/range
    (end exclusive, as the Local Basis code's layer_start/layer_end), or an explicit list of layer indices (the
    SFVQ authors' inclusive ranges "W2-W4" are ``range(2, 5)``).  Returns a new tensor.
    """
    ws = _checks.check_floating("ws", _checks.as_tensor("ws", ws))
    _checks.check_ndim("ws", ws, 3, "(B, num_ws, d)")
    B, num_ws, d = ws.shape
    direction = _checks.as_tensor("direction", direction).to(ws)
    if direction.shape not in ((d,), (B, d)):
        raise ValueError(f"direction: expected shape ({d},) or ({B}, {d}), got {tuple(direction.shape)}")
    if isinstance(layers, int):
        layers = [layers]
    elif isinstance(layers, slice):
        layers = range(num_ws)[layers]
    layers = list(layers)
    bad = [l for l in layers if not isinstance(l, int) or not -num_ws <= l < num_ws]
    if bad or not layers:
        raise ValueError(f"layers: expected non-empty layer indices in [0, {num_ws}), got {layers!r}")
    alpha = torch.as_tensor(alpha, dtype=ws.dtype, device=ws.device)
    if alpha.dim() > 1 or (alpha.dim() == 1 and alpha.shape[0] != B):
        raise ValueError(f"alpha: expected a scalar or shape ({B},), got shape {tuple(alpha.shape)}")
    delta = (alpha.reshape(-1, 1) * direction.reshape(-1, d)).expand(B, d)
    mask = torch.zeros(num_ws, dtype=ws.dtype, device=ws.device)
    mask[layers] = 1.0
    return ws + mask[None, :, None] * delta[:, None, :]


@dataclass
class IterativeTraversal:
    """Paths of :func:`traverse_iterative` for B latents, S = 2 * num_steps + 1 points, centre at num_steps.

    inputs:  (B, S, d_in) latents z along the curve (negative side first)
    outputs: (B, S, d_out) f(z) at each of them
    indices: (B, S) int64, which local-basis direction was followed into each point (the start's own index
             at the centre)
    """

    inputs: Tensor
    outputs: Tensor
    indices: Tensor


def traverse_iterative(f, z, index: int, *, num_steps: int, step: float, scale_by_singular_value: bool = True,
                       k: Optional[int] = None, method: str = "auto", **basis_kwargs) -> IterativeTraversal:
    """The paper's iterative curve traversal along the ``index``-th local direction, both ways.

    Each step moves in the input space along v(z) (by ``step / s`` when ``scale_by_singular_value``, so that
    the output moves by about ``step``), maps back through f, recomputes the local basis there (top ``k``
    directions, default all), follows the direction whose u best matches the previous u by |cos|, and flips
    its sign to keep the orientation.  Both signs are stepped together, batched with the B latents.
    z: (B, d_in) or (d_in,).  Returns :class:`IterativeTraversal` (batch dim dropped for a single latent).
    """
    num_steps = _checks.check_int("num_steps", num_steps, low=1)
    index = _checks.check_int("index", index, low=0)
    step = float(step)
    z = _checks.check_floating("z", _checks.as_tensor("z", z))
    _checks.check_ndim("z", z, (1, 2), "(B, d_in) or (d_in,)")
    single = z.dim() == 1
    z = z.reshape(-1, z.shape[-1])
    B = z.shape[0]
    if k is not None and index >= k:
        raise ValueError(f"index: expected index < k = {k}, got {index}")

    start = local_basis(f, z, k, method, **basis_kwargs)
    if index >= start.k:
        raise ValueError(f"index: expected index < {start.k} (the number of local directions), got {index}")
    sign = torch.cat([torch.ones(B), -torch.ones(B)]).to(z)[:, None]  # (2B, 1): + side then - side
    cur_z = z.repeat(2, 1)
    cur_u = start.basis[:, :, index].repeat(2, 1)
    cur_v = start.input_basis[:, :, index].repeat(2, 1) * sign
    cur_s = start.singular_values[:, index].repeat(2)
    ins, outs, idxs = [], [], []
    for _ in range(num_steps):
        delta = step / cur_s if scale_by_singular_value else torch.full_like(cur_s, step)
        cur_z = cur_z + delta[:, None] * cur_v
        lb = local_basis(f, cur_z, k, method, **basis_kwargs)
        cos = torch.einsum("bdk,bd->bk", lb.basis, cur_u)
        j = cos.abs().argmax(dim=1)
        orient = torch.sign(cos.gather(1, j[:, None])).squeeze(1)
        orient = torch.where(orient == 0, torch.ones_like(orient), orient)
        rows = torch.arange(2 * B, device=z.device)
        cur_u = lb.basis[rows, :, j] * orient[:, None]
        cur_v = lb.input_basis[rows, :, j] * orient[:, None] * sign
        cur_s = lb.singular_values[rows, j]
        ins.append(cur_z)
        outs.append(lb.points)
        idxs.append(j)
    ins, outs, idxs = torch.stack(ins, 1), torch.stack(outs, 1), torch.stack(idxs, 1)  # (2B, S', .)
    centre_idx = torch.full((B, 1), index, dtype=torch.int64, device=z.device)
    inputs = torch.cat([ins[B:].flip(1), z[:, None], ins[:B]], 1)
    outputs = torch.cat([outs[B:].flip(1), start.points[:, None], outs[:B]], 1)
    indices = torch.cat([idxs[B:].flip(1), centre_idx, idxs[:B]], 1)
    if single:
        inputs, outputs, indices = inputs[0], outputs[0], indices[0]
    return IterativeTraversal(inputs, outputs, indices)
