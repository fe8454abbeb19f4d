"""The SFVQ curve as an ``nn.Module``: vertices, exact assignment, decoding, directions, augmentation, files."""
from __future__ import annotations

import math
import numbers
import os
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

from .. import _checks
from ..ops.segment_assign import SegmentAssignment, segment_assign
from . import _files
from . import fit as _fit
from .stages import TWIN_EPS, decode_on
from .training_log import SFVQTrainingLog

Tensor = torch.Tensor

_FORMAT = "latentfast.SFVQ"
_VERSION = 2


class SFVQ(nn.Module):
    """A space-filling vector quantizer: a polyline through ``num_vertices`` vertices in ``dim`` dimensions.

    ``vertices``: (M, dim) parameter, float32 on construction; segment j joins rows j and j+1.  A new module
    holds zeros (every segment has length 0) until :meth:`fit` or :meth:`from_vertices` gives it a curve.
    Raises ValueError for num_vertices < 2 or dim < 1, TypeError for non-integers.
    """

    def __init__(self, num_vertices: int, dim: int):
        super().__init__()
        num_vertices = _checks.check_int("num_vertices", num_vertices, low=2)
        dim = _checks.check_int("dim", dim, low=1)
        self.vertices = nn.Parameter(torch.zeros(num_vertices, dim))
        #: the :class:`SFVQTrainingLog` of the fit that made this curve (kept by :meth:`save`), else None
        self.training_log: Optional[SFVQTrainingLog] = None

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_vertices(cls, vertices) -> "SFVQ":
        """Wrap an existing curve: vertices (M, D) tensor or array, M >= 2, finite, floating (dtype kept)."""
        vertices = _checks.as_tensor("vertices", vertices)
        _checks.check_ndim("vertices", vertices, 2, "(M, D)")
        _checks.check_floating("vertices", vertices)
        if vertices.shape[0] < 2 or vertices.shape[1] < 1:
            raise ValueError(f"vertices: expected at least 2 vertices of width >= 1, got shape {tuple(vertices.shape)}")
        _checks.check_finite("vertices", vertices)
        model = cls(vertices.shape[0], vertices.shape[1])
        model.vertices = nn.Parameter(vertices.detach().clone())
        return model  # training_log None: these vertices come with no record of how they were made

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def dim(self) -> int:
        return self.vertices.shape[1]

    def extra_repr(self) -> str:
        return f"num_vertices={self.num_vertices}, dim={self.dim}"

    # -- training -----------------------------------------------------------------------------------------
    def fit(
        self,
        latents,
        *,
        epochs_per_stage: int = 5,
        batch_size: int = 64,
        lr: float = 1e-3,
        shuffle: bool = False,
        progress: bool = True,
        generator: Optional[torch.Generator] = None,
        twin_eps: float = TWIN_EPS,
        chunk_size: Optional[int] = None,
        checkpoint=None,
        checkpoint_every: Optional[int] = None,
        resume: bool = False,
        init: str = "data",
        process_group=None,
    ) -> SFVQTrainingLog:
        """Train the curve on ``latents`` (N, D = dim) with the authors' recipe (see :mod:`latentfast.sfvq.fit`).

        Starts from the latents' norm-quartile means (``init="data"``; the published train.py starts from
        those of Gaussian noise, ``init="randn"``; the current vertices are not used), grows
        4 -> 8 -> ... -> num_vertices and replaces ``vertices`` with the result, on the latents' device and in
        their dtype (float32 for half precision); the module gets a new ``vertices`` Parameter (re-create
        optimizers that held the old one).
        ``batch_size`` above 64 takes fewer steps per epoch: with the same ``lr`` the curve is worse (measured
        on 2^15 latents: +5 % MSE at 4096 for Gaussian data, 2x for a noisy curve); scaling ``lr`` by
        sqrt(batch_size / 64) recovers it to within 0.2-3 % up to 1024.  ``shuffle`` permutes the latents every
        epoch; ``generator`` makes the run reproducible; ``progress`` shows a tqdm bar on stderr (steps, with stage, epoch, loss and perplexity; silent off a terminal).
        ``checkpoint``/``checkpoint_every``/``resume`` make the fit resumable, ``init`` picks the start
        ("data" or the published script's "randn") and ``process_group`` trains data-parallel: see
        :func:`latentfast.sfvq.fit.fit_sfvq`.  Returns an :class:`SFVQTrainingLog` (also kept as
        ``training_log``, and saved with the curve).  Raises ValueError/TypeError naming the bad argument;
        KeyboardInterrupt is re-raised after the checkpoint is written.
        """
        vertices, log = _fit.fit_sfvq(
            latents, self.num_vertices, epochs_per_stage=epochs_per_stage, batch_size=batch_size, lr=lr,
            shuffle=shuffle, progress=progress, generator=generator, twin_eps=twin_eps, chunk_size=chunk_size,
            checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, init=init,
            process_group=process_group, dim=self.dim)
        self.vertices = nn.Parameter(vertices.clone())
        self.training_log = log
        return log

    # -- inference ----------------------------------------------------------------------------------------
    def _points(self, name: str, x) -> Tensor:
        x = _checks.as_tensor(name, x)
        _checks.check_ndim(name, x, 2, f"(N, {self.dim})")
        _checks.check_floating(name, x)
        if x.shape[1] != self.dim:
            raise ValueError(f"{name}: expected width D = {self.dim} (the model's dim), got shape {tuple(x.shape)}")
        return x

    def assign(self, x, *, chunk_size: Optional[int] = None) -> SegmentAssignment:
        """Exact nearest segment of every row of x (N, dim): :class:`SegmentAssignment` (index, t, distance_sq).

        Uses :func:`latentfast.segment_assign` over all M-1 segments (not only those next to the nearest
        vertex).  Raises ValueError/TypeError for bad shapes, dtypes, NaN/Inf.
        """
        x = self._points("x", x)
        return segment_assign(x, self.vertices.detach(), chunk_size=chunk_size)

    def quantize(self, x, *, chunk_size: Optional[int] = None) -> Tensor:
        """Nearest point of the curve for every row of x (N, dim): (N, dim), c_j + t (c_{j+1} - c_j).

        dtype: that of :func:`segment_assign` (promoted x/vertices dtype; half precision becomes float32).
        """
        a = self.assign(x, chunk_size=chunk_size)
        v = self.vertices.detach().to(a.t.dtype)
        start = v[a.index]
        return start + a.t.unsqueeze(1) * (v[a.index + 1] - start)

    def decode(self, fractional_index) -> Tensor:
        """Point at fractional position s of the curve: c_f + (s - f) (c_{f+1} - c_f), f = min(floor(s), M - 2).

        fractional_index: a number or a real tensor/array of any shape (...), each in [0, M - 1]; returns
        (..., dim) in the vertices' dtype, differentiable in ``vertices``.  s = M - 1 is the last vertex.
        Raises ValueError for values outside [0, M - 1] or NaN (never extrapolates silently).
        """
        if isinstance(fractional_index, numbers.Real) and not isinstance(fractional_index, (bool, np.bool_)):
            s = torch.tensor(float(fractional_index), dtype=torch.float64)
        else:
            s = _checks.as_tensor("fractional_index", fractional_index)
            if s.dtype == torch.bool or s.is_complex():
                raise TypeError(f"fractional_index: expected real numbers, got dtype {s.dtype}")
        _checks.check_finite("fractional_index", s.to(torch.float64) if not s.is_floating_point() else s)
        if s.numel():
            lo, hi = float(s.min()), float(s.max())
            if lo < 0 or hi > self.num_vertices - 1:
                raise ValueError(f"fractional_index: expected values in [0, {self.num_vertices - 1}] "
                                 f"(M = {self.num_vertices} vertices), got values in [{lo:g}, {hi:g}]")
        return decode_on(self.vertices, s.to(torch.float64))

    def directions(self, normalize: bool = True) -> Tensor:
        """Segment vectors c_{j+1} - c_j: (M - 1, dim), detached, in the vertices' dtype.

        With ``normalize`` each row is scaled to unit length; a zero-length segment (repeated vertex) stays a
        zero row (no NaN), so callers can find such segments by their zero norm.
        """
        v = self.vertices.detach()
        d = v[1:] - v[:-1]
        if not normalize:
            return d
        norms = torch.linalg.vector_norm(d, dim=1, keepdim=True)
        # divide only where the length is positive: 0/0 would put NaN into every downstream edit
        return torch.where(norms > 0, d / torch.where(norms > 0, norms, torch.ones_like(norms)), torch.zeros_like(d))

    def sample_on_segment(
        self,
        j: int,
        n: int,
        *,
        t_range: Tuple[float, float] = (0.0, 1.0),
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """n points c_j + t (c_{j+1} - c_j) with t ~ U[t_range[0], t_range[1]), independently per point.

        j: segment in [0, M - 2] (negative j counts from the end, like Python indexing); n >= 0.  t_range
        (lo, hi) with lo <= hi, finite; values outside [0, 1] extrapolate along the segment's line on purpose
        (stronger edits).  Returns (n, dim), detached, in the vertices' dtype and device; the randomness comes
        from ``generator`` when given.  Raises ValueError/TypeError naming the bad argument.
        """
        m = self.num_vertices
        j = _checks.check_int("j", j, low=-(m - 1), high=m - 2)
        j = j % (m - 1)
        n = _checks.check_int("n", n, low=0)
        if (not isinstance(t_range, (tuple, list)) or len(t_range) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in t_range)):
            raise TypeError(f"t_range: expected a pair of numbers (lo, hi), got {t_range!r}")
        lo, hi = float(t_range[0]), float(t_range[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"t_range: expected finite lo <= hi, got {t_range!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator or None, got an object of type "
                            f"{type(generator).__name__}")
        v = self.vertices.detach()
        gen_device = generator.device if generator is not None else v.device
        u = torch.rand(n, generator=generator, device=gen_device, dtype=v.dtype).to(v.device)
        t = lo + (hi - lo) * u
        return v[j] + t.unsqueeze(1) * (v[j + 1] - v[j])

    # -- files ----------------------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the curve to ``path``: its vertices, its training log (when it was fitted) and a checksum.

        The file is a torch file holding only tensors, numbers, strings and plain containers (format version
        2: ``{"format": "latentfast.SFVQ", "version": 2, "vertices", "training_log", "checksum"}``, the
        checksum being the sha256 of every other entry).  Atomic, through :func:`latentfast._io.atomic_write_bytes`:
        a crash never leaves a half-written file under ``path``.
        """
        log = self.training_log
        payload = {"format": _FORMAT, "version": _VERSION, "vertices": self.vertices.detach().cpu().contiguous(),
                   "training_log": log.to_dict() if log is not None else None}
        _files.write(path, payload, name="path")

    @classmethod
    def load(cls, path, *, map_location="cpu") -> "SFVQ":
        """Read a file written by :meth:`save`, verified.  Safe: ``torch.load(weights_only=True)`` runs no code.

        Version rule: version 2 files must carry a checksum that matches their contents; version 1 files
        (latentfast before checksums: vertices only) load unverified, with ``training_log = None``; any
        other version is refused.  Raises ValueError naming ``path`` for an empty, truncated or corrupt file
        (a checksum mismatch: even one flipped bit), pickled objects other than tensors (refused, never run),
        a file of another kind, or a curve that is not a finite floating (M >= 2, D) tensor.
        """
        path = os.fspath(path)
        payload = _files.read(path, _FORMAT, name="path")
        version = payload.get("version")
        if version not in (1, _VERSION):
            raise ValueError(f"path: {path!r} is SFVQ file version {version!r}; this latentfast reads versions 1 "
                             f"and {_VERSION}")
        if version == _VERSION and "checksum" not in payload:
            raise ValueError(f"path: {path!r} is corrupt: an SFVQ version {_VERSION} file without its checksum")
        vertices = payload.get("vertices")
        if not isinstance(vertices, Tensor):
            raise ValueError(f"path: {path!r} is not a latentfast SFVQ file (no 'vertices' tensor, got keys "
                             f"{sorted(map(str, payload))})")
        try:
            model = cls.from_vertices(vertices.to(map_location) if map_location is not None else vertices)
        except (TypeError, ValueError) as e:
            raise ValueError(f"path: {path!r} holds an invalid curve ({e})") from None
        log = payload.get("training_log")
        if log is not None:
            try:
                model.training_log = SFVQTrainingLog.from_dict(log)
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(f"path: {path!r} holds an invalid training log ({e})") from None
        return model
