import math

import numpy as np
import pytest
import torch
from torch import nn

import latentfast as lf
from conftest import TRITON_DEVICE
from nets import Mapping, oracle, sign_fix


class OddMLP(nn.Module):
    """A small non-MLPSpec network with d_in != d_out (goes through torch.func)."""

    def __init__(self, d_in, d_out, hidden=24):
        super().__init__()
        self.a = nn.Linear(d_in, hidden)
        self.b = nn.Linear(hidden, d_out)

    def forward(self, z):
        return self.b(torch.tanh(self.a(z))).reshape(z.shape[0], -1)


@pytest.mark.parametrize("d_in,d_out", [(13, 21), (21, 13)], ids=["din13-dout21", "din21-dout13"])
@pytest.mark.parametrize("B", [1, 7])
@pytest.mark.parametrize("k_kind", ["one", "full"])
def test_exact_matches_float64_oracle(d_in, d_out, B, k_kind):
    f = OddMLP(d_in, d_out).double()
    z = torch.randn(B, d_in, dtype=torch.float64)
    kmax = min(d_in, d_out)
    k = 1 if k_kind == "one" else kmax
    lb = lf.local_basis(f, z, k, method="exact")
    J, U, S, Vt = oracle(f, z)
    Uo, Vo = sign_fix(U[:, :, :k], Vt[:, :k, :].transpose(1, 2))
    torch.testing.assert_close(lb.singular_values, S[:, :k], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lb.basis, Uo, rtol=0, atol=1e-8)
    torch.testing.assert_close(lb.input_basis, Vo, rtol=0, atol=1e-8)
    torch.testing.assert_close(lb.points, f(z), rtol=0, atol=1e-12)
    expected_res = S[:, k] if k < kmax else torch.zeros(B, dtype=torch.float64)
    torch.testing.assert_close(lb.residual, expected_res, rtol=1e-10, atol=1e-12)
    # J v_i = s_i u_i
    torch.testing.assert_close(J @ lb.input_basis, lb.basis * lb.singular_values[:, None, :], rtol=0, atol=1e-9)


def test_sign_convention_largest_entry_positive():
    f = OddMLP(9, 11).double()
    lb = lf.local_basis(f, torch.randn(3, 9, dtype=torch.float64), 5, method="exact")
    idx = lb.basis.abs().argmax(dim=1, keepdim=True)
    assert bool((lb.basis.gather(1, idx) > 0).all())


def test_stylegan2_mapping_exact_float32_vs_oracle():
    net = Mapping(512, 8)
    z = torch.randn(2, 512)
    lb = lf.local_basis(net, z, 20, method="exact")  # nn.Module -> torch.func path
    _, U, S, Vt = oracle(net, z)
    rel = (lb.singular_values.double() - S[:, :20]).abs() / S[:, :20]
    assert float(rel.max()) < 1e-4
    cos = (lb.basis.double() * sign_fix(U[:, :, :20], Vt[:, :20].transpose(1, 2))[0]).sum(1)
    # well-separated directions agree closely; near-degenerate pairs may rotate, so check the leading ones
    assert float(cos[:, :3].min()) > 0.999


