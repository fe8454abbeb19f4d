"""The native SFVQ training step: assignment, vertex gradient and fused Adam in one C++ call (CPU).

:func:`fast_step` is what :func:`latentfast.sfvq.fit.train_step` runs when :func:`fast_step_why_not` finds no
reason against it; the result is the autograd path's (same assignments, same Adam arithmetic as
``torch.optim.Adam(fused=True)``, loss within ~1e-7 relative: it is summed in float64).  See
csrc/sfvq_step/sfvq_step.h for the arithmetic.  :func:`latentfast.sfvq.fit.fit_sfvq` checks once per stage and
keeps a :class:`Stepper` (the call's constants fixed) for the stage's steps.

Why the Adam update stays dense.  At batch 64 only 2 x 64 rows of the vertex gradient are non-zero, but Adam
moves every row with a history: for a row with zero gradient, k steps after its last touch,
m = b1^k m0 and v = b2^k v0 are closed-form, yet the parameter moves by
sum_s lr_s / (1 - b1^s) * b1^k m0 / (sqrt(b2^k v0 / (1 - b2^s)) + eps) — the eps inside the denominator makes
every term a different nonlinear function of v0 (no product or geometric sum collapses it), the learning rate
changes by epoch, and float rounding of p after every step is path-dependent.  A lazy form would either change
the result (dropping eps, or rounding once instead of k times) or replay the k steps per element, which is the
dense update's work.  So the update is dense but single-pass: no gradient tensor is formed, the zero-gradient
rows skip the gradient load, and it runs as one threaded loop fused with the two moments.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch

from .._dispatch import native_module, native_why_not
from ..ops.segment_assign import reference, scaling

Tensor = torch.Tensor

#: elements per vector of torch's CPU kernels, by capability: torch's fused Adam runs the last numel % width
#: elements through a scalar tail (no FMA in its lerp), which the native step reproduces
_VEC_BYTES = {"AVX512": 64, "AVX2": 32, "DEFAULT": 32}

#: steps whose GEMM (B x (M - 1) x D multiply-adds) is below this run on one thread, where a parallel region
#: costs about what it saves (the recipe's first stages).  From batch 64 x M = 64 x D = 512 up the step keeps
#: torch's threads: on the quiet 2-core machine (since the rows of the assignment are split too) two threads took
#: 367 / 435 / 560 us per step at M = 64 / 128 / 256 against 409 / 620 / 860 us on one, and at M = 16 / 32 only
#: 205 / 279 against 233 / 302 (bit-identical results).  An oversubscribed machine punishes threads, as it does
#: every threaded torch op: at load 11-17 two threads measured 98 ms per step at M = 1024 against 11 ms (barriers
#: wait for descheduled threads) — set torch.set_num_threads(1) there.
SMALL_STEP = 1 << 21


def _torch_vector_layout(dtype: torch.dtype) -> Tuple[int, bool]:
    cap = torch.backends.cpu.get_cpu_capability()
    width = _VEC_BYTES.get(cap, 32) // (4 if dtype == torch.float32 else 8)
    return width, cap in ("AVX2", "AVX512")


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def fast_step_why_not(vertices: Tensor, optimizer, x: Tensor, lam: Tensor, backend: str, *,
                      values: bool = True) -> List[str]:
    """Reasons the native step cannot stand in for the autograd step with these arguments (empty: it can).

    ``values=False``: x is a placeholder of the batches' shape, its values not checked against the native
    range (fit_sfvq's stage Stepper: its latents are scaled into a window well inside it)."""
    reasons = native_why_not()
    if reasons:
        return reasons
    if not hasattr(native_module(), "sfvq_step_cpu"):
        return ["the built native extension predates sfvq_step_cpu; rebuild it"]
    if backend not in ("auto", "native"):
        reasons.append(f"backend {backend!r} asked for")
    if _distributed():
        reasons.append("a torch.distributed process group is active (the dense gradient is all-reduced)")
    if not isinstance(vertices, Tensor) or vertices.device.type != "cpu" or vertices.dtype not in (
            torch.float32, torch.float64) or vertices.dim() != 2 or vertices.shape[0] < 2 \
            or not vertices.is_contiguous() or not vertices.requires_grad:
        reasons.append("vertices: not a contiguous CPU float32/float64 (M >= 2, D) leaf requiring grad")
        return reasons
    if not isinstance(x, Tensor) or x.device.type != "cpu" or x.dtype != vertices.dtype or x.dim() != 2 \
            or x.shape[1] != vertices.shape[1] or x.shape[0] == 0:
        reasons.append("x: not a non-empty CPU (B, D) tensor of the vertices' dtype")
    if not isinstance(lam, Tensor) or lam.device.type != "cpu" or lam.dtype != vertices.dtype \
            or lam.shape != (vertices.shape[0] - 1,):
        reasons.append("lam: not a CPU (M - 1,) tensor of the vertices' dtype")
    if values and not reasons:
        # The cheap distances are computed unscaled in the input dtype: outside segment_assign's window
        # (scaling.SAFE_EXPONENT) they underflow or overflow (measured without this check: 4 of 64 rows wrong at
        # 1e-22, 5 of 64 at 1e19), and the autograd path, whose nearest_point rescales exactly, serves instead.
        # fit_sfvq's latents are scaled into [2^-20, 2^20] (sfvq/_data.py), well inside it.
        try:
            e = scaling.max_exponent(x, vertices)
        except ValueError:  # NaN/Inf: the native step refuses them with its own message
            e = 0
        if not scaling.in_window(e, vertices.dtype):
            reasons.append(f"x / vertices: largest magnitude ~2^{e}, outside the native step's range "
                           f"(|exponent| <= {scaling.SAFE_EXPONENT[vertices.dtype]})")
    if type(optimizer) is not torch.optim.Adam:
        reasons.append(f"optimizer is {type(optimizer).__name__}, not torch.optim.Adam")
        return reasons
    if getattr(optimizer, "_optimizer_step_pre_hooks", None) or getattr(optimizer, "_optimizer_step_post_hooks",
                                                                        None):
        reasons.append("the optimizer has step hooks")
    groups = optimizer.param_groups
    if len(groups) != 1 or len(groups[0]["params"]) != 1 or groups[0]["params"][0] is not vertices:
        reasons.append("the optimizer does not hold exactly the vertices")
        return reasons
    g = groups[0]
    if not g.get("fused"):
        reasons.append("Adam is not fused=True (the native step reproduces the fused kernel's arithmetic)")
    for key in ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay"):
        if g.get(key):
            reasons.append(f"Adam {key}=True")
    if g.get("weight_decay", 0) != 0:
        reasons.append("Adam weight_decay != 0")
    if isinstance(g["lr"], Tensor) or any(isinstance(b, Tensor) for b in g["betas"]):
        reasons.append("tensor lr or betas")
    st = optimizer.state.get(vertices)
    if st:
        if set(st) != {"step", "exp_avg", "exp_avg_sq"} or not all(
                isinstance(st[k], Tensor) and st[k].shape == vertices.shape and st[k].dtype == vertices.dtype
                and st[k].is_contiguous() for k in ("exp_avg", "exp_avg_sq")):
            reasons.append("the optimizer state is not plain Adam moments of the vertices' layout")
    return reasons


class Stepper:
    """The native step bound to one (vertices, optimizer) pair, for many steps on batches like the first one.

    Built from arguments :func:`fast_step_why_not` accepted; the constants of the call (vector layout, rounding
    bound, whether the step is small enough for one thread) are fixed once, and so are the shift of the cheap
    distances (the float64 mean of the vertices at construction: any fixed vector keeps the certification
    rigorous, so the result does not depend on it) and the native scratch (kept across steps: no step
    allocates).  ``step(x, lam)`` then assumes x and lam of that shape, dtype and device (what
    :func:`latentfast.sfvq.fit.fit_sfvq` draws every batch) and
    returns (loss as a float, rounded to the vertices' dtype; idx (B,) int64); a step below
    :data:`SMALL_STEP` runs on one thread.  Raises ValueError for NaN/Inf in x or in the curve (nothing is
    modified then)."""

    def __init__(self, vertices: Tensor, optimizer: torch.optim.Adam, x: Tensor, *, fixed_shift: bool = True):
        group = optimizer.param_groups[0]
        self.vertices, self.group, self._states = vertices, group, optimizer.state  # looked up per step
        beta1, beta2 = group["betas"]
        width, fma = _torch_vector_layout(vertices.dtype)
        self._consts = (float(beta1), float(beta2), float(group["eps"]),
                        float(reference.gemm_error_bound(vertices.shape[1], vertices.dtype)),
                        reference.NUM_CANDIDATES, width, fma)
        self._dtype = vertices.dtype
        self._native = native_module().sfvq_step_cpu
        self.small = x.shape[0] * vertices.shape[0] * vertices.shape[1] < SMALL_STEP
        # fixed_shift=False: the native call takes each step's own vertex mean (a one-off call has no later steps)
        self._shift = (vertices.detach().to(torch.float64).mean(0) if fixed_shift
                       else torch.empty(0, dtype=torch.float64))
        self._work = torch.empty(0, dtype=vertices.dtype)

    def step(self, x: Tensor, lam: Tensor) -> Tuple[float, Tensor]:
        v = self.vertices
        state = self._states[v]
        if not state:  # torch's lazy initialisation for fused Adam, at the first step
            state["step"] = torch.zeros((), dtype=torch.float32, device=v.device)
            state["exp_avg"] = torch.zeros_like(v, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(v, memory_format=torch.preserve_format)
        idx = torch.empty(x.shape[0], dtype=torch.int64)
        b1, b2, eps, bound, k, width, fma = self._consts
        threads = torch.get_num_threads() if self.small else 1  # single_threaded, inline (called every step)
        if threads != 1:
            torch.set_num_threads(1)
        try:  # plain pointers into the tensors: no autograd is involved
            loss, status, _ = self._native(v, state["exp_avg"], state["exp_avg_sq"], x, lam,
                                           float(state["step"]) + 1.0, float(self.group["lr"]), b1, b2, eps,
                                           bound, k, width, fma, idx, self._shift, self._work)
        finally:
            if threads != 1:
                torch.set_num_threads(threads)
        if status == 1:
            raise ValueError(f"x: expected finite values, got NaN or Inf in the batch of shape {tuple(x.shape)}")
        if status == 2:
            raise ValueError("vertices: expected a finite curve and dither, got NaN/Inf or an overflow in the "
                             "dithered points")
        state["step"].add_(1)
        v.grad = None
        # the loss as a tensor of the vertices' dtype would hold: float32 rounds the float64 sum's mean
        return (float(np.float32(loss)) if self._dtype == torch.float32 else loss), idx


def fast_step(vertices: Tensor, optimizer: torch.optim.Adam, x: Tensor, lam: Tensor) -> Tuple[Tensor, Tensor]:
    """One training step in place (arguments accepted by :func:`fast_step_why_not`): (loss scalar, idx (B,)).

    Leaves ``vertices.grad`` None (no dense gradient is formed).  Raises ValueError for NaN/Inf in ``x`` or in
    the curve (nothing is modified then).
    """
    loss, idx = Stepper(vertices, optimizer, x, fixed_shift=False).step(x, lam.contiguous())
    return torch.tensor(loss, dtype=vertices.dtype), idx
