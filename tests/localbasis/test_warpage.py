import math

import pytest
import torch

import latentfast as lf
from nets import Mapping


def test_linear_map_is_flat():
    """A linear f has the same local basis everywhere: local and random-pair distances are 0, random ones not."""
    A = torch.randn(12, 10, dtype=torch.float64)
    f = lambda z: z @ A.T
    z = torch.randn(8, 10, dtype=torch.float64)
    U = torch.linalg.svd(A, full_matrices=False).U
    w = lf.warpage(f, z, [2, 4], eps=(0.01, 1.0), global_basis=U, method="exact")
    for k in (2, 4):
        for e in (0.01, 1.0):
            assert w.local[k][e].mean < 1e-6
        assert w.random_points[k].mean < 1e-6
        assert w.global_[k].mean < 1e-6
        # Haar-random k-dim subspaces of R^12 are far apart: every angle is well away from 0
        assert w.random_subspaces[k].mean > 0.5 * math.sqrt(k)
    d = w.to_dict()
    assert set(d) >= {"local", "random_points", "random_subspaces", "global", "k", "eps"}


def test_mapping_network_is_warped_locally_smooth():
    torch.manual_seed(0)
    net = Mapping(32, 4).double()
    z = torch.randn(16, 32, dtype=torch.float64)
    w = lf.warpage(net, z, 3, eps=(1e-4, 1e-2, 1.0), method="exact")
    loc = w.local[3]
    # nearby points have nearby subspaces, growing with eps; far points are far apart
    assert loc[1e-4].mean < loc[1e-2].mean < loc[1.0].mean
    assert loc[1e-4].mean < 0.1 * w.random_points[3].mean


def test_warpage_bad_input():
    net = Mapping(8, 2)
    with pytest.raises(ValueError, match="at least 2"):
        lf.warpage(net, torch.randn(1, 8), 2)
    with pytest.raises(ValueError, match="global_basis"):
        lf.warpage(net, torch.randn(4, 8), 2, global_basis=torch.randn(8, 1))


@pytest.mark.parametrize("B", [9, 10])
def test_warpage_rows_are_the_per_latent_distances(B):
    """Each row against an independent computation in float64: the partner involution over disjoint pairs, the
    random-pair and global distances from exact local bases; and the summary is their mean and std."""
    torch.manual_seed(1)
    net = Mapping(12, 3).double()
    z = torch.randn(B, 12, dtype=torch.float64)
    G = torch.randn(12, 4, dtype=torch.float64)
    rows = lf.warpage_rows(net, z, [1, 3], eps=(1e-2, 1.0), global_basis=G, method="exact",
                           generator=torch.Generator().manual_seed(5))
    assert rows.local.shape == (B, 2, 2) and rows.random_points.shape == (B, 2) and rows.global_.shape == (B, 2)
    p = rows.partner
    paired = p >= 0
    assert int(paired.sum()) == 2 * (B // 2) and bool((p[p[paired]] == torch.arange(B)[paired]).all())
    assert bool((p[paired] != torch.arange(B)[paired]).all())
    assert torch.isnan(rows.random_points[~paired]).all()
    U = lf.local_basis(net, z, 3, "exact").basis
    for j, k in enumerate([1, 3]):
        i = torch.arange(B)[paired]
        expect = lf.grassmann_distance(U[i, :, :k], U[p[i], :, :k])
        torch.testing.assert_close(rows.random_points[i, j], expect, rtol=0, atol=1e-10)
        Q = torch.linalg.qr(G[:, :k]).Q
        torch.testing.assert_close(rows.global_[:, j], lf.grassmann_distance(U[:, :, :k], Q.expand(B, -1, -1)),
                                   rtol=0, atol=1e-10)
    assert bool((rows.local[:, :, 0] < rows.local[:, :, 1]).all())  # nearby points have nearby subspaces
    w = lf.Warpage.from_rows(rows)
    pairs = rows.random_points[paired & (torch.arange(B) < p)]  # each pair once
    assert w.random_points[3].mean == pytest.approx(float(pairs[:, 1].mean()), rel=1e-12)
    assert w.random_points[3].std == pytest.approx(float(pairs[:, 1].std(unbiased=False)), rel=1e-12)
    assert w.local[1][1.0].mean == pytest.approx(float(rows.local[:, 0, 1].mean()), rel=1e-12)
    assert w.global_[3].std == pytest.approx(float(rows.global_[:, 1].std(unbiased=False)), rel=1e-12)


def test_warpage_is_the_summary_of_its_rows():
    net = Mapping(8, 2).double()
    z = torch.randn(6, 8, dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    rows = lf.warpage_rows(net, z, [1, 2], eps=0.1, method="exact", generator=gen)
    summary = lf.Warpage.from_rows(rows, num_random_subspaces=5, generator=gen)
    w = lf.warpage(net, z, [1, 2], eps=0.1, method="exact", num_random_subspaces=5,
                   generator=torch.Generator().manual_seed(2))
    assert w.to_dict() == summary.to_dict()


def test_warpage_rows_single_latent_has_no_pair():
    net = Mapping(8, 2)
    rows = lf.warpage_rows(net, torch.randn(1, 8), 2, eps=0.1, method="exact")
    assert rows.partner.tolist() == [-1] and torch.isnan(rows.random_points).all()
    with pytest.raises(ValueError, match="rows: no latent has a partner"):
        lf.Warpage.from_rows(rows)
