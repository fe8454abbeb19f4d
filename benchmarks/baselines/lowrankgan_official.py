"""LowRankGAN's Jacobian path, restated: the full image Jacobian by one backward pass per output element, then
an eigendecomposition of J^T J.

Follows zhujiapeng/LowRankGAN, ``compute_jacobian.py`` and ``compute_directions.py``:

* the function differentiated is the synthesis network fed one w tiled to every layer (``tf.tile`` of
  ``latent_w`` over ``num_layers``), its image resized to ``--image_size`` (256) when larger and averaged over
  RGB (``--fused_channel``, on by default);
* its Jacobian w.r.t. w is TensorFlow's ``parallel_for.gradients.jacobian(images_w, latent_w_ph,
  use_pfor=False)``: a ``while_loop`` taking the gradient of one output element per iteration, i.e. one
  backward pass per output pixel (:func:`jacobian_rows`, with ``torch.autograd.grad`` on a retained graph);
* directions: ``M = J^T J / n`` (``coef_f * Jaco_fore.T.dot(Jaco_fore)``) and its decomposition; without the
  region masks and the RobustPCA step the principal directions are the top eigenvectors of M
  (:func:`top_directions`, ``numpy.linalg.eigh``); singular values of J = sqrt(n * eigenvalues).

Deviations: PyTorch instead of TensorFlow, M formed in float64, no masks / RobustPCA, no image or .npy output; the function is
whatever callable the benchmark passes (the same one latentfast is timed on).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def jacobian_rows(f, w: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """Rows ``rows`` of the Jacobian of f (flattened) at one latent w (1, d_in): one backward pass per row."""
    w = w.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = f(w).reshape(-1)
        J = torch.empty(len(rows), w.shape[1], dtype=w.dtype)
        for i, j in enumerate(rows):
            J[i] = torch.autograd.grad(out[j], w, retain_graph=True)[0][0]
    return J


def jacobian(f, w: torch.Tensor) -> torch.Tensor:
    """The full (d_out, d_in) Jacobian at one latent w (1, d_in)."""
    with torch.no_grad():
        d_out = f(w).numel()
    return jacobian_rows(f, w, range(d_out))


def top_directions(J: torch.Tensor, k: int):
    """(V (d_in, k), singular values (k,)) from the eigendecomposition of M = J^T J / n, descending."""
    Jn = J.detach().cpu().numpy().astype(np.float64)
    n = Jn.shape[0]
    evals, evecs = np.linalg.eigh(Jn.T @ Jn / n)
    order = np.argsort(evals)[::-1][:k]
    return torch.from_numpy(evecs[:, order].copy()), torch.from_numpy(np.sqrt(np.clip(evals[order], 0, None) * n))
