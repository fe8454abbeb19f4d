"""The latents as an SFVQ fit reads them: validated once, read in row blocks, scaled by an exact power of two.

The fit never copies the whole (N, D) array: a tensor, a numpy array or a memory-mapped ``.npy``
(``np.load(path, mmap_mode="r")``) is read a batch or a 65536-row chunk at a time, converted to the working
dtype (float32 for float16/bfloat16) and multiplied by ``2 ** shift``.  Under a process group every rank
validates, sorts by norm and evaluates only its own contiguous block of rows (``split(N, W, rank)``).
"""
from __future__ import annotations

import hashlib
import math
import warnings
from typing import Iterator, Optional

import numpy as np
import torch

from .. import _checks
from ..ops.segment_assign.scaling import ldexp  # x * 2^k, one rounding (the op uses the same)
from .distributed import Comm, split

Tensor = torch.Tensor

CHUNK = 65536
#: latents whose largest magnitude lies in [2^-LOG2_SAFE, 2^LOG2_SAFE] are used as given (so ``lr`` is in their
#: units, as in the authors' recipe); outside it the fit runs on latents * 2^shift with the largest magnitude in
#: [0.5, 1): float32 squares of 1e20 overflow and those of 1e-20 underflow, and Adam's lr and eps are absolute.
LOG2_SAFE = 20


def unscale_sq(value: float, shift: int) -> float:
    """A squared distance measured on latents * 2^shift, in the latents' own units (inf where it overflows)."""
    try:
        return math.ldexp(value, -2 * shift)
    except OverflowError:
        return math.inf


def _as_tensor(latents) -> Tensor:
    if isinstance(latents, np.ndarray) and not latents.flags.writeable:
        with warnings.catch_warnings():  # a read-only (memory-mapped) array: the fit only ever reads it
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(np.ascontiguousarray(latents))
    return _checks.as_tensor("latents", latents)


class Latents:
    """(N, D) latents for one fit.  ``dim``: required width or None.  Raises ValueError/TypeError naming
    ``latents`` for a wrong rank, an empty set, a non-floating dtype or NaN/Inf (every rank raises when one
    rank's block is bad)."""

    def __init__(self, latents, dim: Optional[int], comm: Comm):
        t = _as_tensor(latents)
        _checks.check_ndim("latents", t, 2, "(N, D)")
        _checks.check_floating("latents", t)
        _checks.check_nonempty("latents", t, 0, "set of latents")
        if dim is not None and t.shape[1] != dim:
            raise ValueError(f"latents: expected width D = {dim} (the model's dim), got shape {tuple(t.shape)}")
        self.t = t.detach()  # training must not push gradients into a caller's tensor that requires them
        self.n, self.d = t.shape
        self.dtype = torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype
        self.device = t.device
        self.comm = comm
        self.block = split(self.n, comm.world_size, comm.rank)
        self.shift = self._check_and_scale()

    def _check_and_scale(self) -> int:
        biggest, error = 0.0, None
        for rows in self.chunks():
            lo, hi = torch.aminmax(self.t[rows])
            if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
                bad = int((~torch.isfinite(self.t[rows])).sum())
                error = (f"latents: expected finite values, got {bad} NaN/Inf entries in rows {rows.start}:"
                         f"{rows.stop} of shape {tuple(self.t.shape)} of dtype {self.t.dtype}")
                break
            biggest = max(biggest, abs(float(lo)), abs(float(hi)))
        self.comm.agree(error, "latents")
        m = torch.tensor([biggest], dtype=torch.float64)
        self.comm.max_(m)
        biggest = float(m)
        if biggest == 0 or 2.0 ** -LOG2_SAFE <= biggest <= 2.0 ** LOG2_SAFE:
            return 0
        return -math.frexp(biggest)[1]

    def chunks(self) -> Iterator[slice]:
        """This rank's block of rows in slices of at most CHUNK rows."""
        for a in range(self.block.start, self.block.stop, CHUNK):
            yield slice(a, min(a + CHUNK, self.block.stop))

    def rows(self, index) -> Tensor:
        """Rows ``index`` (a slice or an int64 tensor) in the working dtype, scaled by 2^shift."""
        x = self.t[index].to(self.dtype)
        return ldexp(x, self.shift) if self.shift else x

    def fingerprint(self) -> dict:
        """Shape, dtype and the sha256 of 256 evenly spaced rows: cheap, and different for other latents."""
        idx = torch.linspace(0, self.n - 1, min(self.n, 256), dtype=torch.float64).round().to(torch.int64)
        sample = self.t[idx.to(self.device)].detach().cpu().contiguous()
        digest = hashlib.sha256(sample.reshape(-1).view(torch.uint8).numpy()).hexdigest()
        return {"shape": [int(self.n), int(self.d)], "dtype": str(self.t.dtype), "sample_sha256": digest}

    # -- whole-set passes, each over this rank's block only -------------------------------------------------
    def start_vertices(self, num: int) -> Tensor:
        """Means of ``num`` equal groups of the latents sorted by norm (see :func:`stages.initial_vertices`),
        (num, D) in the working dtype, in scaled units.  Sums in float64; the same on every rank."""
        if self.n < num:
            raise ValueError(f"latents: expected at least {num} rows to form the {num} starting vertices, "
                             f"got {self.n}")
        norms = torch.cat([torch.linalg.vector_norm(self.rows(r), dim=1) for r in self.chunks()])
        sizes = [split(self.n, self.comm.world_size, r).stop - split(self.n, self.comm.world_size, r).start
                 for r in range(self.comm.world_size)]
        norms = self.comm.gather_rows(norms, sizes)
        return group_means(norms, num, lambda: ((r, self.rows(r)) for r in self.chunks()), self.d,
                           self.comm, self.device).to(self.dtype)

    def mean_distance_sq(self, curve: Tensor, chunk_size: Optional[int]) -> float:
        """Mean over all latents of the exact squared distance to ``curve`` (scaled units), in the latents'."""
        from ..ops.segment_assign import segment_assign
        total = torch.zeros(1, dtype=torch.float64)
        with torch.no_grad():
            for r in self.chunks():
                d = segment_assign(self.rows(r), curve, chunk_size=chunk_size).distance_sq
                total += d.to(torch.float64).sum().cpu()
        self.comm.sum_(total)
        return unscale_sq(float(total) / self.n, self.shift)


def group_means(norms: Tensor, num: int, blocks, dim: int, comm: Comm, device) -> Tensor:
    """float64 (num, dim) means of the ``num`` groups of N // num rows in stable norm order (rest unused).

    ``norms`` (N,) of all rows; ``blocks()`` yields (slice, rows) of this rank's block; sums are all-reduced.
    """
    n = norms.shape[0]
    hop = n // num
    order = torch.sort(norms, stable=True).indices
    group = torch.full((n,), -1, dtype=torch.int64, device=norms.device)
    group[order[: hop * num]] = torch.arange(hop * num, device=norms.device) // hop
    sums = torch.zeros(num, dim, dtype=torch.float64, device=device)
    for r, x in blocks():
        g = group[r].to(device)
        keep = g >= 0
        sums.index_add_(0, g[keep], x[keep].to(torch.float64))
    comm.sum_(sums)
    return sums / hop
