"""Exact power-of-two scaling: how segment_assign stays exact at any scale.

Under x -> 2^k x, c -> 2^k c the nearest segment and t do not change and squared distances scale by 2^(2k);
multiplying a binary floating-point number by 2^k is exact unless the result leaves the normal range.  The
backends are exact for inputs whose largest magnitude lies in a window around 1 (:func:`in_window`): outside
it their cheap GEMM formula overflows or underflows.  The public functions therefore move such inputs into
float64 (exact for every float16/bfloat16/float32 value), scale them by 2^-e so that the largest magnitude is
in [1/2, 1), run the backend, and scale the float64 distances back by 2^(2e) with ONE rounding to the output
dtype (:func:`ldexp`), so a distance is inf only where the true value overflows that dtype.

For float64 inputs whose magnitudes span more than float64's range in one call, values that land below
2^-1022 after the scaling are rounded there (the oracle is then the float64 brute force of the scaled inputs).

Public helpers (also for callers that want to keep their data near 1 themselves, e.g. SFVQ fits):
:func:`max_exponent`, :func:`ldexp`.
"""
from __future__ import annotations

import math

import torch

from ... import _checks

Tensor = torch.Tensor

#: Largest |exponent| of the inputs' largest magnitude that the backends take without rescaling, per compute
#: dtype.  With max|v| < 2^W the centred values are < 2^(W+1) and every term of the cheap formula is below
#: 16 D 2^(2W+2) < 2^(2W+40) for D < 2^34: float32 needs 2W + 40 <= 128, float64 2W + 40 <= 1024.  Below
#: 2^-W nothing is wrong (the certification bound has an underflow term), but most rows would fail
#: certification and take the slow fallback; the rescaled path is faster there.
SAFE_EXPONENT = {torch.float32: 44, torch.float64: 492}


def max_abs(name: str, x: Tensor) -> float:
    """max |x| from one ``aminmax`` pass (0.0 for an empty tensor); raises ValueError naming ``name`` on NaN/Inf
    (the same message as :func:`latentfast._checks.check_finite`)."""
    if x.numel() == 0:
        return 0.0
    lo, hi = torch.aminmax(x.detach())
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        _checks.check_finite(name, x)  # raises with the count of bad entries
    return max(-lo, hi)


def max_exponent(*tensors: Tensor) -> int:
    """The e with max |value| over all ``tensors`` in [2^(e-1), 2^e) (``math.frexp``); 0 when all are zero.

    One ``aminmax`` pass per tensor.  Raises ValueError on NaN/Inf.  Scaling by ``ldexp(x, -e)`` brings the
    largest magnitude into [1/2, 1), exactly.
    """
    amax = max([max_abs(f"tensors[{i}]", t) for i, t in enumerate(tensors)] + [0.0])
    return math.frexp(amax)[1]


def in_window(exponent: int, compute_dtype: torch.dtype) -> bool:
    """True when inputs whose largest magnitude has frexp exponent ``exponent`` need no rescaling."""
    return abs(exponent) <= SAFE_EXPONENT[compute_dtype]


def _pow2(j: Tensor) -> Tensor:
    """2^j as float64 for integer j in [-1022, 1023], built from its bits (exact on every device)."""
    return ((j + 1023) << 52).view(torch.float64)


def _ldexp64(y: Tensor, k: int) -> Tensor:
    """y * 2^k for float64 y, correctly rounded (one rounding, also into the subnormal range; +-inf on overflow)."""
    m, ex = torch.frexp(y)              # y = m 2^ex, 1/2 <= |m| < 1 (m = 0 for y = 0)
    j = ex.to(torch.int64) + int(k)     # y 2^k = m 2^j
    # normal range (result in [2^-1022, 2^1024)): (2m) 2^(j-1) with both factors exact, exact product
    normal = (2.0 * m) * _pow2((j - 1).clamp(-1022, 1023))
    # subnormal range: m 2^(j+200) is still normal and exact; the multiplication by 2^-200 rounds once
    sub = (m * _pow2((j + 200).clamp(-1022, 1023))) * 2.0 ** -200
    out = torch.where(j > 1024, torch.copysign(torch.full_like(m, math.inf), m),
                      torch.where(j >= -1021, normal, torch.where(j >= -1221, sub, m * 0.0)))
    return torch.where(y == 0, y, out)


class _Ldexp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k, dtype):
        ctx.k, ctx.in_dtype = k, x.dtype
        if x.dtype != torch.float64 and abs(k) <= 600:
            # |x| in [2^-149, 2^128] (float16/bfloat16/float32): x 2^k is a normal float64, one exact multiply
            return (x.to(torch.float64) * 2.0 ** k).to(dtype)
        return _ldexp64(x.to(torch.float64), k).to(dtype)

    @staticmethod
    def backward(ctx, grad):
        return _Ldexp.apply(grad, ctx.k, ctx.in_dtype), None, None


def ldexp(x: Tensor, k: int, dtype: torch.dtype = None) -> Tensor:
    """x * 2^k rounded ONCE to ``dtype`` (default x's dtype): exact whenever the result is a normal number of
    that dtype, correctly rounded where it is subnormal, +-inf where it overflows.  Differentiable (the
    gradient is scaled by 2^k the same way).  x: any floating tensor; k: int (any size, e.g. -2000)."""
    _checks.check_floating("x", x)
    return _Ldexp.apply(x, int(k), dtype or x.dtype)
