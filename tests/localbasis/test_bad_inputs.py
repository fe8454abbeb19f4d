"""Issue 10 on the Local Basis side: every bad input gets one clear error naming the argument at fault, and
half-precision inputs give results in their own dtype instead of LAPACK's NotImplementedError.

f's output is checked where it enters (jacobian.linearize), so each class of bad f is run through every path:
exact and randomized, torch.func (a plain callable) and the fused MLP path (MLPSpec).
"""
import math

import numpy as np
import pytest
import torch

import latentfast as lf
from nets import Mapping
from test_grassmann import bases_with_angles

D = 16
PATHS = [("exact", "func"), ("randomized", "func"), ("exact", "spec"), ("randomized", "spec")]
PATH_IDS = [f"{m}-{p}" for m, p in PATHS]


@pytest.fixture(scope="module")
def spec():
    torch.manual_seed(0)
    return Mapping(D, 2).spec()


def _run(f, z, method, k=3, **kw):
    return lf.local_basis(f, z, k, method=method, oversample=2, **kw)


# ---------------------------------------------------------------------------------------------------------------
# f's output: a tensor, exactly B rows, z's dtype, finite (and a finite Jacobian), whichever path


def test_issue_example_extra_row_is_refused_not_reshaped():
    """The issue's regression: one extra row used to be folded into a (4, 160 * 5 / 4) output."""
    W = torch.randn(128, 160)
    f = lambda v: torch.cat([torch.tanh(v @ W), torch.tanh(v[:1] @ W)])  # noqa: E731
    for method in ("auto", "exact", "randomized"):
        with pytest.raises(ValueError, match=r"^f: expected f\(z\) to have one row per latent") as info:
            lf.local_basis(f, torch.randn(4, 128), 3, method=method)
        assert "(2, 160)" in str(info.value)


BAD_F = {
    "list": (lambda v: [v * 2], TypeError, r"^f: expected f\(z\) to return a torch.Tensor.*got list"),
    "scalar": (lambda v: (v * 2).sum(), ValueError, r"^f: expected f\(z\) to have one row per latent.*got shape \(\)"),
    "extra-row": (lambda v: torch.cat([v * 2, v[:1]]), ValueError, r"^f: .*one row per latent"),
    "float64": (lambda v: (v * 2).double(), TypeError, r"^f: expected f\(z\) in z's dtype torch.float32, got torch.float64"),
    "int": (lambda v: (v * 2).long(), TypeError, r"^f: expected a floating-point f\(z\)"),
    "empty": (lambda v: v[:, :0], ValueError, r"^f: expected f\(z\) to have at least one output"),
}


@pytest.mark.parametrize("method", ["exact", "randomized", "auto"])
@pytest.mark.parametrize("case", list(BAD_F))
def test_bad_f_output_names_f(case, method):
    f, exc, pattern = BAD_F[case]
    with pytest.raises(exc, match=pattern):
        lf.local_basis(f, torch.randn(5, D), 2, method=method, oversample=2)


def _nan_at_latent(path, spec, row):
    """(f, z) whose f(z) (func path) or Jacobian (MLPSpec path: PixelNorm's mean square overflows, f(z) stays
    finite) is not finite at latent ``row`` only."""
    z = torch.randn(6, D)
    if path == "spec":
        z[row, 0] = 3e38
        return spec, z
    z[row, 0] = 7.0
    return (lambda v: torch.where(v[:, :1] == 7.0, float("nan"), 1.0) * torch.tanh(v)), z


