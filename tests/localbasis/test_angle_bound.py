"""Issue 13, randomized local basis: a posteriori residuals, per-direction angle bounds that really bound the
angle to the exact singular vectors (float64 oracle), and the adaptive default that reaches tol where the gap
allows it."""
import math

import pytest
import torch

import latentfast as lf
from latentfast.localbasis.krylov import angle_bounds
from nets import Mapping, oracle


def _sin(a, e):
    """sin of the angle between matching columns of a and e (B, n, k), accurate for tiny angles (no acos)."""
    a = a.double() / a.double().norm(dim=1, keepdim=True)
    c = (a * e).sum(1, keepdim=True)
    return (a - c * e).norm(dim=1).clamp(max=1)


def true_angles(lb, U, Vt):
    k = lb.k
    return torch.asin(torch.maximum(_sin(lb.basis, U[:, :, :k]), _sin(lb.input_basis, Vt[:, :k].transpose(1, 2))))


def relative_gaps(S, k):
    above = torch.cat([torch.full_like(S[:, :1], math.inf), S[:, :k - 1] - S[:, 1:k]], 1)
    return torch.minimum(above, S[:, :k] - S[:, 1:k + 1]) / S[:, :k]


@pytest.fixture(scope="module", params=["flat", "decaying"])
def spectrum(request):
    """A StyleGAN2-shaped mapping at random init (flat spectrum: sigma_10 / sigma_11 ~ 1.01-1.04) or with
    geometrically decaying layer spectra, and its float64 oracle SVD."""
    torch.manual_seed(2)
    net = Mapping(256, 8, decay=None if request.param == "flat" else 0.99)
    z = torch.randn(3, 256)
    _, U, S, Vt = oracle(net, z)
    return request.param, net, z, U, S, Vt


@pytest.mark.parametrize("iters", [0, 2, 4, None], ids=["q0", "q2", "q4", "adaptive"])
def test_bound_bounds_the_true_angle(spectrum, iters):
    name, net, z, U, S, Vt = spectrum
    k = 10
    lb = lf.local_basis(net.spec(), z, k, method="randomized", power_iters=iters,
                        generator=torch.Generator().manual_seed(0))
    assert lb.angle_bound.shape == (3, k) and lb.converged.shape == (3, k) and lb.converged.dtype == torch.bool
    true = true_angles(lb, U, Vt)
    bound = lb.angle_bound.double()
    assert bool((bound >= true).all()), (name, (true / bound).max())
    assert bool((bound <= math.pi / 2 + 1e-6).all())  # pi / 2 rounded to float32 is just above it
    torch.testing.assert_close(lb.converged, lb.angle_bound <= 1e-3)
    if iters is not None:
        assert bool((lb.iterations == iters).all())
        r = k + 10
        assert bool((lb.tangent_columns == r * (2 * iters + 3)).all())  # 2 r (q + 1) + the last JVP


def test_adaptive_reaches_tol_where_the_gap_allows(spectrum):
    """At the defaults every direction separated from its neighbours by >= 1 % (relative) is certified within
    1e-3 rad, and really is that close (float64 oracle)."""
    name, net, z, U, S, Vt = spectrum
    k = 10
    for f in (net.spec(), net):  # fused MLP path and torch.func
        lb = lf.local_basis(f, z, k, method="randomized", generator=torch.Generator().manual_seed(1))
        separated = relative_gaps(S, k) >= 0.01
        assert int(separated.sum()) >= 15, name  # the test means something
        assert bool(lb.converged[separated].all()), (name, lb.angle_bound[separated].max())
        assert float(true_angles(lb, U, Vt)[separated].max()) <= 1e-3
        assert bool((lb.iterations <= 12).all()) and bool((lb.iterations >= 2).all())


