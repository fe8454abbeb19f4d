"""The SFVQ training recipe (Vali & Bäckström): quartile start, doubling stages, dithered nearest-point training.

Recipe, as the authors run it (their defaults are ours):

* **Start.** Sort the latents by Euclidean norm, cut the sorted list into 4 equal groups (``N // 4`` rows each;
  the last ``N % 4`` rows of the sorted list are left out, as in the authors' code) and take the group means as
  the first 4 vertices.  The curve therefore starts near the smallest latents and ends near the largest.
* **Stages.** 4 -> 8 -> 16 -> ... vertices.  Growing keeps the curve: every old vertex i stays and gets a twin
  on its own curve, 1 % (``twin_eps``) of the way along a neighbouring segment; in the first half of the curve
  the twin goes toward the next vertex (fractional index i + eps), in the second half toward the previous one
  (i - eps).  Right after growing, the new curve is the old one with extra (almost coincident) vertices.
* **Training step.** One lambda ~ U[0, 1) per segment, shared by the whole batch, gives one "dithered" point per
  segment, ``c_j + lambda_j (c_{j+1} - c_j)``; every latent is assigned to its nearest dithered point (no
  projection onto segments during training), the quantized value is that dithered point (differentiable in the
  vertices), and the loss is the mean squared error over all N x D entries.  Adam, a fresh optimizer per stage,
  learning rate halved at 60 % and 80 % of the stage's epochs (``MultiStepLR(milestones=[int(.6 E), int(.8 E)],
  gamma=.5)`` stepped once per epoch), batch 64, 5 epochs per stage; the remainder batch (N mod batch_size rows)
  is dropped, as in the authors' loop, and latents are visited in their given order unless ``shuffle=True``.

Choices where the authors' code has none:

* ``num_vertices`` that is not a power of two: stages double while doubling stays below ``num_vertices``; the
  last stage grows from the power of two P below it to exactly ``num_vertices`` by twinning only
  ``num_vertices - P`` of the P vertices, spread evenly along the curve (vertex ``floor((k + 0.5) P / r)`` for
  k < r twins), each twin placed by the same half-of-the-curve rule.  A power of two gives exactly the
  authors' schedule.  ``num_vertices`` of 2 or 3 starts from 2 or 3 norm-quantile means and has one stage.
* Fewer latents than ``batch_size``: one batch of all of them per epoch (the authors' loop would train on none).

Memory: the nearest dithered point comes from :func:`latentfast.nearest_point` (chunked, exact); nothing of
size N x D x M is ever allocated.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch

from .. import _checks
from ..ops.segment_assign import nearest_point, segment_assign
from . import _fast_step

Tensor = torch.Tensor

#: fraction of a segment between a vertex and its new twin (the authors' codebook-extension eps)
TWIN_EPS = 0.01
#: the authors start every curve with this many vertices
START_VERTICES = 4


@dataclass
class SFVQStageLog:
    """One stage of :func:`fit_sfvq`.

    num_vertices:      M of this stage
    loss:              per epoch, mean over batches of the batch MSE (mean over the batch's N_b x D entries)
    perplexity:        per epoch, mean over batches of exp(entropy) of the batch's segment usage (the authors'
                       logged metric; at most M - 1)
    segment_counts:    (M - 1,) int64, how often each segment's dithered point was chosen over the whole stage
    vertex_counts:     (M,) int64, the authors' vertex usage: a choice of segment j counts for vertices j and j+1
    initial_vertices:  (M, D) the curve right after growing (before this stage's first step), on the CPU
    final_vertices:    (M, D) the curve at the end of the stage, on the CPU
    """

    num_vertices: int
    loss: List[float] = field(default_factory=list)
    perplexity: List[float] = field(default_factory=list)
    segment_counts: Optional[Tensor] = None
    vertex_counts: Optional[Tensor] = None
    initial_vertices: Optional[Tensor] = None
    final_vertices: Optional[Tensor] = None


@dataclass
class SFVQTrainingLog:
    """What :meth:`SFVQ.fit` did: one :class:`SFVQStageLog` per stage, plus the final curve's exact quality.

    mean_distance_sq: mean over all latents of the squared distance to the final curve (exact nearest point on
                      any segment, via :func:`latentfast.segment_assign`); divide by D for a per-entry MSE
    seconds:          wall-clock training time
    """

    stages: List[SFVQStageLog] = field(default_factory=list)
    mean_distance_sq: float = float("nan")
    batch_size: int = 0
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        """Last epoch's training loss of the last stage (dithered MSE per entry)."""
        return self.stages[-1].loss[-1]

    @property
    def final_perplexity(self) -> float:
        """Last epoch's perplexity of the last stage."""
        return self.stages[-1].perplexity[-1]

    @property
    def vertex_counts(self) -> Tensor:
        """(M,) vertex usage of the last stage."""
        return self.stages[-1].vertex_counts


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
    authors' initialisation).  Needs N >= num.  A stable sort makes ties in the norm deterministic.
    """
    n = latents.shape[0]
    if n < num:
        raise ValueError(f"latents: expected at least {num} rows to form the {num} starting vertices, got {n}")
    order = torch.sort(torch.linalg.vector_norm(latents, dim=1), stable=True).indices
    hop = n // num
    groups = latents[order[: hop * num]].reshape(num, hop, latents.shape[1])
    return groups.mean(dim=1)


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


def _lr_at_epoch(lr: float, epoch: int, epochs: int) -> float:
    """The learning rate of ``MultiStepLR(milestones=[int(0.6 E), int(0.8 E)], gamma=0.5)`` stepped per epoch.

    Equal milestones count twice and a milestone of 0 already applies to the first epoch, both as in
    MultiStepLR (with 1 epoch per stage the authors' scheduler therefore trains at lr / 4).
    """
    milestones = [int(epochs * 0.6), int(epochs * 0.8)]
    drops = sum(1 for m in milestones if m <= epoch)
    return lr * 0.5 ** drops


def _perplexity(counts: Tensor) -> Tensor:
    p = counts.to(torch.float64) / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p + 1e-10)).sum())


def _draw_uniform(n: int, generator: Optional[torch.Generator], device, dtype) -> Tensor:
    if generator is None:
        return torch.rand(n, device=device, dtype=dtype)
    # drawn on the generator's own device, so a CPU generator also drives CUDA training reproducibly
    return torch.rand(n, generator=generator, device=generator.device, dtype=dtype).to(device)


def _draw_permutation(n: int, generator: Optional[torch.Generator], device) -> Tensor:
    if generator is None:
        return torch.randperm(n, device=device)
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def train_step(vertices: Tensor, optimizer: torch.optim.Optimizer, x: Tensor, lam: Tensor, *,
               chunk_size: Optional[int] = None, backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """One SFVQ training step (the body of :func:`fit_sfvq`'s batch loop; also timed by benchmarks/).

    vertices (M, D) leaf tensor optimised by ``optimizer``; x (B, D) batch; lam (M - 1,) dither in [0, 1).
    Dithered points c_j + lam_j (c_{j+1} - c_j), nearest one per row of x (``nearest_point`` with ``backend``),
    MSE to it, backward, optimizer step.  Returns (loss (detached scalar), idx (B,) int64 segment indices).

    On CPU with the native extension, for the optimizer fit_sfvq makes (``torch.optim.Adam(fused=True)`` over
    the vertices alone), backend "auto"/"native", no chunk_size and no torch.distributed process group, the
    whole step runs in one native call (latentfast/sfvq/_fast_step.py): the same assignments and Adam
    arithmetic, the loss summed in float64, and ``vertices.grad`` left None (no dense gradient is formed).
    Otherwise: autograd, with the dense vertex gradient in ``vertices.grad`` before ``optimizer.step()``.
    """
    if chunk_size is None and not _fast_step.fast_step_why_not(vertices, optimizer, x, lam, backend):
        return _fast_step.fast_step(vertices, optimizer, x, lam)
    # decode(j + lambda_j): floor is j itself because 0 <= lambda < 1
    a = vertices[:-1]
    dithered = a + lam.unsqueeze(1) * (vertices[1:] - a)
    with torch.no_grad():
        idx = nearest_point(x, dithered.detach(), chunk_size=chunk_size, backend=backend).index
    loss = torch.nn.functional.mse_loss(dithered[idx], x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), idx


def _adam(vertices: Tensor, lr: float) -> torch.optim.Optimizer:
    """Adam as the authors use it; the fused implementation (one pass over the parameters instead of about ten,
    measured 27 -> 19 ms per step at M = 1024, batch 64 on one CPU thread) where this torch and device have it."""
    try:
        return torch.optim.Adam([vertices], lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam([vertices], lr=lr)


def validate_latents(latents, dim: Optional[int] = None) -> Tensor:
    """(N, D) finite floating tensor with N >= 1 (and D == dim when given); float16/bfloat16 become float32."""
    latents = _checks.as_tensor("latents", latents)
    _checks.check_ndim("latents", latents, 2, "(N, D)")
    _checks.check_floating("latents", latents)
    _checks.check_nonempty("latents", latents, 0, "set of latents")
    if dim is not None and latents.shape[1] != dim:
        raise ValueError(f"latents: expected width D = {dim} (the model's dim), got shape {tuple(latents.shape)}")
    _checks.check_finite("latents", latents)
    if latents.dtype in (torch.float16, torch.bfloat16):
        latents = latents.float()
    # training must not push gradients into a caller's tensor that happens to require them
    return latents.detach()


def fit_sfvq(
    latents,
    num_vertices: int,
    *,
    epochs_per_stage: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    shuffle: bool = False,
    progress: bool = True,
    generator: Optional[torch.Generator] = None,
    twin_eps: float = TWIN_EPS,
    chunk_size: Optional[int] = None,
):
    """Train an SFVQ curve of ``num_vertices`` vertices on ``latents`` (N, D); see the module docstring.

    Returns ``(vertices, log)``: vertices (num_vertices, D) detached, on the latents' device, in their dtype
    (float32 for float16/bfloat16 input), and an :class:`SFVQTrainingLog`.  Randomness (the dither, and the
    epoch permutation when ``shuffle``) comes only from ``generator`` when given, so a generator seeded the
    same way gives bitwise the same curve on the same machine and backend.
    Raises ValueError/TypeError naming the argument for bad shapes, NaN/Inf, too few latents (N < 4, or
    N < num_vertices when num_vertices < 4), bad counts or a generator that is not a ``torch.Generator``.
    """
    num_vertices = _checks.check_int("num_vertices", num_vertices, low=2)
    epochs = _checks.check_int("epochs_per_stage", epochs_per_stage, low=1)
    batch_size = _checks.check_int("batch_size", batch_size, low=1)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr: expected a finite positive number, got {lr!r}")
    if isinstance(twin_eps, bool) or not isinstance(twin_eps, (int, float)) or not 0 < twin_eps < 0.5:
        raise ValueError(f"twin_eps: expected a number in (0, 0.5), got {twin_eps!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got an object of type "
                        f"{type(generator).__name__}")
    latents = validate_latents(latents)
    device, dtype = latents.device, latents.dtype
    n = latents.shape[0]

    sizes = stage_sizes(num_vertices)
    log = SFVQTrainingLog(batch_size=min(batch_size, n))
    start = time.perf_counter()
    bsz = min(batch_size, n)
    num_batches = n // bsz  # remainder dropped, as in the authors' loop
    curve = initial_vertices(latents, sizes[0])

    for stage_no, m in enumerate(sizes):
        if m != curve.shape[0]:
            curve = grow(curve, m, twin_eps)
        stage = SFVQStageLog(num_vertices=m, initial_vertices=curve.detach().cpu().clone())
        vertices = curve.detach().clone().requires_grad_(True)
        optimizer = _adam(vertices, lr)
        seg_counts = torch.zeros(m - 1, dtype=torch.int64, device=device)
        for epoch in range(epochs):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at_epoch(lr, epoch, epochs)
            order = _draw_permutation(n, generator, device) if shuffle else None
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            perp_sum = torch.zeros((), dtype=torch.float64, device=device)
            for b in range(num_batches):
                rows = slice(b * bsz, (b + 1) * bsz)
                x = latents[order[rows]] if order is not None else latents[rows]
                lam = _draw_uniform(m - 1, generator, device, dtype)
                loss, idx = train_step(vertices, optimizer, x, lam, chunk_size=chunk_size)
                with torch.no_grad():
                    counts = torch.bincount(idx, minlength=m - 1)
                    seg_counts += counts
                    loss_sum += loss.detach().to(torch.float64)
                    perp_sum += _perplexity(counts)
            stage.loss.append(float(loss_sum) / num_batches)
            stage.perplexity.append(float(perp_sum) / num_batches)
            if progress:
                print(f"sfvq: stage {stage_no + 1}/{len(sizes)} (M={m}) epoch {epoch + 1}/{epochs} "
                      f"loss {stage.loss[-1]:.6g} perplexity {stage.perplexity[-1]:.4g}", file=sys.stderr, flush=True)
        curve = vertices.detach()
        seg = seg_counts.cpu()
        stage.segment_counts = seg
        stage.vertex_counts = torch.cat([seg, seg.new_zeros(1)]) + torch.cat([seg.new_zeros(1), seg])
        stage.final_vertices = curve.cpu().clone()
        log.stages.append(stage)

    log.seconds = time.perf_counter() - start
    with torch.no_grad():
        log.mean_distance_sq = float(segment_assign(latents, curve, chunk_size=chunk_size).distance_sq
                                     .to(torch.float64).mean())
    return curve, log
