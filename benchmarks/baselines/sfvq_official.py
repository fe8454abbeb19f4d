"""The SFVQ authors' inference and training step, restated.

Follows MHVali/Space-Filling-Vector-Quantizer:

* :func:`evaluation` follows ``SpaceFillingVQ.evaluation`` (spacefilling_vq.py): squared distances to every
  vertex by broadcasting ``(x[:, :, None] - C^T[None]).square().sum(1)`` (an N x D x M temporary), nearest
  vertex clamped to [1, M-2], projections onto the two segments next to it (clamped to [0, 1]), the closer of
  the two, and the projection onto it.  :func:`evaluation_batched` runs it in batches of 64 points, as the
  evaluation loop at the end of train.py does (``eval_batch_size = 64``).
  Deviation: the chosen segment index and t are returned alongside the quantized points (the original returns
  only the quantized points) so that the answer can be checked against a float64 brute force.
* :func:`train_step` follows ``SpaceFillingVQ.forward`` and the batch loop of train.py: one uniform dither per
  segment, the dithered codebook by ``decode`` (floor/clamp/interpolate), broadcast squared distances to it,
  argmin, the quantized batch by ``decode`` of the integer indices on the dithered codebook, the one-hot
  perplexity, ``F.mse_loss``, backward, Adam step, ``loss.item()`` and the numpy usage counters.
  Deviations: ``lam`` may be given (so that latentfast and this step see the same dither in the agreement
  check); for batches above 64 rows the broadcast distance is evaluated 64 rows at a time (the same
  arithmetic; the single N x D x M temporary of a 4096-row batch would need ~17 GB here).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

EVAL_BATCH = 64


def _broadcast_sq_dist(x: torch.Tensor, codebook: torch.Tensor, rows: int = EVAL_BATCH) -> torch.Tensor:
    out = []
    for s in range(0, x.shape[0], rows):
        xb = x[s:s + rows]
        out.append((xb.unsqueeze(-1) - codebook.t().unsqueeze(0)).square().sum(dim=1))
    return torch.cat(out)


def evaluation(codebook: torch.Tensor, x: torch.Tensor):
    """(segment index (N,), t (N,), quantized (N, D)) by the authors' two-neighbour rule."""
    cb = codebook.detach().clone()
    entries = cb.shape[0]
    distance = (x.unsqueeze(-1) - cb.t().unsqueeze(0)).square().sum(dim=1)
    i = distance.argmin(dim=1).clamp(min=1, max=entries - 2)
    cm, cc, cp = cb[i - 1], cb[i], cb[i + 1]
    tm = (((cc - cm) * (x - cm)).sum(1) / (cc - cm).square().sum(1)).unsqueeze(-1).clamp(0.0, 1.0)
    tp = (((cp - cc) * (x - cc)).sum(1) / (cp - cc).square().sum(1)).unsqueeze(-1).clamp(0.0, 1.0)
    dm = (x - ((1 - tm) * cm + tm * cc)).square().sum(1)
    dp = (x - ((1 - tp) * cc + tp * cp)).square().sum(1)
    offset = (dp < dm).to(torch.int64) - 1
    seg = i + offset
    c0, c1 = cb[seg], cb[seg + 1]
    t = (((c1 - c0) * (x - c0)).sum(1) / (c1 - c0).square().sum(1)).clamp(0.0, 1.0)
    return seg, t, c0 + t.reshape(-1, 1) * (c1 - c0)


def evaluation_batched(codebook: torch.Tensor, x: torch.Tensor, batch: int = EVAL_BATCH):
    """train.py's evaluation loop: :func:`evaluation` on consecutive batches of ``batch`` points."""
    segs, ts, qs = [], [], []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            seg, t, q = evaluation(codebook, x[s:s + batch])
            segs.append(seg), ts.append(t), qs.append(q)
    return torch.cat(segs), torch.cat(ts), torch.cat(qs)


def _decode(fractional_index: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    entries = codebook.shape[0]
    integer_index = torch.floor(fractional_index).clamp(min=0, max=entries - 2).to(torch.int64)
    rem = (fractional_index - integer_index).unsqueeze(-1)
    return (1 - rem) * codebook[integer_index] + rem * codebook[integer_index + 1]


class Trainer:
    """The authors' model state for one stage: codebook parameter (M, D), Adam, usage counters."""

    def __init__(self, vertices: torch.Tensor, lr: float = 1e-3):
        self.codebook = torch.nn.Parameter(vertices.detach().clone())
        self.entries = vertices.shape[0]
        self.optimizer = torch.optim.Adam([self.codebook], lr=lr)
        self.used = np.zeros((self.entries,))

    def step(self, x: torch.Tensor, lam: torch.Tensor | None = None) -> float:
        entries, dev = self.entries, self.codebook.device
        self.optimizer.zero_grad()
        current = self.codebook[0:entries]
        dither = torch.rand(entries - 1, device=dev) if lam is None else lam
        fractional_index = dither + torch.linspace(0, entries - 2, entries - 1, device=dev)
        dithered = _decode(fractional_index, current)
        distance = _broadcast_sq_dist(x, dithered)
        integer_index = distance.argmin(dim=1)
        quantized = _decode(integer_index.to(torch.float), dithered)
        encodings = F.one_hot(integer_index, entries).float()
        avg_probs = torch.mean(encodings, dim=0)
        perplexity = torch.exp(-torch.sum(avg_probs * torch.log(avg_probs + 1e-10)))  # noqa: F841 (logged there)
        selected = integer_index.cpu().numpy()
        loss = F.mse_loss(x, quantized)
        loss.backward()
        self.optimizer.step()
        self.used[selected] += 1
        self.used[selected + 1] += 1
        return loss.item()


def _extend(codebook: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """The authors' codebook extension (doubling): every vertex gets a twin eps of the way along a neighbouring
    segment, toward the next vertex in the first half of the curve and toward the previous one in the second."""
    c = codebook.detach()
    m = c.shape[0]
    rows = []
    for i in range(m):
        if i < m // 2:
            rows += [c[i], c[i] + eps * (c[i + 1] - c[i])]
        else:
            rows += [c[i] - eps * (c[i] - c[i - 1]), c[i]]
    return torch.stack(rows)


def train_recipe(latents: torch.Tensor, num_vertices: int, epochs: int = 1, batch: int = 64, lr: float = 1e-3):
    """train.py's whole loop: quartile-mean start (4 vertices), doubling stages up to ``num_vertices`` (a power
    of two), a fresh Adam and MultiStepLR(milestones=[int(.6 E), int(.8 E)], gamma=.5) per stage, ``epochs``
    epochs of :meth:`Trainer.step` over the latents in order (remainder batch dropped).  Returns the codebook."""
    n = latents.shape[0]
    order = torch.sort(torch.linalg.vector_norm(latents, dim=1), stable=True).indices
    hop = n // 4
    codebook = latents[order[: 4 * hop]].reshape(4, hop, -1).mean(dim=1)
    while True:
        tr = Trainer(codebook, lr=lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(tr.optimizer, milestones=[int(epochs * .6), int(epochs * .8)],
                                                     gamma=0.5)
        for _ in range(epochs):
            for b in range(n // batch):
                tr.step(latents[b * batch:(b + 1) * batch])
            sched.step()
        codebook = tr.codebook.detach()
        if codebook.shape[0] >= num_vertices:
            return codebook
        codebook = _extend(codebook)
