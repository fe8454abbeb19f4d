"""What a fit records: per-stage losses, perplexities and usage counts (:class:`SFVQStageLog`), the whole fit's
log (:class:`SFVQTrainingLog`, saved in curve files and checkpoints), and the per-batch tally the training loop
folds into them."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import List, Optional, Tuple

import torch

from ..ops.small_linalg._threads import single_threaded

Tensor = torch.Tensor


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

    def to_dict(self) -> dict:
        """Plain containers and tensors (what SFVQ files and checkpoints hold)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "SFVQStageLog":
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass
class SFVQTrainingLog:
    """What :meth:`SFVQ.fit` did: one :class:`SFVQStageLog` per stage, plus the final curve's exact quality.

    mean_distance_sq: mean over all latents of the squared distance to the final curve (exact nearest point on
                      any segment, via :func:`latentfast.segment_assign`); divide by D for a per-entry MSE
    seconds:          wall-clock training time (summed over resumed runs)
    init:             "data" or "randn" (the start)
    scale_log2:       s: the fit ran on latents * 2^s (0 unless their magnitude is extreme; see the module doc)
    world_size:       processes of the (last) run; rows_per_rank: rows of each global batch per rank
    runs:             one dict per run (the first, then each resume): world_size, rows_per_rank, first_step,
                      steps — so a file shows how its curve was made
    """

    stages: List[SFVQStageLog] = field(default_factory=list)
    mean_distance_sq: float = float("nan")
    batch_size: int = 0
    seconds: float = 0.0
    init: str = "data"
    scale_log2: int = 0
    world_size: int = 1
    rows_per_rank: List[int] = field(default_factory=list)
    runs: List[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain containers and tensors (what SFVQ files and checkpoints hold)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["stages"] = [s.to_dict() for s in self.stages]
        d["runs"] = [dict(r) for r in self.runs]
        d["rows_per_rank"] = list(self.rows_per_rank)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SFVQTrainingLog":
        kw = {f.name: d[f.name] for f in fields(cls)}
        kw["stages"] = [SFVQStageLog.from_dict(s) for s in d["stages"]]
        kw["runs"] = [dict(r) for r in d["runs"]]
        kw["rows_per_rank"] = list(d["rows_per_rank"])
        return cls(**kw)

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


def _perplexity(counts: Tensor) -> Tensor:
    p = counts.to(torch.float64) / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p + 1e-10)).sum())


#: torch splits a unary float op (its VML kernel) across threads from this many elements on
_TORCH_UNARY_GRAIN = 2048


def _perplexities(counts: Tensor) -> List[float]:
    """[float(_perplexity(c)) for c in counts] for (k, S) counts, bit for bit, in a few whole-block ops.

    The division, addition and product of :func:`_perplexity` are IEEE-exact elementwise; the log runs on a
    padded block whose rows start 64-byte aligned like a fresh tensor, on one thread, so torch calls its log
    kernel once per row of S elements, as on one row; the sum and the exp run per row as in
    :func:`_perplexity`.  Rows long enough for torch to thread the log (S >= _TORCH_UNARY_GRAIN) and non-CPU
    counts take :func:`_perplexity` row by row.
    """
    k, s = counts.shape
    if counts.device.type != "cpu" or s >= _TORCH_UNARY_GRAIN:
        return [float(_perplexity(c)) for c in counts]
    pad = -(-s // 8) * 8  # 8 float64 = 64 bytes
    block = torch.zeros(2, k, pad, dtype=torch.float64)
    p, q = block[0, :, :s], block[1, :, :s]
    with single_threaded(block):
        torch.div(counts.to(torch.float64), counts.sum(1, keepdim=True).clamp_min(1), out=p)
        torch.add(p, 1e-10, out=q)
        torch.log(q, out=q)
        torch.mul(p, q, out=q)
    return [float(torch.exp(-q[r].sum())) for r in range(k)]


class _Tally:
    """The running epoch's per-batch loss, perplexity and segment counts, kept per step (no device round trip,
    no small ops) and folded into the epoch's sums, in batch order, by :meth:`flush` — before every checkpoint
    and at every epoch end, so sums, counts and checkpoints are those of a per-step update."""

    #: batches held before the loop folds them in (bounds the memory of a long epoch)
    LIMIT = 1024

    def __init__(self, segments: int):
        self.segments = segments
        self.losses: List[Tensor] = []
        self.idx: List[Tensor] = []
        self.counts: List[Tensor] = []

    def add(self, loss: Tensor, idx: Optional[Tensor] = None, counts: Optional[Tensor] = None) -> bool:
        """Record one batch (its indices or its counts); True when :data:`LIMIT` batches are pending."""
        self.losses.append(loss)
        if idx is not None:
            self.idx.append(idx)
        else:
            self.counts.append(counts)
        return len(self.losses) >= self.LIMIT

    def flush(self, seg_counts: Tensor, loss_sum: Tensor, perp_sum: Tensor) -> Tuple[Tensor, Tensor]:
        """Add the pending batches: seg_counts in place; returns the new (loss_sum, perp_sum)."""
        if not self.losses:
            return loss_sum, perp_sum
        s = self.segments
        if self.idx:
            idx = torch.stack(self.idx)
            k = idx.shape[0]
            rows = torch.arange(k, device=idx.device).unsqueeze(1) * s
            counts = torch.bincount((idx + rows).reshape(-1), minlength=k * s).view(k, s)
        else:
            counts = torch.stack(self.counts)
        with torch.no_grad():
            seg_counts += counts.sum(0)
        total = float(loss_sum)  # float64 sums in batch order, as a per-step `sum += value` makes them
        for v in torch.stack(self.losses).to(torch.float64).cpu().tolist():
            total += v
        perp = float(perp_sum)
        for v in _perplexities(counts):  # on the counts' device, as the per-step update computed them
            perp += v
        self.losses, self.idx, self.counts = [], [], []
        return (torch.tensor(total, dtype=torch.float64, device=loss_sum.device),
                torch.tensor(perp, dtype=torch.float64, device=perp_sum.device))
