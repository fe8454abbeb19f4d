import math

import numpy as np
import pytest
import torch

import latentfast as lf
from latentfast.localbasis import principal_angles


def bases_with_angles(theta, n=40, dtype=torch.float64, seed=0):
    """A, B (n, k) orthonormal with principal angles exactly theta, in a random rotated frame."""
    theta = torch.as_tensor(theta, dtype=torch.float64)
    k = theta.numel()
    A = torch.zeros(n, k, dtype=torch.float64)
    B = torch.zeros(n, k, dtype=torch.float64)
    A[:k, :k] = torch.eye(k, dtype=torch.float64)
    B[:k, :k] = torch.diag(torch.cos(theta))
    B[k:2 * k, :k] = torch.diag(torch.sin(theta))
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    R1, _ = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64))  # mix columns: same subspace
    return (Q @ A @ R1).to(dtype), (Q @ B).to(dtype)


ANGLES = [1e-7, 1e-5, 3e-4, 1e-2, 0.5, 1.2, math.pi / 2]


@pytest.mark.parametrize("angle", ANGLES, ids=[f"theta{a:.0e}" for a in ANGLES])
def test_known_angles_float64(angle):
    theta = torch.tensor([angle, angle / 3, 0.7 * angle])
    A, B = bases_with_angles(theta)
    expected = torch.sort(theta.double()).values
    got = principal_angles(A, B)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(lf.grassmann_distance(A, B), expected.norm(), rtol=1e-6, atol=0)
    torch.testing.assert_close(lf.grassmann_distance(A, B, "projection"), torch.sin(expected.max()), rtol=1e-6, atol=0)
    torch.testing.assert_close(lf.grassmann_distance(A, B, "chordal"), torch.sin(expected).norm(), rtol=1e-6, atol=0)


def test_projection_metric_equals_projector_norm():
    A, B = bases_with_angles(torch.tensor([0.3, 0.9, 0.1]), seed=3)
    proj = torch.linalg.matrix_norm(A @ A.T - B @ B.T, ord=2)
    torch.testing.assert_close(lf.grassmann_distance(A, B, "projection"), proj, rtol=1e-10, atol=0)


def test_small_angles_resolved_in_float32_where_arccos_fails():
    theta = torch.tensor([1e-4, 5e-5])
    A, B = bases_with_angles(theta, dtype=torch.float32)
    got = lf.grassmann_distance(A, B)
    assert abs(float(got) - float(theta.norm())) < 0.05 * float(theta.norm())
    # the official code's way (arccos of the cosines) cannot see these angles in float32
    cos = np.linalg.svd(A.numpy().T @ B.numpy(), compute_uv=False)
    naive = np.linalg.norm(np.arccos(np.clip(cos, -1, 1)))
    assert abs(naive - float(theta.norm())) > 0.2 * float(theta.norm())


def test_batched_broadcast():
    pairs = [bases_with_angles(torch.tensor([a, 2 * a], dtype=torch.float64), seed=i) for i, a in enumerate([0.1, 0.2, 0.4])]
    A = torch.stack([p[0] for p in pairs])
    B = torch.stack([p[1] for p in pairs])
    d = lf.grassmann_distance(A, B)
    expected = torch.tensor([math.hypot(a, 2 * a) for a in [0.1, 0.2, 0.4]], dtype=torch.float64)
    torch.testing.assert_close(d, expected, rtol=1e-10, atol=0)


@pytest.mark.parametrize("metric", ["geodesic", "projection", "chordal"])
def test_pairwise_matches_loop(metric):
    g = torch.Generator().manual_seed(0)
    P, n, k = 9, 30, 4
    X = torch.linalg.qr(torch.randn(P, n, k, generator=g, dtype=torch.float64)).Q
    X[3] = torch.linalg.qr(X[2] + 1e-6 * torch.randn(n, k, generator=g, dtype=torch.float64)).Q  # a near pair
    X[5, :, 0] = X[4, :, 0]  # one shared direction beside large angles
    X[5] = torch.linalg.qr(X[5]).Q
    D = lf.pairwise_grassmann(X, metric, chunk_size=4)
    loop = torch.zeros(P, P, dtype=torch.float64)
    for i in range(P):
        for j in range(P):
            if i != j:
                loop[i, j] = lf.grassmann_distance(X[i], X[j], metric)
    torch.testing.assert_close(D, loop, rtol=1e-9, atol=1e-13)
    assert float(D[2, 3]) > 0 and float(D[2, 3]) < 1e-4


def test_cosines_by_jacobi_equal_eigvalsh():
    """The GPU's route to the cosines (batched Jacobi SVD) against the CPU's (eigvalsh of M^T M), float64."""
    from latentfast.localbasis.grassmann import _cosines

    g = torch.Generator().manual_seed(1)
    A = torch.linalg.qr(torch.randn(6, 40, 7, generator=g, dtype=torch.float64)).Q
    M = A[:, None].transpose(-1, -2) @ A[None]  # (6, 6, 7, 7): every pair, identical pairs included
    j, e = _cosines(M, "jacobi"), _cosines(M, "eigvalsh")
    assert j.shape == e.shape == (6, 6, 7)
    assert bool((j[..., 1:] >= j[..., :-1]).all())
    torch.testing.assert_close(j, e, rtol=0, atol=1e-7)  # eigvalsh's sqrt of cos^2 is the less accurate one
    torch.testing.assert_close(j[range(6), range(6)], torch.ones(6, 7, dtype=torch.float64), rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "A, B, words",
    [
        (torch.randn(10, 3), torch.linalg.qr(torch.randn(10, 3)).Q, ["A", "orthonormal"]),
        (torch.linalg.qr(torch.randn(10, 3)).Q, torch.linalg.qr(torch.randn(10, 2)).Q, ["B", "(10, 3)", "(10, 2)"]),
        (torch.randn(10), torch.randn(10), ["A", "(..., n, k)"]),
        (torch.eye(3, 5), torch.eye(3, 5), ["A", "k <= n"]),
    ],
    ids=["not-orthonormal", "k-mismatch", "1d", "wide"],
)
def test_bad_bases_are_named(A, B, words):
    with pytest.raises(ValueError) as info:
        lf.grassmann_distance(A, B)
    for w in words:
        assert w in str(info.value)


def test_bad_metric():
    Q = torch.linalg.qr(torch.randn(6, 2)).Q
    with pytest.raises(ValueError, match="metric"):
        lf.grassmann_distance(Q, Q, "angle")