@pytest.mark.parametrize("chunk_size", [None, 1], ids=["one-chunk", "chunks-of-1"])
@pytest.mark.parametrize("method,path", PATHS, ids=PATH_IDS)
def test_non_finite_f_or_jacobian_names_f_and_the_latent(spec, method, path, chunk_size):
    f, z = _nan_at_latent(path, spec, 4)
    with pytest.raises(ValueError, match=r"^f: (f\(z\)|the Jacobian of f.*) is not finite at latent 4 ") as info:
        _run(f, z, method, chunk_size=chunk_size)
    assert "_LinAlgError" not in type(info.value).__name__


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_finite_output_with_infinite_jacobian(method):
    """sqrt(|v|) is finite at 0 but its derivative is not: the Jacobian check catches it, at the right latent."""
    z = torch.randn(3, D)
    z[1, 5] = 0.0
    with pytest.raises(ValueError, match=r"^f: the Jacobian of f \(a [JV]VP\) is not finite at latent 1 "):
        _run(lambda v: torch.sqrt(v.abs()), z, method)


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_huge_latents_through_mlpspec(spec, method):
    """|z| >= 1e20 overflows PixelNorm's mean square in float32: a clear error, not cholesky_qr's _LinAlgError."""
    z = torch.randn(4, D)
    z[2] *= 1e20
    with pytest.raises(ValueError, match=r"^f: the Jacobian of f .* is not finite at latent 2 "):
        _run(spec, z, method)


def test_mismatched_k_names_k_with_the_sizes():
    with pytest.raises(ValueError, match=r"^k: expected 1 <= k <= min\(d_in, d_out\) = 1 \(d_in = 16, d_out = 1\)"):
        lf.local_basis(lambda v: v.sum(1, keepdim=True), torch.randn(4, D), 3)


# ---------------------------------------------------------------------------------------------------------------
# float16 / bfloat16: computed in float32, returned in the input dtype


HALF = [torch.float16, torch.bfloat16]
HALF_IDS = ["float16", "bfloat16"]


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("method,path", PATHS, ids=PATH_IDS)
def test_local_basis_half_precision(spec, dtype, method, path):
    torch.manual_seed(3)
    z = torch.randn(3, D)
    f = spec if path == "spec" else (lambda v: torch.tanh(v @ spec.weights[0].T.to(v.dtype)))
    ref = _run(f, z, method, k=4, generator=torch.Generator().manual_seed(0))
    half = _run(f, z.to(dtype), method, k=4, generator=torch.Generator().manual_seed(0))
    for name in ("points", "basis", "singular_values", "input_basis", "residual"):
        t = getattr(half, name)
        assert t.dtype == dtype, name
        assert bool(torch.isfinite(t).all()), name
    eps = torch.finfo(dtype).eps
    rel = ((half.singular_values.float() - ref.singular_values) / ref.singular_values).abs().max()
    assert float(rel) < 40 * eps  # f itself runs in the half dtype: its Jacobian is accurate to a few eps
    # orthonormal to the dtype's precision, and accepted as such by the Grassmann functions
    lf.grassmann_distance(half.basis, half.basis)
    gram = half.basis.float().transpose(1, 2) @ half.basis.float()
    assert float((gram - torch.eye(4)).abs().max()) < 4 * eps


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_grassmann_half_precision(dtype):
    theta = torch.tensor([0.3, 0.7, 0.05])
    A, B = bases_with_angles(theta, n=40)
    A, B = A.to(dtype), B.to(dtype)
    d = lf.grassmann_distance(A, B)
    assert d.dtype == dtype
    eps = torch.finfo(dtype).eps
    assert abs(float(d) - float(theta.norm())) < 4 * eps
    assert float(lf.grassmann_distance(A, A)) < 1e-3  # same span: 0, not the basis's rounding read as angles
    X = torch.stack([A, B, A])
    P = lf.pairwise_grassmann(X)
    assert P.dtype == dtype and P.shape == (3, 3)
    assert abs(float(P[0, 1]) - float(theta.norm())) < 4 * eps and float(P[0, 2]) < 1e-3


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_traverse_and_warpage_half_precision(spec, dtype):
    z = torch.randn(4, D).to(dtype)
    tr = lf.traverse_iterative(spec, z[:2], 0, num_steps=2, step=0.1, method="exact")
    assert tr.inputs.dtype == dtype and tr.outputs.dtype == dtype and tr.inputs.shape == (2, 5, D)
    assert bool(torch.isfinite(tr.outputs).all())
    w = lf.warpage(spec, z, 2, eps=[0.1], method="exact")
    assert math.isfinite(w.local[2][0.1].mean) and math.isfinite(w.random_points[2].mean)