def test_mlp_fast_path_equals_torch_func_path():
    from latentfast.localbasis.jacobian import FuncOperator, MLPOperator, linearize

    net = Mapping(64, 4).double()
    z = torch.randn(5, 64, dtype=torch.float64)
    assert isinstance(linearize(net, z).op, FuncOperator) and isinstance(linearize(net.spec(), z).op, MLPOperator)
    torch.testing.assert_close(linearize(net, z).dense(), linearize(net.spec(), z).dense(), rtol=0, atol=1e-12)
    via_func = lf.local_basis(net, z, method="exact")
    via_spec = lf.local_basis(net.spec(), z, method="exact")
    torch.testing.assert_close(via_func.singular_values, via_spec.singular_values, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(via_func.points, via_spec.points, rtol=0, atol=1e-12)
    # the leading (well-separated) directions agree; the sign convention makes them equal, not just parallel
    torch.testing.assert_close(via_func.basis[:, :, :3], via_spec.basis[:, :, :3], rtol=0, atol=1e-8)


@pytest.fixture(scope="module")
def decaying():
    torch.manual_seed(1)
    net = Mapping(512, 8, decay=0.995)
    z = torch.randn(3, 512)
    J, U, S, Vt = oracle(net, z)
    return net, z, J, S


@pytest.mark.parametrize("k,path", [(10, "spec"), (32, "spec"), (10, "func"), (32, "func"), (32, "triton")])
def test_randomized_accuracy_at_defaults(decaying, k, path):
    """spec: the fused MLP path (auto backend); func: torch.func; triton: the Triton MLP kernels (on the GPU
    when there is one, else in Triton's interpreter)."""
    net, z, J, S = decaying
    f = net.spec() if path != "func" else net
    kw = {}
    if path == "triton":
        f, z, kw = f.to(device=TRITON_DEVICE), z.to(TRITON_DEVICE), dict(backend="triton")
    lb = lf.local_basis(f, z, k, method="randomized", generator=torch.Generator().manual_seed(0), **kw)
    lb = lf.LocalBasis(*(v.cpu() if torch.is_tensor(v) else v for v in vars(lb).values()))
    assert lb.method == "randomized"
    rel = (lb.singular_values.double() - S[:, :k]).abs() / S[:, :k]
    assert float(rel.max()) < 0.01  # top-k singular values within 1 %
    approx = lb.basis.double() * lb.singular_values.double()[:, None, :] @ lb.input_basis.double().transpose(1, 2)
    true_residual = torch.linalg.matrix_norm(J - approx, ord=2)
    assert float((true_residual / S[:, k]).max()) <= 1.1  # residual within 1.1 x sigma_{k+1}
    est = lb.residual.double() / S[:, k]
    assert 0.9 <= float(est.min()) and float(est.max()) <= 1.1
    eye = torch.eye(k, dtype=torch.float64)
    torch.testing.assert_close(lb.basis.double().transpose(1, 2) @ lb.basis.double(), eye.expand(3, k, k), atol=1e-5, rtol=0)
    torch.testing.assert_close(lb.input_basis.double().transpose(1, 2) @ lb.input_basis.double(), eye.expand(3, k, k), atol=1e-5, rtol=0)


def test_randomized_generic_function_and_reproducibility():
    f = OddMLP(40, 30, hidden=50).double()
    z = torch.randn(4, 40, dtype=torch.float64)
    run = lambda: lf.local_basis(f, z, 5, method="randomized", oversample=10, generator=torch.Generator().manual_seed(3))
    a, b = run(), run()
    assert torch.equal(a.basis, b.basis) and torch.equal(a.singular_values, b.singular_values)
    _, U, S, Vt = oracle(f, z)
    torch.testing.assert_close(a.singular_values, S[:, :5], rtol=1e-3, atol=0)
    # a full-rank sketch (r = k + oversample = min(d_in, d_out)) spans the whole range: exact up to rounding
    full = lf.local_basis(f, z, 5, method="randomized", oversample=25, power_iters=0)
    torch.testing.assert_close(full.singular_values, S[:, :5], rtol=1e-9, atol=0)
    torch.testing.assert_close(full.residual, S[:, 5], rtol=1e-9, atol=0)
    torch.testing.assert_close(full.basis, sign_fix(U[:, :, :5], Vt[:, :5].transpose(1, 2))[0], rtol=0, atol=1e-8)


def test_single_latent_drops_batch_dim():
    net = Mapping(32, 3)
    lb = lf.local_basis(net, torch.randn(32), 4, method="exact")
    assert lb.basis.shape == (32, 4) and lb.singular_values.shape == (4,)
    assert lb.input_basis.shape == (32, 4) and lb.points.shape == (32,) and lb.residual.shape == ()


def test_auto_picks_by_size():
    small = OddMLP(10, 10)
    assert lf.local_basis(small, torch.randn(2, 10), 2).method == "exact"
    big = Mapping(256, 2)
    assert lf.local_basis(big, torch.randn(2, 256), 8).method == "randomized"
    assert lf.local_basis(big, torch.randn(2, 256)).method == "exact"  # k=None: all directions


def test_chunking_gives_the_same_answer():
    net = Mapping(48, 3).double()
    z = torch.randn(7, 48, dtype=torch.float64)
    a = lf.local_basis(net, z, 6, method="exact")
    b = lf.local_basis(net, z, 6, method="exact", chunk_size=3)
    torch.testing.assert_close(a.basis, b.basis, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "z, k, kwargs, exc, words",
    [
        (torch.randn(2, 3, 16), 2, {}, ValueError, ["z", "(B, d_in)", "(2, 3, 16)"]),
        (torch.randn(2, 15), 2, {}, ValueError, ["z", "16", "(2, 15)"]),
        (torch.tensor([[float("nan")] * 16]), 2, {}, ValueError, ["z", "NaN"]),
        (torch.randn(2, 16), 17, {}, ValueError, ["k", "16", "17"]),
        (torch.randn(2, 16), 0, {}, ValueError, ["k", "0"]),
        (torch.randn(0, 16), 2, {}, ValueError, ["z", "non-empty", "(0, 16)"]),
        (torch.randint(0, 3, (2, 16)), 2, {}, TypeError, ["z", "floating", "int64"]),
        (torch.randn(2, 16), 2, {"method": "svd"}, ValueError, ["method", "svd"]),
        (torch.randn(2, 16), None, {"method": "randomized"}, ValueError, ["k", "randomized"]),
    ],
    ids=["rank3", "width", "nan", "k-too-big", "k-zero", "empty", "int", "method", "randomized-no-k"],
)
def test_bad_input_is_named(z, k, kwargs, exc, words):
    net = Mapping(16, 2)
    with pytest.raises(exc) as info:
        lf.local_basis(net.spec(), z, k, **kwargs)
    for w in words:
        assert w in str(info.value)


def test_width_mismatch_through_generic_function_names_z():
    with pytest.raises(ValueError, match=r"z: f could not be applied"):
        lf.local_basis(OddMLP(8, 8), torch.randn(2, 9), 2)


def test_randomized_flat_spectrum_and_adaptive_tol():
    """A randomly initialised mapping network has a flat spectrum (the hard case for range finders)."""
    torch.manual_seed(2)
    net = Mapping(256, 8)
    z = torch.randn(2, 256)
    _, _, S, _ = oracle(net, z)
    for kwargs in ({}, {"tol": 1e-4}, {"power_iters": 4}):
        lb = lf.local_basis(net.spec(), z, 10, method="randomized", generator=torch.Generator().manual_seed(0), **kwargs)
        rel = (lb.singular_values.double() - S[:, :10]).abs() / S[:, :10]
        assert float(rel.max()) < 0.01, kwargs
    with pytest.raises(ValueError, match="tol"):
        lf.local_basis(net.spec(), z, 10, method="randomized", tol=0.0)
    with pytest.raises(ValueError, match="max_iters"):
        lf.local_basis(net.spec(), z, 10, method="randomized", max_iters=-1)


def test_randomized_bases_are_orthonormal_to_float32_rounding():
    """U and V of the randomized method are orthonormal to float32 rounding (what pairwise_grassmann and
    grassmann_distance then accept), also where the Krylov space nearly fills the output (the embedded
    generator's 64-d W holds 3 blocks of 20): float32 Gram-Schmidt there had left U 4e-5 from orthonormal."""
    from latentfast.models.default import load_default_generator

    G = load_default_generator()
    z = G.sample_z(16, torch.Generator().manual_seed(0))
    worst = 0.0
    for seed in range(12):
        lb = lf.local_basis(G.mlp_spec(), z, k=10, method="randomized", generator=torch.Generator().manual_seed(seed))
        for M in (lb.basis, lb.input_basis):
            M = M.double()
            worst = max(worst, float((M.transpose(1, 2) @ M - torch.eye(M.shape[-1], dtype=M.dtype)).abs().max()))
    assert worst <= 2e-6, worst
    lf.pairwise_grassmann(lb.basis[:, :, :5])  # the README's use: accepted


def test_gram_schmidt_in_slices_equals_the_whole():
    """Large output spaces are projected in column slices of K (bounded float64 memory): same block, as orthogonal."""
    from latentfast.localbasis.krylov import _orthogonalize_against
    from latentfast.ops.small_linalg import orthonormalize

    K = orthonormalize(torch.randn(3, 5000, 40)).transpose(1, 2).contiguous()
    Y = torch.randn(3, 20, 5000) + 10 * torch.randn(3, 20, 40) @ K  # mostly inside span(K)
    whole, sliced = _orthogonalize_against(Y, K), _orthogonalize_against(Y, K, max_elements=1000)  # 8 columns
    torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-6)
    for Q in (whole, sliced):
        assert float((Q @ K.transpose(1, 2)).abs().max()) <= 1e-6
        assert float((Q @ Q.transpose(1, 2) - torch.eye(20)).abs().max()) <= 2e-6


