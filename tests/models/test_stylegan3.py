"""StyleGAN3-T/-R pickles in NVIDIA's layout (tests/models/_sg3_reference.py) load through the restricted unpickler
into StyleGAN3Generator and reproduce the independent float64 reference; class-conditional SG2-ada / SG3 mapping
networks work per class; hostile SG3-shaped pickles are refused and run nothing."""
import os

import numpy as np
import pytest
import torch

import latentfast as lf
from latentfast.models import (MappingOnlyGenerator, StyleGAN2Generator, StyleGAN3Generator, UnsafePickleError,
                               as_generator, load_generator)
from latentfast.ops.mlp_jvp.reference import forward as mlp_forward

from . import _fake_nvidia as nv
from . import _sg3_reference as r3
from ._sg2_reference import random_params

TOL = dict(rtol=0, atol=1e-4)  # the bar: max abs error <= 1e-4 on images in [-1, 1]


def _load(tmp_path, G, name="network-snapshot-000200.pkl", snapshot=True, **kw):
    path = tmp_path / name
    path.write_bytes(r3.pickle_bytes(G, snapshot=snapshot))
    return load_generator(path, **kw)


def _compare(G, Gm, psi=1.0, cutoff=None, c=None, n=2):
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(7))
    ws = r3.mapping_ref(G, z, c, psi, cutoff)
    with torch.no_grad():
        img = Gm(z, truncation=psi, truncation_cutoff=cutoff, c=c)
        torch.testing.assert_close(Gm.mapping_ws(z, c, psi, cutoff).double(), ws, rtol=1e-5, atol=1e-5)
    ref = r3.synthesis_ref(G, ws)
    assert img.shape == ref.shape == (n, 3, G.img_resolution, G.img_resolution)
    assert ref.abs().max() > 0.05  # a real image, not a vanished signal
    torch.testing.assert_close(img.double(), ref, **TOL)
    return z


@pytest.mark.parametrize("cfg,res,channel_base,channel_max,num_layers,snapshot", [
    ("T", 16, 128, 16, 4, True), ("R", 16, 64, 8, 4, False),
    pytest.param("T", 32, 96, 8, 6, False, marks=pytest.mark.slow),
    pytest.param("R", 32, 48, 6, 5, True, marks=pytest.mark.slow)])
def test_stylegan3_matches_reference(tmp_path, cfg, res, channel_base, channel_max, num_layers, snapshot):
    G = r3.build(cfg, res=res, channel_base=channel_base, channel_max=channel_max, num_layers=num_layers)
    Gm = _load(tmp_path, G, snapshot=snapshot)
    assert isinstance(Gm, StyleGAN3Generator) and Gm.source_format == "nvidia-stylegan3"
    assert (Gm.size, Gm.num_ws, Gm.z_dim, Gm.w_dim, Gm.has_w_avg) == (res, num_layers + 2, 8, 12, True)
    if cfg == "R":  # R: 1x1 convs and radial (2-D) down filters in the non-critical layers
        assert any(L.down_filter is not None and L.down_filter.dim() == 2 for L in Gm.synthesis.layers)
        assert all(L.conv_kernel == 1 for L in Gm.synthesis.layers)
    _compare(G, Gm)
    _compare(G, Gm, psi=0.5, cutoff=2)


def test_stylegan3_fp16_layers_clamp_transform_and_mapping_depth(tmp_path):
    """fp16 layers (run in float32), an active conv_clamp, a user transform of the input and 5 mapping layers."""
    a = 0.3
    rot = torch.tensor([[np.cos(a), np.sin(a), 0.1], [-np.sin(a), np.cos(a), -0.2], [0, 0, 1]], dtype=torch.float32)
    G = r3.build("T", res=32, channel_base=96, channel_max=8, conv_clamp=0.4, num_fp16_res=1, mapping_layers=5,
                 transform=rot, seed=3)
    layers = [getattr(G.synthesis, n) for n in G.synthesis.layer_names]
    assert any(L.use_fp16 for L in layers) and not all(L.use_fp16 for L in layers), [L.use_fp16 for L in layers]
    Gm = _load(tmp_path, G)
    assert len(Gm.mapping.layers) == 5 and torch.equal(Gm.synthesis.input.transform, rot)
    with torch.no_grad():  # the clamp is active: some pre-clamp values exceed it
        x = Gm.synthesis.input(torch.randn(2, 12))
        assert Gm.synthesis.layers[0].conv_clamp == 0.4
        assert Gm.synthesis.layers[0](x, torch.randn(2, 12)).abs().max() <= 0.4 * 1.0001
    _compare(G, Gm, psi=0.8)