def test_adaptive_result_equals_the_fixed_count_it_ran(spectrum):
    """The adaptive result (triplets and residuals taken over from its last check) is the fixed-count result at
    the iterations it ran (eigendecomposition and residuals computed afresh), bounds included."""
    name, net, z, U, S, Vt = spectrum
    kw = dict(method="randomized", backend="reference")
    adaptive = lf.local_basis(net.spec(), z, 10, generator=torch.Generator().manual_seed(3), **kw)
    q = int(adaptive.iterations[0])
    assert q > 2 and bool((adaptive.iterations == q).all()), name  # ran past the first check
    fixed = lf.local_basis(net.spec(), z, 10, power_iters=q, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(fixed.tangent_columns, adaptive.tangent_columns)
    for a, b in ((adaptive.basis, fixed.basis), (adaptive.input_basis, fixed.input_basis)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(adaptive.singular_values, fixed.singular_values, rtol=1e-6, atol=0)
    torch.testing.assert_close(adaptive.angle_bound, fixed.angle_bound, rtol=1e-3, atol=0)


def test_skipped_checks_change_nothing_but_the_count(spectrum, monkeypatch):
    """A check that the previous one showed cannot pass (rho / delta > SKIP_FACTOR tol) is skipped: same
    iterations, triplets and bounds as checking every iteration, with fewer eigendecompositions."""
    from latentfast.localbasis import krylov

    name, net, z, U, S, Vt = spectrum
    checks = []
    real = krylov._settled

    def counted(*a):
        checks.append(a[0][1].shape[2])
        return real(*a)

    monkeypatch.setattr(krylov, "_settled", counted)
    run = lambda: lf.local_basis(net.spec(), z, 10, method="randomized", backend="reference",  # noqa: E731
                                 oversample=2, generator=torch.Generator().manual_seed(3))
    skipping = run()
    skipped = list(checks)
    checks.clear()
    monkeypatch.setattr(krylov, "SKIP_FACTOR", math.inf)
    every = run()
    assert len(skipped) < len(checks), (name, skipped, checks)  # the test means something
    assert torch.equal(skipping.iterations, every.iterations)
    for a, b in ((skipping.basis, every.basis), (skipping.input_basis, every.input_basis),
                 (skipping.singular_values, every.singular_values), (skipping.angle_bound, every.angle_bound)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_tighter_tol_iterates_more_and_max_iters_caps(spectrum):
    name, net, z, U, S, Vt = spectrum
    kw = dict(method="randomized", generator=torch.Generator().manual_seed(0))
    loose = lf.local_basis(net.spec(), z, 6, tol=0.3, **kw)
    assert bool((loose.iterations == 2).all())  # the first check already passes
    capped = lf.local_basis(net.spec(), z, 6, tol=1e-12, max_iters=3, **kw)
    assert bool((capped.iterations <= 3).all()) and not bool(capped.converged.any())
    assert bool((capped.angle_bound.double() >= true_angles(capped, U, Vt)).all())


def test_exact_method_reports_rounding_bounds():
    torch.manual_seed(0)
    net = Mapping(48, 3).double()
    z = torch.randn(2, 48, dtype=torch.float64)
    lb = lf.local_basis(net, z, 6, method="exact")
    _, U, S, Vt = oracle(net, z)
    true = true_angles(lb, U, Vt)
    assert bool((lb.angle_bound >= true).all()) and float(lb.angle_bound.max()) < 1e-9
    assert bool((lb.iterations == 0).all()) and bool((lb.tangent_columns == 48).all())


def test_angle_bounds_formula():
    """Gap below uses the neighbour's residual interval; a repeated or unresolved value gives pi/2."""
    s = torch.tensor([[3.0, 2.0, 1.0]], dtype=torch.float64)
    rho = torch.tensor([[1e-3, 1e-3, 0.2]], dtype=torch.float64)
    b = angle_bounds(s, rho, 2)
    assert b[0, 0] == pytest.approx(math.asin(1e-3 / (1.0 - 1e-3 / math.sqrt(2))))
    assert b[0, 1] == pytest.approx(math.asin(1e-3 / (1.0 - 0.2 / math.sqrt(2))))
    tie = angle_bounds(torch.tensor([[2.0, 2.0, 1.0]], dtype=torch.float64), torch.full((1, 3), 1e-6, dtype=torch.float64), 2)
    assert bool((tie == math.pi / 2).all())
