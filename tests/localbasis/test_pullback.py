"""The pullback metric side of local_basis: output_basis=False (V and S only) and W+ latents (B, num_ws, w_dim)."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

import latentfast as lf
from nets import sign_fix


class WPlusNet(nn.Module):
    """(B, 3, 5) W+ latents -> (B, 40): each layer's latent modulates its own linear map (a synthesis-shaped f)."""

    def __init__(self):
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(5, 40) for _ in range(3))

    def forward(self, ws):
        x = torch.ones(ws.shape[0], 40, dtype=ws.dtype)
        for i, m in enumerate(self.maps):
            x = torch.tanh(x * m(ws[:, i]))
        return x


def _oracle(f, z):
    J = torch.stack([torch.func.jacfwd(lambda v: f(v[None]).reshape(-1))(zi).reshape(-1, zi.numel()) for zi in z]).detach()
    U, S, Vt = np.linalg.svd(J.numpy(), full_matrices=False)
    return J, torch.from_numpy(U), torch.from_numpy(S), torch.from_numpy(Vt)


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_output_basis_false_gives_the_same_v_and_s(method):
    torch.manual_seed(0)
    f = WPlusNet().double().requires_grad_(False)
    ws = torch.randn(4, 3, 5, dtype=torch.float64)
    # randomized: a full-rank sketch (r = k + oversample = d_in = 15) spans the whole range, exact up to rounding
    run = lambda **kw: lf.local_basis(f, ws, 4, method=method, oversample=11,  # noqa: E731
                                      generator=torch.Generator().manual_seed(2), **kw)
    full, lean = run(), run(output_basis=False)
    assert lean.basis is None and full.basis.shape == (4, 40, 4)
    assert lean.input_basis.shape == (4, 3, 5, 4) and lean.k == 4
    torch.testing.assert_close(lean.singular_values, full.singular_values, rtol=1e-10, atol=0)
    torch.testing.assert_close(lean.input_basis, full.input_basis, rtol=0, atol=1e-9)  # same signs too
    torch.testing.assert_close(lean.residual, full.residual, rtol=1e-10, atol=0)
    # against the float64 SVD of the dense Jacobian (W+ flattened layer-major)
    J, U, S, Vt = _oracle(f, ws)
    _, Vo = sign_fix(U[:, :, :4], Vt[:, :4].transpose(1, 2))
    torch.testing.assert_close(full.singular_values, S[:, :4], rtol=1e-9, atol=0)
    torch.testing.assert_close(lean.input_basis.reshape(4, 15, 4), Vo, rtol=0, atol=1e-8)


def test_output_basis_false_when_d_out_is_smaller():
    torch.manual_seed(1)
    f = nn.Sequential(nn.Linear(15, 6), nn.Tanh()).double().requires_grad_(False)
    z = torch.randn(3, 15, dtype=torch.float64)
    full, lean = lf.local_basis(f, z, 4, method="exact"), lf.local_basis(f, z, 4, method="exact", output_basis=False)
    assert lean.basis is None
    torch.testing.assert_close(lean.input_basis, full.input_basis, rtol=0, atol=1e-12)
    torch.testing.assert_close(lean.singular_values, full.singular_values, rtol=0, atol=0)


def test_output_signs_in_row_blocks_match_the_product():
    from latentfast.localbasis.basis import fix_signs
    from latentfast.localbasis.krylov import output_signs as _output_signs

    A, M = torch.randn(2, 50, 6, dtype=torch.float64), torch.randn(2, 6, 3, dtype=torch.float64)
    U, _ = fix_signs(A @ M, torch.zeros(2, 1, 3, dtype=torch.float64))
    torch.testing.assert_close((A @ M) * _output_signs(A, M, rows=7), U, rtol=0, atol=0)


def test_single_wplus_latent_and_bad_layout():
    f = WPlusNet().double().requires_grad_(False)
    lb = lf.local_basis(f, torch.randn(1, 3, 5, dtype=torch.float64), 2, method="exact")
    assert lb.input_basis.shape == (1, 3, 5, 2) and lb.basis.shape == (1, 40, 2)
    with pytest.raises(ValueError, match="z: expected shape"):
        lf.local_basis(f, torch.randn(1, 3, 5, 2, dtype=torch.float64), 2)


@pytest.mark.slow
def test_wplus_local_basis_of_the_embedded_generator_equals_the_dense_svd():
    """Image w.r.t. W+ (8 x 64 = 512 inputs, 3072 outputs) in float64: exact, output_basis=False."""
    from latentfast.models.default import load_default_generator

    G = copy.deepcopy(load_default_generator()).double()
    z = G.sample_z(1, torch.Generator().manual_seed(0), dtype=torch.float64)
    ws = G.f(z)[:, None].repeat(1, G.num_ws, 1)
    ws = ws + 0.1 * torch.randn(ws.shape, dtype=ws.dtype, generator=torch.Generator().manual_seed(1))
    lb = lf.local_basis(G.synthesis, ws, 10, method="exact", output_basis=False)
    J, U, S, Vt = _oracle(G.synthesis, ws)
    _, Vo = sign_fix(U[:, :, :10], Vt[:, :10].transpose(1, 2))
    assert lb.input_basis.shape == (1, 8, 64, 10)
    torch.testing.assert_close(lb.singular_values, S[:, :10], rtol=1e-10, atol=0)
    torch.testing.assert_close(lb.residual, S[:, 10], rtol=1e-10, atol=0)
    torch.testing.assert_close(lb.input_basis.reshape(1, 512, 10), Vo, rtol=0, atol=1e-8)
