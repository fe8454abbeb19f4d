"""The Jacobian of a sub-network f at a batch of latents, as a linear operator: JVPs and VJPs, no dense J.

Two implementations behind one interface, both reached through :func:`linearize`, which is where f's output
enters latentfast and is checked (:func:`check_f_output`: a tensor of z's dtype with one row per latent;
finite values of f(z) and of every tangent pass, per latent):
  * ``MLPOperator`` — f is an MLP that latentfast understands (an :class:`MLPSpec`, or a module with
    ``mlp_spec()``, such as latentfast's StyleGAN2 mapping network): hand-written tangent passes, one GEMM of
    B*r rows per layer (``ops/mlp_jvp``), no autograd;
  * ``FuncOperator`` — anything else, through torch.func (``jvp`` / ``vjp`` vectorised with ``vmap``), the r
    tangents of a call split into chunks that fit a memory budget (see :class:`FuncOperator`).
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, List, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .. import _checks
from ..ops import mlp_jvp
from ..ops.mlp_jvp.reference import MLPSpec

Tensor = torch.Tensor


def mlp_spec_of(f) -> Optional[MLPSpec]:
    """The :class:`MLPSpec` of f when latentfast recognises it, else None."""
    if isinstance(f, MLPSpec):
        return f
    getter = getattr(f, "mlp_spec", None)
    if callable(getter):
        spec = getter()
        if isinstance(spec, MLPSpec):
            return spec
    return None


def check_f_output(y, z: Tensor) -> Tensor:
    """f(z) as it enters latentfast: a tensor on z's device, in z's (floating) dtype, with exactly one row per
    latent (B = z.shape[0]).  Returns it flattened to (B, d_out).  TypeError/ValueError naming ``f`` otherwise.
    Works on torch.func's wrapped tensors too (only shapes and dtypes are read; finiteness is checked by
    :func:`check_finite_rows` on the concrete values)."""
    B = z.shape[0]
    if not isinstance(y, Tensor):
        raise TypeError(f"f: expected f(z) to return a torch.Tensor of shape (B, ...), got {type(y).__name__}")
    if y.dim() == 0 or y.shape[0] != B:
        raise ValueError(f"f: expected f(z) to have one row per latent, shape ({B}, ...) for z of shape "
                         f"{tuple(z.shape)}, got shape {tuple(y.shape)}")
    if y.dtype != z.dtype:
        raise TypeError(f"f: expected f(z) in z's dtype {z.dtype}, got {y.dtype}; make f and z agree "
                        f"(e.g. z.to({y.dtype}) or f.to({z.dtype}))" if y.is_floating_point() else
                        f"f: expected a floating-point f(z) in z's dtype {z.dtype}, got {y.dtype}")
    if y.device != z.device:
        raise ValueError(f"f: expected f(z) on z's device {z.device}, got {y.device}")
    if y[0].numel() == 0:
        raise ValueError(f"f: expected f(z) to have at least one output per latent, got shape {tuple(y.shape)}")
    return y.reshape(B, -1)


def check_finite_rows(what: str, x: Tensor, row_offset: int = 0) -> Tensor:
    """x (B, ...): raise naming the first latent (row ``row_offset + b`` of z) where ``what`` is not finite."""
    if x.numel() and not _checks._all_finite(x):
        bad_rows = (~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).nonzero().flatten()
        b = int(bad_rows[0])
        n = int((~torch.isfinite(x[b])).sum())
        raise ValueError(
            f"f: {what} is not finite at latent {row_offset + b} (row {row_offset + b} of z; {len(bad_rows)} "
            f"latent(s) affected, {n} NaN/Inf entries in this one): f overflows or is not differentiable there "
            f"(e.g. |z| too large for {x.dtype})")
    return x


class JacobianOperator:
    """J(z) for a batch z (B, d_in): ``points`` (B, d_out) = f(z), ``jvp`` (B, d_in, r) -> (B, d_out, r),
    ``vjp`` (B, d_out, r) -> (B, d_in, r)."""

    points: Tensor
    d_in: int
    d_out: int

    def jvp(self, V: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def vjp(self, U: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def dense(self) -> Tensor:
        """The full Jacobian (B, d_out, d_in), by the cheaper side (d_in JVPs or d_out VJPs)."""
        B = self.points.shape[0]
        dt, dev = self.points.dtype, self.points.device
        if self.d_in <= self.d_out:
            eye = torch.eye(self.d_in, dtype=dt, device=dev).expand(B, -1, -1)
            return self.jvp(eye)
        eye = torch.eye(self.d_out, dtype=dt, device=dev).expand(B, -1, -1)
        return self.vjp(eye).transpose(1, 2)


class MLPOperator(JacobianOperator):
    """Hand-written tangent passes of an :class:`MLPSpec` (dispatched: Triton on CUDA, PyTorch otherwise)."""

    def __init__(self, spec: MLPSpec, z: Tensor, backend: str = "auto"):
        self._lin = mlp_jvp.linearize(spec, z, backend=backend)
        self.points = self._lin.points
        self.d_in, self.d_out = spec.d_in, spec.d_out

    def jvp(self, V):
        return self._lin.jvp(V)

    def vjp(self, U):
        return self._lin.vjp(U)


class _AllocationCounter(TorchDispatchMode):
    """Sums the storage bytes of every tensor an operator returns while active, except storages it was given
    (views, in-place results).

    The sum over a pass is an upper bound on the pass's peak working memory (every byte it holds at its peak
    was allocated during it); it runs below torch.func's transforms, so it sees the batched tensors.  Memory an
    operator allocates internally and frees before returning (e.g. an im2col buffer) is not seen."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {_storage(t)[0] for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, Tensor):
                ptr, nbytes = _storage(t)
                if ptr not in given:
                    self.bytes += nbytes
                    given.add(ptr)
        return out


