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
