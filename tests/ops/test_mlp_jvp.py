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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("r", [1, 6])
def test_reference_passes_leave_inputs_alone_and_match_torch_func(dtype, r):
    """The reference passes scale by the activation derivative in place and reuse two GEMM buffers: the caller's
    tangents are never written (also when r = 1 or the cotangents are laid out (B, r, d), where a reshape is a
    view), repeated calls give the same result, and JVP / VJP agree with torch.func's float64 jvp / vjp of the
    same network written as modules (equalised-lr weights with a learning-rate multiplier, biases)."""
    g = torch.Generator().manual_seed(5)
    d, lr_mul, L, B = 24, 0.01, 3, 4
    raw = [torch.randn(d, d, generator=g) / lr_mul for _ in range(L)]  # stored / lr_mul, as StyleGAN2 does
    braw = [torch.randn(d, generator=g) * 0.3 / lr_mul for _ in range(L)]
    scale = lr_mul / math.sqrt(d)
    spec = MLPSpec([w * scale * math.sqrt(d) for w in raw], [b * lr_mul for b in braw])

    def f64(z):  # the same network, from the raw parameters, in float64
        x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
        for w, b in zip(raw, braw):
            x = torch.nn.functional.leaky_relu(x @ (w.double() * lr_mul).T + b.double() * lr_mul, 0.2) * math.sqrt(2)
        return x

    z = torch.randn(B, d, generator=g).to(dtype)
    V = torch.randn(B, d, r, generator=g).to(dtype)
    Ut = torch.randn(B, r, d, generator=g).to(dtype)
    U = Ut.transpose(1, 2)  # (B, d, r) laid out (B, r, d)
    V0, U0 = V.clone(), U.clone()
    lin = mlp_jvp.linearize(spec, z, backend="reference")
    jv, vj = lin.jvp(V), lin.vjp(U)
    assert torch.equal(V, V0) and torch.equal(U, U0)
    assert torch.equal(lin.jvp(V), jv) and torch.equal(lin.vjp(U), vj)
    z64 = z.double()
    J = torch.stack([torch.func.jacrev(lambda v: f64(v[None])[0])(zi) for zi in z64])
    want_jv = torch.func.vmap(lambda v: torch.func.jvp(f64, (z64,), (v,))[1], in_dims=2, out_dims=2)(V.double())
    torch.testing.assert_close(want_jv, J @ V.double())  # the oracle agrees with itself
    _, pullback = torch.func.vjp(f64, z64)
    want_vj = torch.func.vmap(lambda u: pullback(u)[0], in_dims=2, out_dims=2)(U.double())
    eps = torch.finfo(dtype).eps
    # f runs in ``dtype`` (3 layers of rounding): measured <= 3 eps of the largest entry; 30 eps allowed
    for got, want in ((jv, want_jv), (vj, want_vj)):
        assert got.dtype == dtype
        assert float((got.double() - want).abs().max()) <= 30 * eps * float(want.abs().max())
