"""Batched small symmetric eigensolver (issue 15, item 1(b)): the PyTorch reference of the parallel cyclic Jacobi
and the Triton kernel (in its interpreter here, small sizes) against float64 torch.linalg.eigh."""
from __future__ import annotations

import pytest
import torch

from latentfast import _dispatch
from latentfast.ops.small_linalg import triton_jacobi as tj

from conftest import TRITON_DEVICE, on_device

TRITON_OK = not _dispatch.triton_why_not(torch.zeros(1, device=TRITON_DEVICE))


def sym_batch(b: int, n: int, dtype=torch.float64, seed: int = 0, repeated: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 100 * n)
    if repeated:  # eigenvalues 1, 1, 1, 2, 3, ... (a degenerate eigenspace), random eigenvectors
        q, _ = torch.linalg.qr(torch.randn(b, n, n, generator=g, dtype=torch.float64))
        lam = torch.cat([torch.ones(min(3, n)), torch.arange(2, n - 1, dtype=torch.float64)])[:n]
        a = q @ torch.diag_embed(lam.expand(b, n)) @ q.transpose(1, 2)
    else:
        x = torch.randn(b, n, n, generator=g, dtype=torch.float64)
        a = x + x.transpose(1, 2)
    return a.to(dtype)


def assert_eigh(A: torch.Tensor, w: torch.Tensor, V: torch.Tensor, dtype: torch.dtype):
    """Eigenvalues within 4 n eps ||A|| of float64 eigh; A V = V diag(w) and V^T V = I to the same scale."""
    b, n, _ = A.shape
    A64 = A.to(torch.float64)
    w0 = torch.linalg.eigvalsh(A64)
    assert w.shape == (b, n) and V.shape == (b, n, n) and w.dtype == dtype and V.dtype == dtype
    norm = torch.linalg.matrix_norm(A64, ord=2).clamp_min(1e-300).view(b, 1)
    tol = 4 * max(n, 2) * torch.finfo(dtype).eps
    assert bool(((w.to(torch.float64) - w0).abs() <= tol * norm).all()), (w, w0)
    V64, w64 = V.to(torch.float64), w.to(torch.float64)
    res = (A64 @ V64 - V64 * w64.unsqueeze(1)).abs().amax((1, 2))
    assert bool((res <= 4 * tol * norm.squeeze(1)).all()), res
    orth = (V64.transpose(1, 2) @ V64 - torch.eye(n, dtype=torch.float64)).abs().max()
    assert float(orth) <= 4 * tol, orth


@pytest.mark.parametrize("n", [1, 2, 3, 8, 17, 40])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_matches_eigh(n, dtype):
    A = sym_batch(4, n, dtype)
    w, V = tj.jacobi_eigh_reference(A)
    assert_eigh(A, w, V, dtype)


def test_reference_repeated_eigenvalues_and_zero_matrix():
    A = sym_batch(3, 9, repeated=True)
    assert_eigh(A, *tj.jacobi_eigh_reference(A), torch.float64)
    Z = torch.zeros(2, 4, 4, dtype=torch.float64)
    w, V = tj.jacobi_eigh_reference(Z)
    assert torch.equal(w, torch.zeros(2, 4, dtype=torch.float64)) and torch.equal(V, torch.eye(4).double().expand(2, 4, 4))


@pytest.mark.skipif(not TRITON_OK, reason="triton unavailable here")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triton_matches_eigh(dtype):
    A = torch.cat([sym_batch(2, 5, dtype), sym_batch(1, 5, dtype, repeated=True)])
    At = A.transpose(1, 2)  # a strided (column-major) view of the same symmetric matrices
    w, V = tj.jacobi_eigh_triton(on_device(At, TRITON_DEVICE))
    assert_eigh(A, w.cpu(), V.cpu(), dtype)
    wr, _ = tj.jacobi_eigh_reference(A)
    torch.testing.assert_close(w.cpu(), wr, rtol=0, atol=20 * torch.finfo(dtype).eps * float(A.abs().max()))


@pytest.mark.skipif(not TRITON_OK, reason="triton unavailable here")
def test_triton_tiny_and_empty_batches():
    A = sym_batch(2, 1)
    w, V = tj.jacobi_eigh_triton(on_device(A, TRITON_DEVICE))
    assert torch.equal(w.cpu(), A[:, :, 0]) and torch.equal(V.cpu(), torch.ones(2, 1, 1, dtype=torch.float64))
    w, V = tj.jacobi_eigh_triton(on_device(torch.zeros(0, 3, 3), TRITON_DEVICE))
    assert w.shape == (0, 3) and V.shape == (0, 3, 3)


def test_bad_inputs_and_dispatch():
    with pytest.raises(ValueError, match=r"A: expected a batch of square matrices \(B, n, n\), got \(2, 3, 4\)"):
        tj.jacobi_eigh_reference(torch.zeros(2, 3, 4))
    with pytest.raises(TypeError, match="A: expected float32 or float64, got torch.float16"):
        tj.batched_eigh(torch.zeros(2, 3, 3, dtype=torch.float16))
    with pytest.raises(ValueError, match="backend: expected one of"):
        tj.batched_eigh(torch.zeros(1, 2, 2), backend="cusolver")
    assert any("n = 129 > 128" in r for r in tj.triton_why_not(torch.zeros(1, 129, 129)))
    A = sym_batch(3, 6)
    w, V = tj.batched_eigh(A)  # CPU: auto is torch.linalg.eigh
    assert_eigh(A, w, V, torch.float64)
    assert_eigh(A, *tj.batched_eigh(A, backend="jacobi"), torch.float64)