def _storage(t: Tensor) -> tuple:
    """(data pointer, bytes) of t's storage; (None, 0) for tensors without one (torch.func's zero tensors)."""
    try:
        st = t.untyped_storage()
        return st.data_ptr(), st.nbytes()
    except (RuntimeError, NotImplementedError):
        return None, 0


class _PeakMeter:
    """Peak memory increase of the code in a ``with`` block, measured where the platform allows: on CUDA the
    caching allocator's peak (``torch.cuda.max_memory_allocated``), on Linux the process's peak resident set
    (``VmHWM`` after resetting it through ``/proc/self/clear_refs``), else nothing (``bytes`` stays None).
    Together with :class:`_AllocationCounter` it covers what the counter cannot see (buffers an operator
    allocates internally, the allocator's own overhead): a probe pass is charged the larger of the two."""

    def __init__(self, device: torch.device):
        self.device, self.bytes = torch.device(device), None

    @staticmethod
    def _status(key: str) -> Optional[int]:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(key):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    def __enter__(self):
        self._base = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # reset VmHWM to the current VmRSS
                self._base = self._status("VmRSS:")
            except OSError:
                self._base = None
        return self

    def __exit__(self, *exc):
        if self._base is None:
            return False
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = self._status("VmHWM:")
        if peak is not None:
            self.bytes = max(peak - self._base, 0)
        return False