def test_float32_bases_cast_to_float64_are_accepted():
    """The check must not refuse what latentfast produced: float32 bases (|Q^T Q - I| ~ 1e-7) in float64."""
    torch.manual_seed(1)
    lb = lf.local_basis(Mapping(128, 4).spec(), torch.randn(4, 128), 8, method="randomized")
    A = lb.basis.double()
    assert float(lf.grassmann_distance(A, A).max()) < 1e-5
    assert lf.pairwise_grassmann(A).shape == (4, 4)
    Q = torch.linalg.qr(torch.randn(50, 3, dtype=torch.float64)).Q
    with pytest.raises(ValueError, match=r"^A: expected orthonormal columns"):
        lf.grassmann_distance(Q * 1.01, Q)  # an unnormalised basis is still refused


# ---------------------------------------------------------------------------------------------------------------
# warpage and traverse: arguments that are scalars, numpy types, non-positive counts, non-finite values


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Mapping(D, 2)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(k=[]), ValueError, r"^k: expected at least one int"),
    (dict(k=[2, 0]), ValueError, r"^k: expected an int in \[1, inf\], got 0"),
    (dict(k=2.0), TypeError, r"^k: expected an int"),
    (dict(k=True), TypeError, r"^k: expected an int"),
    (dict(eps=[float("nan")]), ValueError, r"^eps: expected a finite number, got nan"),
    (dict(eps=float("inf")), ValueError, r"^eps: expected a finite number"),
    (dict(eps=[]), ValueError, r"^eps: expected at least one number"),
    (dict(eps="0.1"), TypeError, r"^eps: expected a number"),
    (dict(eps=[1e39]), ValueError, r"^eps: 1e\+39 moves z past the range of torch.float32"),
    (dict(num_random_subspaces=-5), ValueError, r"^num_random_subspaces: expected an int in \[1, inf\], got -5"),
    (dict(num_random_subspaces=0), ValueError, r"^num_random_subspaces: expected an int in \[1, inf\], got 0"),
    (dict(num_random_subspaces=2.5), TypeError, r"^num_random_subspaces: expected an int"),
    (dict(global_basis=torch.full((D, 4), float("nan"))), ValueError, r"^global_basis: expected finite values"),
    (dict(global_basis=torch.ones(D, 4, dtype=torch.int64)), TypeError, r"^global_basis: expected a floating"),
], ids=["k-empty", "k-zero", "k-float", "k-bool", "eps-nan", "eps-inf", "eps-empty", "eps-str", "eps-overflow",
        "nrs-negative", "nrs-zero", "nrs-float", "global-nan", "global-int"])
def test_warpage_bad_arguments_are_named(net, kwargs, exc, pattern):
    kwargs = {"k": 2, **kwargs}
    with pytest.raises(exc, match=pattern):
        lf.warpage(net, torch.randn(4, D), method="exact", **kwargs)


