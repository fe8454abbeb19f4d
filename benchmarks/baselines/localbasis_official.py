"""The Local Basis authors' path, restated: one latent at a time, dense Jacobian by autograd, SVD on the CPU.

Follows isno0907/localbasis, ``notebooks/localbasis_utils.py``:

* :func:`local_basis_one` follows ``get_random_local_basis``: the latent goes through the mapping network once
  (the returned w), then is repeated d_out times, pushed through the network again and differentiated with ONE
  ``torch.autograd.grad`` call whose ``grad_outputs`` is the d_out x d_out identity (row i of the result is
  row i of the Jacobian); the Jacobian is moved to the CPU and decomposed with ``torch.svd`` (full, all
  singular values).
* :func:`iterative_traversal` follows ``get_iter_trvs_latent`` with ``compare_basis=True``: per step and per
  side, move the latent along the followed input direction v (by ``2 sigma / (s num_steps)`` with
  ``scale=True``), recompute the whole basis there with :func:`local_basis_one`, follow the direction whose u
  has the largest |cos| with the previous u, and flip the new V when its followed column points against the
  previous one.  ``num_steps // 2`` steps per side.

Deviations: no random-state bookkeeping, the visited points are kept for every step (the original keeps a
subset of frames), no image synthesis and none of the ``verbose`` diagnostics.  The network is whatever
callable the benchmark passes (the same StyleGAN2-shaped mapping network latentfast is timed on).
"""
from __future__ import annotations

import torch


def local_basis_one(mapping, z: torch.Tensor):
    """z (1, d_in) -> (w (1, d_out), U (d_out, d_out|d_in), S, V) as in get_random_local_basis."""
    noise = z.detach().float().clone().requires_grad_(True)
    w = mapping(noise)
    d_out = w.shape[1]
    noise_pad = noise.detach().repeat(d_out, 1).requires_grad_(True)
    w_pad = mapping(noise_pad)
    grad_output = torch.eye(d_out, device=z.device)
    jacobian = torch.autograd.grad(w_pad, noise_pad, grad_outputs=grad_output, retain_graph=True)[0].cpu()
    U, S, V = torch.svd(jacobian)
    return w.detach(), U.detach(), S.detach(), V.detach()


def local_bases(mapping, z: torch.Tensor):
    """The authors' loop over a batch: one :func:`local_basis_one` per latent.  Returns lists."""
    return [local_basis_one(mapping, z[i:i + 1]) for i in range(z.shape[0])]


def iterative_traversal(mapping, z: torch.Tensor, index: int, sigma: float, num_steps: int, scale: bool = True):
    """One latent z (1, d_in), direction ``index``; ``num_steps // 2`` steps per side.

    Returns (pos_w, neg_w): lists of the (1, d_out) points visited on each side, in order.
    """
    with torch.enable_grad():
        w0, U0, S0, V0 = local_basis_one(mapping, z)
        sides = []
        for sgn in (1.0, -1.0):
            noise = z.detach().cpu().clone()
            U, S, V, idx = U0, S0, V0, index
            visited = []
            for _ in range(num_steps // 2):
                u_prev, v_prev_col = U[:, idx], V[:, idx]
                amount = 2 * (sigma / S[idx]) / num_steps if scale else 2 * sigma / num_steps
                noise = (noise + sgn * V[:, idx].unsqueeze(0) * amount).clone().detach()
                w, U, S, V = local_basis_one(mapping, noise.to(z.device))
                sim = (u_prev.unsqueeze(0) @ U).abs()[0]  # compare_basis_componentwise
                idx = int(torch.argmax(sim))  # get_topN_idx_sorted(top_n=1)
                if torch.dot(v_prev_col, V[:, idx]) < 0:
                    V = -V
                visited.append(w)
            sides.append(visited)
    return sides[0], sides[1]