def _meminfo_available() -> Optional[int]:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_budget(device: torch.device) -> int:
    """Bytes one tangent pass may allocate when ``max_memory`` is not given: half the free memory of a CUDA
    device, a quarter of the available RAM on the CPU (4 GiB when it cannot be read)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0] // 2)
    avail = _meminfo_available()
    return int(avail // 4) if avail else 4 << 30


class TangentPlan:
    """What the tangent passes of one f have taught: per kind ("jvp", "vjp"), the (columns, bytes, batch) of
    the probe passes and the bytes per column and latent they imply (the largest seen: a pass of c columns at
    B latents is charged c * B * that).  Shared by the operators of one :func:`local_basis` call (its chunks
    of latents)."""

    #: first pass of a kind: max_memory // (FIRST_GUESS * forward bytes) columns (the forward pass's allocations
    #: are counted at linearisation; a tangent pass measured 1-4x them on StyleGAN2 synthesis networks)
    FIRST_GUESS = 4.0
    PROBES = 2
    #: every column is charged SAFETY x its measured bytes: on the CPU the peak resident set of later passes
    #: measured up to 1.6x the probes' figure (allocator overhead; buffers inside operators the counter cannot
    #: see; probes that reuse memory freed just before).  With 2 the measured peaks stay within the budget.
    SAFETY = 2.0

    def __init__(self, max_memory: int):
        self.max_memory = int(max_memory)
        self.seen = {"jvp": [], "vjp": []}
        self.forward_bytes_per_latent: Optional[float] = None

    def per_column(self, kind: str) -> Optional[float]:
        """Bytes per tangent column and latent: the largest of the probes (None before the first)."""
        seen = self.seen[kind]
        return max(b / (c * B) for c, b, B in seen) if seen else None

    def probing(self, kind: str) -> bool:
        return len(self.seen[kind]) < self.PROBES

    def width(self, kind: str, remaining: int, B: int) -> int:
        per = self.per_column(kind)
        if per is None:
            per = self.FIRST_GUESS * (self.forward_bytes_per_latent or 0.0)
        else:
            per = self.SAFETY * per
        return max(1, min(remaining, int(self.max_memory // max(per * B, 1.0))))

    def estimate(self, kind: str, c: int, B: int) -> Optional[float]:
        per = self.per_column(kind)
        return None if per is None else self.SAFETY * per * c * B

    def learn(self, kind: str, c: int, measured: int, B: int) -> None:
        self.seen[kind].append((c, measured, B))


class FuncOperator(JacobianOperator):
    """torch.func linearisation of f at z; f maps (B, d_in) -> (B, ...) and must treat rows independently.

    Tangent chunking: a ``jvp``/``vjp`` call with r columns pushes them through f in chunks of c columns
    (one ``vmap`` each), c chosen so that a chunk's working memory stays within ``max_memory`` bytes.  Memory
    is counted with :class:`_AllocationCounter` (the bytes of every tensor a pass allocates) and, for the
    probe passes, also measured by :class:`_PeakMeter` (peak RSS / CUDA peak), the larger charged: the
    forward pass at linearisation (F bytes, counted), then the first two passes of each kind — the first
    takes max_memory // (4 F) columns (at least one), the second as many as the first's bytes per column
    allow.  Every later chunk takes the largest c with 2 c per_column <= max_memory (per_column: the larger
    of the two probes' bytes per column, which also charges each column the primal recomputed inside a pass;
    2: :attr:`TangentPlan.SAFETY`), at least one column — so any f whose single tangent pass fits also fits.  Outside the budget: the linearisation (f's
    forward, whose saved activations the VJP holds) and the (B, d_out, r) results.  ``passes`` records (kind,
    columns, estimated bytes, counted bytes, measured peak bytes; None where not known) of every pass;
    ``audit=True`` counts and measures every pass, not only the probes.
    """

    def __init__(self, f: Callable[[Tensor], Tensor], z: Tensor, max_memory: Optional[int] = None,
                 plan: Optional[TangentPlan] = None, audit: bool = False):
        B = z.shape[0]
        self._f = lambda zz: check_f_output(f(zz), z)  # f's output enters here: checked and flattened
        self._z = z
        if plan is None:
            plan = TangentPlan(default_memory_budget(z.device) if max_memory is None else max_memory)
        self.plan, self.audit = plan, audit
        counter = _AllocationCounter() if plan.forward_bytes_per_latent is None else contextlib.nullcontext()
        with counter:
            self.points, self._vjp_fn = torch.func.vjp(self._f, z)
        if plan.forward_bytes_per_latent is None:
            plan.forward_bytes_per_latent = counter.bytes / B
        self.points = self.points.detach()
        self.d_in, self.d_out = z.shape[1], self.points.shape[1]
        self.passes: List[tuple] = []

    @property
    def max_memory(self) -> int:
        return self.plan.max_memory

    def _chunked(self, kind: str, one: Callable[[Tensor], Tensor], X: Tensor) -> Tensor:
        B, r, plan = X.shape[0], X.shape[2], self.plan
        out = None
        s = 0
        while s < r:
            c = plan.width(kind, r - s, B)
            estimate = plan.estimate(kind, c, B)
            probe = plan.probing(kind)
            run = lambda: torch.func.vmap(one, in_dims=2, out_dims=2)(X[:, :, s:s + c]).detach()
            counted = peak = None
            if probe or self.audit:
                with _PeakMeter(X.device) as meter, _AllocationCounter() as counter:
                    y = run()
                counted, peak = counter.bytes, meter.bytes
                if probe:
                    plan.learn(kind, c, max(counted, peak or 0), B)
            else:
                y = run()
            self.passes.append((kind, c, estimate, counted, peak))
            if out is None:
                if c == r:
                    return y
                out = y.new_empty(*y.shape[:2], r)
            out[:, :, s:s + c] = y
            s += c
        return out

    def jvp(self, V):
        one = lambda v: torch.func.jvp(self._f, (self._z,), (v,))[1]
        return self._chunked("jvp", one, V)

    def vjp(self, U):
        one = lambda u: self._vjp_fn(u)[0]
        return self._chunked("vjp", one, U)


class CheckedOperator(JacobianOperator):
    """``op`` with every tangent pass checked for NaN/Inf per latent, and computed in ``compute`` dtype: tangents
    go into f in f's dtype and come out in ``compute`` (float32 for half-precision f, see
    ``_checks.float_compute_dtype``).  ``points`` stay in f's dtype."""

    def __init__(self, op: JacobianOperator, row_offset: int = 0):
        self.op, self.row_offset = op, row_offset
        self.points = check_finite_rows("f(z)", op.points, row_offset)
        self.d_in, self.d_out = op.d_in, op.d_out
        self.dtype = _checks.float_compute_dtype(op.points.dtype)

    def jvp(self, V):
        out = self.op.jvp(V.to(self.points.dtype)).to(self.dtype)
        return check_finite_rows("the Jacobian of f (a JVP)", out, self.row_offset)

    def vjp(self, U):
        out = self.op.vjp(U.to(self.points.dtype)).to(self.dtype)
        return check_finite_rows("the Jacobian of f (a VJP)", out, self.row_offset)


def linearize(f, z: Tensor, backend: str = "auto", *, row_offset: int = 0, max_memory: Optional[int] = None,
              plan: Optional[TangentPlan] = None) -> CheckedOperator:
    """The Jacobian operator of f at z, checked (see :class:`CheckedOperator`); ``backend`` picks the mlp_jvp
    backend for MLP-shaped f; ``row_offset``: index of z's first row among all latents (for error messages);
    ``max_memory`` (bytes, default :func:`default_memory_budget`) bounds a torch.func tangent pass, ``plan``
    shares what the passes learnt between operators of one f (the MLP path ignores both)."""
    spec = mlp_spec_of(f)
    op = MLPOperator(spec, z, backend) if spec is not None else FuncOperator(f, z, max_memory, plan)
    return CheckedOperator(op, row_offset)
