"""Triton kernels for MLP forward / JVP / VJP: one GEMM per layer with the activation (or its derivative)
applied in the epilogue, so no elementwise pass re-reads the (B*r, d) tangents.

One kernel, ``_linear_epilogue``, computes  Y = X @ Wt  for X (R, K), Wt (K, N) and then, per tile:
  * EPI_ACT   (forward):  u = acc + bias;  slope = gain or gain*negative_slope by sign(u);  Y = u * slope,
                          and the slope is written too (the JVP/VJP of this layer need it);
  * EPI_SCALE (tangents): Y = acc * S[row // r, col]   — every latent's r rows share that latent's slopes;
  * EPI_NONE:             Y = acc (+ bias).
JVP of layer l:  T_{l+1} = (T_l W_l^T) * S_l                       -> EPI_SCALE with Wt = W_l^T
VJP of layer l:  G_l     = (G_{l+1} * S_l) W_l                      -> the scale by S_l is folded into the
                 epilogue of the layer above (EPI_SCALE with S_{l-1}), the first product takes S_top itself.
Accumulation is fp32 (``allow_tf32`` follows torch.backends.cuda.matmul.allow_tf32), inputs fp32/fp16/bf16.
64-bit row offsets: B * r * d can pass 2^31.
"""
from __future__ import annotations

import os

import torch

import triton
import triton.language as tl

EPI_NONE, EPI_ACT, EPI_SCALE = 0, 1, 2


@triton.jit
def _linear_epilogue(X, Wt, Y, BIAS, S, SOUT, R, N, K, ROWS_PER_GROUP,
                     stride_xr, stride_wk, stride_yr, stride_sr,
                     gain, gain_neg,
                     EPI: tl.constexpr, HAS_BIAS: tl.constexpr, ALLOW_TF32: tl.constexpr,
                     BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_r = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1).to(tl.int64)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R).to(tl.int64)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < R
    col_ok = cols < N
    acc = tl.zeros((BLOCK_R, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        x = tl.load(X + rows[:, None] * stride_xr + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(Wt + ks[:, None].to(tl.int64) * stride_wk + cols[None, :], mask=k_ok[:, None] & col_ok[None, :],
                    other=0.0)
        acc += tl.dot(x.to(tl.float32), w.to(tl.float32), allow_tf32=ALLOW_TF32)
    if HAS_BIAS:
        acc += tl.load(BIAS + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    mask = row_ok[:, None] & col_ok[None, :]
    if EPI == 1:
        slope = tl.where(acc >= 0, gain, gain_neg)
        acc = acc * slope
        tl.store(SOUT + rows[:, None] * stride_sr + cols[None, :], slope, mask=mask)
    elif EPI == 2:
        group = rows // ROWS_PER_GROUP
        s = tl.load(S + group[:, None] * stride_sr + cols[None, :], mask=mask, other=0.0)
        acc = acc * s
    tl.store(Y + rows[:, None] * stride_yr + cols[None, :], acc.to(Y.dtype.element_ty), mask=mask)


def _blocks(R: int, N: int, device: torch.device):
    """Tile sizes: GPU tiles sized for tensor cores; under the CPU interpreter, few big programs (each program
    runs in turn there, so fewer is faster)."""
    if device.type == "cuda":
        return 64, 128, 32
    br = min(128, max(16, triton.next_power_of_2(R)))
    bn = min(512, max(16, triton.next_power_of_2(N)))
    return br, bn, 64


def linear_epilogue(X: torch.Tensor, Wt: torch.Tensor, *, bias=None, epi=EPI_NONE, S=None, rows_per_group=1,
                    gain=1.0, negative_slope=1.0):
    """Y = epilogue(X @ Wt).  X (R, K) row-contiguous, Wt (K, N).  Returns Y, and the slopes (R, N) for EPI_ACT."""
    X = X.contiguous()
    Wt = Wt.contiguous()
    R, K = X.shape
    N = Wt.shape[1]
    Y = torch.empty(R, N, dtype=X.dtype, device=X.device)
    sout = torch.empty(R, N, dtype=X.dtype, device=X.device) if epi == EPI_ACT else Y
    s_in = S.contiguous() if S is not None else Y
    stride_s = sout.stride(0) if epi == EPI_ACT else s_in.stride(0)
    BR, BN, BK = _blocks(R, N, X.device)
    grid = (triton.cdiv(R, BR), triton.cdiv(N, BN))
    allow_tf32 = X.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    _linear_epilogue[grid](
        X, Wt, Y, bias if bias is not None else Y, s_in, sout, R, N, K, rows_per_group,
        X.stride(0), Wt.stride(0), Y.stride(0), stride_s,
        float(gain), float(gain * negative_slope),
        EPI=epi, HAS_BIAS=bias is not None, ALLOW_TF32=allow_tf32,
        BLOCK_R=BR, BLOCK_N=BN, BLOCK_K=BK,
    )
    return (Y, sout) if epi == EPI_ACT else Y
