"""mlp_jvp: every backend against a float64 torch.func oracle."""
import math

import pytest
import torch

from latentfast import BackendUnavailable, MLPSpec
from latentfast.ops import mlp_jvp

from conftest import TRITON_DEVICE

BACKENDS = ["reference", "triton"]


def make_spec(d_in, widths, *, pixel_norm=True, activate_last=True, bias=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ws, bs, d = [], [], d_in
    for w in widths:
        ws.append(torch.randn(w, d, generator=g, dtype=dtype) / math.sqrt(d))
        bs.append(torch.randn(w, generator=g, dtype=dtype) * 0.2 if bias else None)
        d = w
    return MLPSpec(ws, bs, pixel_norm=pixel_norm, activate_last=activate_last)


def oracle_jacobian(spec, z):
    spec64 = spec.to(torch.float64)
    return torch.stack([torch.func.jacrev(lambda v: spec64(v[None])[0])(zi) for zi in z.double()])


CASES = [
    pytest.param(dict(d_in=17, widths=[33, 33, 9]), 1, 1, id="din17-dout9-B1-r1"),
    pytest.param(dict(d_in=64, widths=[64] * 4), 7, 5, id="d64-L4-B7-r5"),
    pytest.param(dict(d_in=40, widths=[50, 30], pixel_norm=False, activate_last=False, bias=False), 3, 12,
                 id="nopn-linear-last-nobias"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cfg,B,r", CASES)
def test_forward_jvp_vjp_against_float64(backend, cfg, B, r):
    dtype = torch.float64 if backend == "reference" else torch.float32
    spec = make_spec(**cfg)
    z = torch.randn(B, cfg["d_in"], dtype=torch.float64)
    V = torch.randn(B, cfg["d_in"], r, dtype=torch.float64)
    U = torch.randn(B, cfg["widths"][-1], r, dtype=torch.float64)
    J = oracle_jacobian(spec, z)
    dev = TRITON_DEVICE if backend == "triton" else "cpu"
    lin = mlp_jvp.linearize(spec.to(device=dev), z.to(dtype=dtype, device=dev), backend=backend)
    # float32 kernels: compare against the float64 truth with a bound scaled to float32 rounding
    tol = dict(rtol=0, atol=1e-10) if dtype == torch.float64 else dict(rtol=0, atol=2e-5)
    torch.testing.assert_close(lin.points.double().cpu(), spec(z), **tol)
    torch.testing.assert_close(lin.jvp(V.to(dtype=dtype, device=dev)).double().cpu(), J @ V, **tol)
    torch.testing.assert_close(lin.vjp(U.to(dtype=dtype, device=dev)).double().cpu(), J.transpose(1, 2) @ U, **tol)


def test_triton_refuses_float64_with_reason():
    spec = make_spec(8, [8])
    with pytest.raises(BackendUnavailable, match="float64"):
        mlp_jvp.linearize(spec, torch.randn(2, 8, dtype=torch.float64), backend="triton")


def test_auto_on_cpu_never_picks_the_interpreter():
    spec = make_spec(8, [8])
    lin = mlp_jvp.linearize(spec, torch.randn(2, 8), backend="auto")
    assert type(lin).__name__ == "_ReferenceLinearization"
