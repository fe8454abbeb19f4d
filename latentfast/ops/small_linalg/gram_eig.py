"""Eigenvalues of M^T M for a batch of small panels M (..., m, k), k <= 32, in float64 (the op ``gram_eigvalsh``).

Backends: ``native`` (CPU, the C++ extension: cyclic Jacobi on the k x k Gram matrix, eight matrices per SIMD
group, groups over OpenMP threads — csrc/small_linalg/gram_eig_cpu.cpp) and ``reference`` (any device:
``torch.linalg.eigvalsh`` of the float64 Gram matrix, one LAPACK call per matrix on CPU).  Both return the same
eigenvalues to ~1e-15 x trace(M^T M) (the native stopping rule, Weyl's bound).  Principal angles use it: the
cosines are the square roots for M = A^T B, the sines for M = B - A A^T B.
"""
from __future__ import annotations

from typing import List

import torch

from ..._dispatch import Backend, Op, native_module, native_why_not, register
from ._threads import single_threaded

Tensor = torch.Tensor

#: off-diagonal Frobenius norm at which the native Jacobi stops, relative to the trace
TOL = 1e-15
MAX_SWEEPS = 30
MAX_K = 32


def reference(M: Tensor) -> Tensor:
    """torch.linalg.eigvalsh of the float64 Gram matrices, ascending (..., k)."""
    M64 = M.to(torch.float64)
    with single_threaded(M64):
        return torch.linalg.eigvalsh(M64.transpose(-1, -2) @ M64)


def _native_why_not(M: Tensor) -> List[str]:
    reasons = native_why_not()
    if reasons:
        return reasons
    if not hasattr(native_module(), "gram_eigvalsh_cpu_out"):
        return ["the built native extension predates gram_eigvalsh_cpu_out; rebuild it"]
    if M.device.type != "cpu":
        reasons.append(f"tensor on {M.device}; the native kernel runs on CPU tensors")
    if M.dtype not in (torch.float32, torch.float64):
        reasons.append(f"dtype {M.dtype}; the native kernel takes float32 or float64")
    if M.shape[-1] > MAX_K:
        reasons.append(f"k = {M.shape[-1]} > {MAX_K}")
    return reasons


def _native(M: Tensor) -> Tensor:
    m, k = M.shape[-2:]
    # the kernel takes any strides of (N, m, k): run it per leading index instead of copying a permuted view
    # (pairwise_grassmann's (rows, cols, k, k) block of a GEMM output cannot be flattened without a copy)
    stack = M.reshape(1, 1, m, k) if M.dim() == 2 else M.reshape(-1, *M.shape[-3:])
    out = torch.empty(*stack.shape[:2], k, dtype=torch.float64)
    sweeps = max(native_module().gram_eigvalsh_cpu_out(stack[i], TOL, MAX_SWEEPS, out[i])
                 for i in range(stack.shape[0]))
    if sweeps > MAX_SWEEPS:  # never seen; the reference is always right
        return reference(M)
    return out.view(*M.shape[:-2], k)


OP = register(Op("gram_eigvalsh", [
    Backend("native", _native_why_not, _native, "C++/OpenMP cyclic Jacobi, 8 matrices per SIMD group (CPU)"),
    Backend("reference", lambda M: [], reference, "torch.linalg.eigvalsh of the float64 Gram matrix"),
]))


def gram_eigvalsh(M: Tensor, *, backend: str = "auto") -> Tensor:
    """Eigenvalues, ascending, of M^T M for M (..., m, k) real floating: float64 (..., k), not clamped.

    Inputs are not validated here (an internal building block); raises ValueError for fewer than 2 dims.
    """
    if M.dim() < 2:
        raise ValueError(f"M: expected a batch of panels (..., m, k), got shape {tuple(M.shape)}")
    if M.shape[-1] == 0 or M.numel() == 0:
        return torch.zeros(*M.shape[:-2], M.shape[-1], dtype=torch.float64, device=M.device)
    return OP(M, backend=backend)