def test_stylegan3_adapter_surface(tmp_path):
    """The same Generator surface as StyleGAN2Generator, so local_basis, traversals and SFVQ take it as is."""
    Gm = _load(tmp_path, r3.build("R", res=16))
    assert as_generator(Gm) is Gm
    z = Gm.sample_z(4, torch.Generator().manual_seed(0))
    assert z.shape == (4, Gm.z_dim) and z.dtype == torch.float32
    with torch.no_grad():
        w = Gm.f(z)
        assert torch.equal(mlp_forward(Gm.mlp_spec(), z)[0], w)
        img = Gm.synthesize(w)
        assert img.shape == (4, 3, 16, 16) and img.abs().max() <= 1
        torch.testing.assert_close(Gm.synthesize(w[:, None].expand(-1, Gm.num_ws, -1)), img)
    basis = lf.local_basis(Gm, z, 3)
    assert basis.basis.shape[-1] == 3
    with pytest.raises(ValueError, match=r"latent: expected w of shape \(B, 12\) or ws of shape \(B, 6, 12\)"):
        Gm.synthesize(torch.randn(2, 3, 12, 1))
    with pytest.raises(ValueError, match=r"ws: expected shape \(B, 6, 12\), got shape \(2, 5, 12\)"):
        Gm.synthesize(torch.randn(2, 5, 12))


