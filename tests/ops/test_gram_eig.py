"""gram_eigvalsh: the native batched Jacobi against numpy's float64 eigvalsh and the torch reference."""
import numpy as np
import pytest
import torch

from latentfast._dispatch import BackendUnavailable, native_module
from latentfast.ops.small_linalg import gram_eig, gram_eigvalsh

needs_native = pytest.mark.skipif(native_module() is None or not hasattr(native_module(), "gram_eigvalsh_cpu_out"),
                                  reason="native extension not built")


def _oracle(M):
    M64 = M.double().numpy()
    return torch.from_numpy(np.linalg.eigvalsh(np.swapaxes(M64, -1, -2) @ M64))


@needs_native
@pytest.mark.parametrize("n, m, k, dtype", [(13, 10, 10, torch.float64), (9, 40, 7, torch.float32),
                                             (8, 3, 1, torch.float64), (17, 33, 32, torch.float64),
                                             (5, 2, 2, torch.float32)])
def test_native_matches_float64_oracle(n, m, k, dtype):
    g = torch.Generator().manual_seed(k)
    M = torch.randn(n, m, k, generator=g, dtype=torch.float64)
    M[0] = 0.0                                   # the zero matrix
    M[1, :, -1] = M[1, :, 0]                     # rank-deficient
    if m >= k:
        M[2] = torch.linalg.qr(M[2]).Q           # all eigenvalues 1 (repeated)
    M = M.to(dtype)
    got = gram_eigvalsh(M, backend="native")
    ref = _oracle(M)
    scale = ref.abs().amax(-1, keepdim=True).clamp_min(1e-300)
    assert got.dtype == torch.float64 and got.shape == (n, k)
    assert bool((got[:, 1:] >= got[:, :-1]).all())
    assert float(((got - ref).abs() / scale).max()) <= 1e-13
    torch.testing.assert_close(gram_eigvalsh(M, backend="reference"), ref, rtol=0, atol=1e-12 * float(scale.max()))


@needs_native
def test_native_strided_batched_views_and_tiny_eigenvalues():
    """The permuted GEMM-output view pairwise_grassmann passes, and eigenvalues 1e-14 below the largest."""
    g = torch.Generator().manual_seed(3)
    G = torch.randn(4 * 6, 5 * 6, generator=g, dtype=torch.float64)
    M = G.view(4, 6, 5, 6).permute(0, 2, 1, 3)  # (4, 5, 6, 6), not contiguous
    got = gram_eigvalsh(M, backend="native")
    torch.testing.assert_close(got, _oracle(M.contiguous()), rtol=0, atol=1e-12)
    # graded: singular values 1 .. 1e-7 -> eigenvalues 1 .. 1e-14, small ones to ~1e-15 relative of the trace
    U = torch.linalg.qr(torch.randn(30, 4, generator=g, dtype=torch.float64)).Q
    s = torch.tensor([1.0, 1e-3, 1e-5, 1e-7], dtype=torch.float64)
    V = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64)).Q
    got = gram_eigvalsh((U * s) @ V.T, backend="native")
    assert float((got - (s * s).flip(0)).abs().max()) <= 1e-15


def test_auto_falls_back_where_native_cannot_serve():
    M = torch.randn(3, 40, 33, dtype=torch.float64)  # k > 32
    torch.testing.assert_close(gram_eigvalsh(M), _oracle(M), rtol=1e-10, atol=1e-10)
    if native_module() is not None:
        with pytest.raises(BackendUnavailable, match="k = 33"):
            gram_eigvalsh(M, backend="native")
    with pytest.raises(ValueError, match="M: expected a batch of panels"):
        gram_eigvalsh(torch.ones(3))
    assert gram_eigvalsh(torch.ones(0, 4, 3)).shape == (0, 3)
    assert gram_eig.OP.names() == ["native", "reference"]