def test_gram_schmidt_with_kept_float64_rows_equals_converting():
    """With the caller's float64 copy of K (the fused second pass + CholeskyQR from its Gram): same block as
    converting K, as orthogonal to K and orthonormal, for a block mostly inside span(K) and for a generic one."""
    from latentfast.localbasis.krylov import _orthogonalize_against
    from latentfast.ops.small_linalg import orthonormalize

    K = orthonormalize(torch.randn(3, 600, 40)).transpose(1, 2).contiguous()
    for inside in (10.0, 0.0):
        Y = torch.randn(3, 20, 600) + inside * torch.randn(3, 20, 40) @ K
        K64 = torch.full((3, 60, 600), float("nan"), dtype=torch.float64)  # rows 40..60: not read
        K64[:, :40] = K
        kept = _orthogonalize_against(Y, K, K64=K64)
        assert kept.dtype == torch.float64 and torch.equal(K64[:, :40], K.double())
        torch.testing.assert_close(kept.float(), _orthogonalize_against(Y, K), rtol=0, atol=1e-6)
        assert float((kept @ K.double().transpose(1, 2)).abs().max()) <= 1e-12
        assert float((kept @ kept.transpose(1, 2) - torch.eye(20, dtype=torch.float64)).abs().max()) <= 1e-10


def test_mlp_spec_is_taken_once_per_call():
    """A module's mlp_spec() (which may rebuild its effective weights) runs once per local_basis call, not once
    per chunk; the result is the spec's own."""
    spec = lf.MLPSpec([torch.randn(32, 16) / 4, torch.randn(8, 32) / 6], [torch.randn(32), None])

    class Net:
        calls = 0

        def mlp_spec(self):
            Net.calls += 1
            return spec

        def __call__(self, z):
            return spec(z)

    z = torch.randn(6, 16)
    kw = dict(method="randomized", power_iters=2, chunk_size=2, backend="reference")
    lb = lf.local_basis(Net(), z, 2, generator=torch.Generator().manual_seed(0), **kw)
    assert Net.calls == 1
    ref = lf.local_basis(spec, z, 2, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(lb.input_basis, ref.input_basis) and torch.equal(lb.singular_values, ref.singular_values)