def test_stylegan3_mapping_only(tmp_path):
    G = r3.build("T", res=16)
    M = _load(tmp_path, G, name="stylegan3-t.pkl", mapping_only=True)
    assert isinstance(M, MappingOnlyGenerator) and M.num_ws == 6
    z = torch.randn(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(M.f(z).double(), r3.mapping_ref(G, z)[:, 0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(M.truncate(M.f(z)[:, None].repeat(1, 6, 1), 0.7).double(),
                                   r3.mapping_ref(G, z, psi=0.7), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["sg3", "sg2"])
def test_class_conditional_generators(tmp_path, kind):
    """c_dim > 0 loads; f(z, c) / mlp_spec(c) / set_class give the mapping of one class (local_basis per class)."""
    if kind == "sg3":
        G = r3.build("T", res=16, c_dim=3)
        Gm = _load(tmp_path, G)
        assert isinstance(Gm, StyleGAN3Generator)
        _compare(G, Gm, c=torch.eye(3)[[0, 2]])
    else:
        P = random_params(16, 12, 10, 3, {4: 16, 8: 12, 16: 8}, seed=1)
        P["mapping.fc0.weight"] = torch.cat([P["mapping.fc0.weight"], 100 * torch.randn(12, 12)], 1)  # [z, embed(c)]
        G = nv.build_generator(P, 16, 10, 12, 3, {4: 16, 8: 12, 16: 8}, c_dim=3)
        (tmp_path / "c.pkl").write_bytes(nv.network_pickle_bytes(G))
        Gm = load_generator(tmp_path / "c.pkl")
        assert isinstance(Gm, StyleGAN2Generator)
    assert Gm.c_dim == 3
    z = torch.randn(5, Gm.z_dim, generator=torch.Generator().manual_seed(2))
    w_ref = r3.mapping_ref(G, z, torch.eye(3)[1].expand(5, -1))[:, 0]  # same mapping layout in SG2-ada and SG3
    with torch.no_grad():
        for c in (1, torch.eye(3)[1], torch.eye(3)[1].expand(5, -1)):
            torch.testing.assert_close(Gm.f(z, c).double(), w_ref, rtol=1e-5, atol=1e-5)
        spec = Gm.mlp_spec(1)  # the class embedding folded into the first layer's bias: a plain MLP of z
        assert spec.weights[0].shape == (12, Gm.z_dim)
        torch.testing.assert_close(mlp_forward(spec, z)[0].double(), w_ref, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(Gm.f(z, 0), Gm.f(z, 1))
    with pytest.raises(ValueError, match=r"c: this mapping network is class-conditional \(c_dim=3\)"):
        Gm.f(z)
    with pytest.raises(ValueError, match=r"c: expected a class index in \[0, 3\), got 3"):
        Gm.f(z, 3)
    with pytest.raises(ValueError, match=r"c: expected a class index, a vector of shape \(3,\)"):
        Gm.f(z, torch.ones(4))
    Gm.set_class(1)  # now f(z) / mlp_spec() — what local_basis, traversals and SFVQ call — are class 1's
    with torch.no_grad():
        torch.testing.assert_close(Gm.f(z).double(), w_ref, rtol=1e-5, atol=1e-5)
    a, b = lf.local_basis(Gm, z, 3, method="exact"), lf.local_basis(lambda v: Gm.f(v, 1), z, 3, method="exact")
    torch.testing.assert_close(a.singular_values, b.singular_values, rtol=1e-4, atol=1e-5)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_stylegan3_pickles_are_refused(tmp_path, monkeypatch):
    marker, src_marker = tmp_path / "pwned", tmp_path / "source_was_executed"
    monkeypatch.setattr(nv, "MODULE_SRC", f"open({str(src_marker)!r}, 'w').write('x')\n")
    G = r3.build("R", res=16)
    Gm = _load(tmp_path, G, name="clean.pkl")  # the module source in every record is never executed
    assert isinstance(Gm, StyleGAN3Generator) and not src_marker.exists()
    G.synthesis.L1_22_32.in_size = _Evil(marker)  # a payload where SG3 keeps numpy state
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl: refusing to load global '(posix|os)\.system'") as e:
        _load(tmp_path, G, name="evil.pkl")
    assert "\n" not in str(e.value)
    G = r3.build("T", res=16)
    G.synthesis.input.size = np.array([_Evil(marker), 1], dtype=object)  # an object ndarray
    with pytest.raises(UnsafePickleError, match=r"evil2\.pkl: "):
        _load(tmp_path, G, name="evil2.pkl")
    assert not marker.exists() and not src_marker.exists()


def test_unsupported_stylegan3_layer_is_named(tmp_path):
    G = r3.build("T", res=16)
    G.synthesis.L2_22_8.padding = [1, 1, 1, 1]
    with pytest.raises(ValueError, match=r"bad\.pkl: synthesis\.L2_22_8: its filters, up/down factors and padding "
                                         r"give output size .* but out_size is \(22, 22\)"):
        _load(tmp_path, G, name="bad.pkl")
    G = r3.build("T", res=16)
    G.synthesis.L1_22_16.up_filter = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"synthesis\.L1_22_16\.up_filter: expected None or a 1-D/2-D float FIR"):
        _load(tmp_path, G, name="bad2.pkl")


@pytest.mark.slow  # float64 convolutions are slow on the CPU
def test_stylegan3_synthesis_works_under_torch_func(tmp_path):
    """No in-place writes into batched values: jvp and vmap(jvp) of the synthesis network work (image Jacobians),
    and the JVP equals a float64 central difference."""
    G = _load(tmp_path, r3.build("T", res=16, channel_base=64, channel_max=8)).double()
    w = G.f(G.sample_z(2, torch.Generator().manual_seed(1), dtype=torch.float64)).detach()
    v = torch.randn(w.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    f = lambda x: G.synthesis(x[:, None].expand(-1, G.num_ws, -1))  # noqa: E731
    _, jv = torch.func.jvp(f, (w,), (v,))
    fd = (f(w + 1e-6 * v) - f(w - 1e-6 * v)) / 2e-6
    torch.testing.assert_close(jv, fd, rtol=0, atol=1e-6 * jv.abs().max().item())
    J = torch.func.vmap(lambda t: torch.func.jvp(f, (w,), (t,))[1])(torch.stack([v, 2 * v]))
    torch.testing.assert_close(J[1], 2 * jv)