def test_warpage_accepts_numpy_integers_and_scalars(net):
    z = torch.randn(4, D)
    base = lf.warpage(net, z, [2], eps=[0.1], method="exact", num_random_subspaces=4)
    for k, eps, count in [(np.int64(2), 0.1, np.int64(4)), (np.array([2]), np.float32(0.1), 4),
                          (torch.tensor([2]), np.array([0.1]), torch.tensor(4))]:
        w = lf.warpage(net, z, k, eps=eps, method="exact", num_random_subspaces=count)
        assert w.ks == [2] and w.eps == [pytest.approx(0.1)]
        assert w.random_points[2].mean == pytest.approx(base.random_points[2].mean, rel=1e-6)
        assert w.random_subspaces[2].mean == pytest.approx(base.random_subspaces[2].mean, rel=1e-6)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(step=float("nan")), ValueError, r"^step: expected a finite number, got nan"),
    (dict(step=float("inf")), ValueError, r"^step: expected a finite number"),
    (dict(step="big"), TypeError, r"^step: expected a real number"),
    (dict(step=1e38), ValueError, r"^step: 1e\+38 (takes the traversal past the range of torch.float32|led, after 1)"),
    (dict(index=None), ValueError, r"^index: give exactly one of index"),
    (dict(direction=torch.ones(D)), ValueError, r"^index: give exactly one of index"),
    (dict(index=None, direction=torch.zeros(D)), ValueError, r"^direction: expected a non-zero vector"),
    (dict(index=None, direction=torch.full((D,), float("nan"))), ValueError, r"^direction: expected finite"),
    (dict(index=None, direction=torch.ones(D + 1)), ValueError, r"^direction: expected shape \(16,\) or \(2, 16\)"),
    (dict(index=None, direction=torch.ones(2, 3, D)), ValueError, r"^direction: expected shape"),
], ids=["step-nan", "step-inf", "step-str", "step-overflow", "neither", "both", "dir-zero", "dir-nan",
        "dir-width", "dir-rank"])
def test_traverse_iterative_bad_arguments_are_named(net, kwargs, exc, pattern):
    kwargs = {"index": 0, "step": 0.1, **kwargs}
    with pytest.raises(exc, match=pattern):
        lf.traverse_iterative(net, torch.randn(2, D), num_steps=2, method="exact", **kwargs)


def test_traverse_iterative_zero_singular_value_is_named():
    """Direction 3 of a rank-2 map has s = 0 (up to rounding): step / s would send z to ~1e6 or to inf."""
    f = lambda v: torch.cat([v[:, :2], 0 * v[:, 2:]], 1)  # noqa: E731
    with pytest.raises(ValueError, match=r"^index: the followed direction has singular value .*numerically 0"):
        lf.traverse_iterative(f, torch.randn(2, 8), 3, num_steps=2, step=0.1, method="exact")
    tr = lf.traverse_iterative(f, torch.randn(2, 8), 3, num_steps=2, step=0.1, method="exact",
                               scale_by_singular_value=False)
    assert bool(torch.isfinite(tr.inputs).all())


# ---------------------------------------------------------------------------------------------------------------
# traverse_iterative(direction=...): follow the local direction best aligned with a given output-space vector


def test_traverse_iterative_follows_the_direction_best_aligned_with_d():
    torch.manual_seed(0)
    net = Mapping(24, 3).double()
    z = torch.randn(2, 24, dtype=torch.float64)
    lb = lf.local_basis(net, z, method="exact")
    d = lb.basis[:, :, 2] + 0.3 * lb.basis[:, :, 5]  # (B, d_out), closest to u_2 at the start
    n = 4
    tr = lf.traverse_iterative(net, z, direction=-d, num_steps=n, step=0.05)
    assert bool((tr.indices[:, n] == 2).all())
    # the first + step goes along the v whose u is oriented along -d: the output moves along -d
    moved = tr.outputs[:, n + 1] - tr.outputs[:, n]
    assert float(((moved * -d).sum(1)).min()) > 0
    # at every visited point the recorded index is the local direction whose u has the largest |cos| with d
    for s in range(2 * n + 1):
        here = lf.local_basis(net, tr.inputs[:, s], method="exact")
        assert torch.equal(tr.indices[:, s], torch.einsum("bdk,bd->bk", here.basis, d).abs().argmax(1))
    # a single (d_out,) vector works for every latent, and a single latent drops the batch dimension
    one = lf.traverse_iterative(net, z[0], direction=d[0], num_steps=2, step=0.05)
    assert one.inputs.shape == (5, 24) and int(one.indices[2]) == 2


# ---------------------------------------------------------------------------------------------------------------
# MLPSpec and apply_to_layers


