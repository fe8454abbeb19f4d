"""Batched CholeskyQR2 and one-sided Jacobi SVD against float64 numpy."""
import numpy as np
import pytest
import torch

from latentfast.ops.small_linalg import cholesky_qr, jacobi_svd, orthonormalize_with_gram, thin_svd


def panels(B, n, r, cond, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(B, n, r, generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(B, r, r, generator=g, dtype=torch.float64)).Q
    s = torch.logspace(0, -np.log10(cond), r, dtype=torch.float64)
    return ((U * s) @ V.transpose(1, 2)).to(dtype)


@pytest.mark.parametrize("cond", [1.0, 1e4, 1e9, 1e15], ids=["cond1", "cond1e4", "cond1e9", "cond1e15"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cholesky_qr_orthonormal_and_reconstructs(cond, dtype):
    Y = panels(6, 100, 20, cond, dtype)
    Y[0, :, 3] = 0  # an exactly rank-deficient panel takes the Householder fallback
    Q, R = cholesky_qr(Y)
    eps = torch.finfo(dtype).eps
    eye = torch.eye(20, dtype=torch.float64)
    assert float((Q.double().transpose(1, 2) @ Q.double() - eye).abs().max()) < 50 * eps
    rel = torch.linalg.matrix_norm((Q @ R - Y).double()) / torch.linalg.matrix_norm(Y.double())
    assert float(rel.max()) < 50 * eps
    assert torch.equal(R.tril(-1), torch.zeros_like(R))


@pytest.mark.parametrize("cond", [1.0, 1e5, 1e15], ids=["cond1", "cond1e5", "cond1e15"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_orthonormalize_with_gram_matches_cholesky_qr(cond, dtype):
    """From a given Gram matrix: one pass (well conditioned, float32 result), two passes (cond 1e5, or a float64
    result), or the full fallback (cond 1e15, a rank-deficient panel): the same basis as cholesky_qr, orthonormal."""
    Y = panels(6, 100, 20, cond, torch.float64, seed=1)
    Y[0, :, 3] = 0
    Q = orthonormalize_with_gram(Y, Y.transpose(1, 2) @ Y, dtype)
    assert Q.dtype == torch.float64
    eps = torch.finfo(dtype).eps
    eye = torch.eye(20, dtype=torch.float64)
    assert float((Q.transpose(1, 2) @ Q - eye).abs().max()) < 50 * eps
    good = slice(1, None)  # the same panels where the basis is unique (full rank, well enough conditioned)
    if cond < 1e9:
        ref = cholesky_qr(Y)[0]
        torch.testing.assert_close(Q[good], ref[good], rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-9)


def test_cholesky_qr_bad_shape():
    with pytest.raises(ValueError, match="n >= r"):
        cholesky_qr(torch.randn(2, 3, 5))


@pytest.mark.parametrize("shape", [(3, 63, 63), (2, 40, 17), (2, 9, 9), (1, 5, 1)], ids=lambda s: "x".join(map(str, s)))
def test_jacobi_svd_matches_numpy(shape):
    B, n, m = shape
    A = torch.randn(B, n, m, dtype=torch.float64) * torch.logspace(0, -6, m, dtype=torch.float64)
    U, S, Vh = jacobi_svd(A)
    S0 = torch.from_numpy(np.linalg.svd(A.numpy(), compute_uv=False))
    torch.testing.assert_close(S, S0, rtol=1e-11, atol=0)  # high relative accuracy, small values included
    torch.testing.assert_close((U * S[:, None, :]) @ Vh, A, rtol=0, atol=1e-13)
    torch.testing.assert_close(U.transpose(1, 2) @ U, torch.eye(m, dtype=torch.float64).expand(B, m, m), rtol=0, atol=1e-12)
    torch.testing.assert_close(Vh @ Vh.transpose(1, 2), torch.eye(m, dtype=torch.float64).expand(B, m, m), rtol=0, atol=1e-12)


def test_thin_svd_methods_agree():
    W = panels(4, 80, 36, 1e3, torch.float64)
    P1, S1, R1 = thin_svd(W, "torch")
    P2, S2, R2 = thin_svd(W, "jacobi")
    torch.testing.assert_close(S1, S2, rtol=1e-12, atol=0)
    # same singular vectors up to sign
    torch.testing.assert_close((P1 * P2).sum(1).abs(), torch.ones(4, 36, dtype=torch.float64), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="method"):
        thin_svd(W, "qr")