def test_mlpspec_accepts_numpy_and_names_bad_parts():
    w = np.eye(3)
    spec = lf.MLPSpec([w], [None])
    assert torch.is_tensor(spec.weights[0]) and spec.weights[0].dtype == torch.float64
    z = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(spec(z), lf.MLPSpec([torch.eye(3, dtype=torch.float64)], [None])(z))
    with pytest.raises(TypeError, match=r"^weights: expected a list"):
        lf.MLPSpec(torch.eye(3), [None])
    with pytest.raises(TypeError, match=r"^weights\[0\]: expected a floating-point tensor"):
        lf.MLPSpec([np.eye(3, dtype=np.int64)], [None])
    with pytest.raises(TypeError, match=r"^weights\[1\]: expected a torch.Tensor or numpy.ndarray"):
        lf.MLPSpec([np.eye(3), "W"], [None, None])
    with pytest.raises(TypeError, match=r"^biases\[0\]: expected a torch.Tensor"):
        lf.MLPSpec([np.eye(3)], [[0.0, 0.0, 0.0]])


@pytest.mark.parametrize("layers", [range(2, 5), [2, 3, 4], np.arange(2, 5), torch.arange(2, 5), (2, 3, 4),
                                    slice(2, 5), [np.int64(2), 3, torch.tensor(4)]],
                         ids=["range", "list", "numpy", "torch", "tuple", "slice", "mixed"])
def test_apply_to_layers_accepts_integer_collections(layers):
    ws = torch.randn(2, 6, 4)
    d = torch.randn(4)
    out = lf.apply_to_layers(ws, d, layers, 3.0)
    torch.testing.assert_close(out, lf.apply_to_layers(ws, d, range(2, 5), 3.0), rtol=0, atol=0)
    torch.testing.assert_close(out[:, 2:5], ws[:, 2:5] + 3.0 * d)
    one = lf.apply_to_layers(ws, d, np.int64(1), np.float32(2.0))
    torch.testing.assert_close(one[:, 1], ws[:, 1] + 2.0 * d)


@pytest.mark.parametrize("layers,exc,pattern", [
    (True, TypeError, r"^layers: expected an int or a sequence of ints, got True"),
    ([1.5], TypeError, r"^layers: expected ints, got 1.5"),
    (torch.tensor([1.0, 2.0]), TypeError, r"^layers: expected ints"),
    ([], ValueError, r"^layers: expected at least one int"),
    (slice(5, 5), ValueError, r"^layers: expected a slice selecting at least one"),
    ([7], ValueError, r"^layers: expected an int in \[-6, 5\], got 7"),
    (np.arange(4).reshape(2, 2), ValueError, r"^layers: expected an int or a 1-D sequence"),
], ids=["bool", "float", "float-tensor", "empty", "empty-slice", "out-of-range", "2d"])
def test_apply_to_layers_bad_layers(layers, exc, pattern):
    with pytest.raises(exc, match=pattern):
        lf.apply_to_layers(torch.randn(2, 6, 4), torch.randn(4), layers, 1.0)


@pytest.mark.parametrize("fn", ["traverse_linear", "apply_to_layers"])
def test_edits_refuse_non_finite_inputs(fn):
    nan = torch.tensor([1.0, float("nan"), 0.0, 0.0])
    if fn == "traverse_linear":
        with pytest.raises(ValueError, match=r"^direction: expected finite"):
            lf.traverse_linear(torch.randn(3, 4), nan, [1.0])
        with pytest.raises(ValueError, match=r"^alphas: expected a finite number"):
            lf.traverse_linear(torch.randn(3, 4), torch.ones(4), [1.0, float("inf")])
    else:
        with pytest.raises(ValueError, match=r"^direction: expected finite"):
            lf.apply_to_layers(torch.randn(2, 6, 4), nan, [1], 1.0)
        with pytest.raises(ValueError, match=r"^alpha: expected a finite number"):
            lf.apply_to_layers(torch.randn(2, 6, 4), torch.ones(4), [1], float("nan"))
