"""StyleGAN2Generator as a module and as a Generator; the generic adapter."""
import pytest
import torch

from latentfast.models import Generator, StyleGAN2Generator, as_generator
from latentfast.ops.mlp_jvp.reference import forward as mlp_forward, jvp as mlp_jvp

CH = {4: 16, 8: 16, 16: 8, 32: 8}


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    g = StyleGAN2Generator(32, 16, 3, channels=CH, z_dim=12).eval()
    with torch.no_grad():
        for p in g.parameters():
            if p.dim() == 0:
                p.fill_(0.2)  # noise strengths: make the noise visible
    return g


def test_shapes_and_interface(G):
    assert isinstance(G, Generator) and G.num_ws == 8 and G.z_dim == 12 and G.w_dim == 16
    z = G.sample_z(3, torch.Generator().manual_seed(0))
    assert z.shape == (3, 12) and z.dtype == torch.float32
    with torch.no_grad():
        img = G(z)
        assert img.shape == (3, 3, 32, 32) and torch.isfinite(img).all()
        w = G.f(z)
        assert w.shape == (3, 16)
        torch.testing.assert_close(G.synthesize(w), img.clamp(-1, 1))  # w is broadcast to W+
        ws = w[:, None].repeat(1, 8, 1)
        torch.testing.assert_close(G.synthesize(ws), img.clamp(-1, 1))
        assert G.synthesize(w).abs().max() <= 1


def test_mlp_spec_is_the_mapping_network(G):
    z = torch.randn(6, 12)
    spec = G.mlp_spec()
    assert spec.d_in == 12 and spec.d_out == 16 and len(spec.weights) == 3
    assert torch.equal(mlp_forward(spec, z)[0], G.mapping(z).detach())
    zd = z.double()
    spec64 = StyleGAN2Generator(32, 16, 3, channels=CH, z_dim=12)
    spec64.load_state_dict(G.state_dict())
    spec64 = spec64.double()
    assert torch.equal(mlp_forward(spec64.mlp_spec(), zd)[0], spec64.mapping(zd).detach())
    # torch.func sees plain ops: its Jacobian equals the hand-written JVP
    J = torch.func.vmap(torch.func.jacrev(lambda v: spec64.mapping(v[None])[0]))(zd)
    _, lin = mlp_forward(spec64.mlp_spec(), zd)
    torch.testing.assert_close(mlp_jvp(lin, torch.eye(12, dtype=torch.float64).expand(6, -1, -1)), J)


def test_truncation_and_noise(G):
    z = torch.randn(4, 12)
    with torch.no_grad():
        G.w_avg.copy_(torch.randn(16))
        G.has_w_avg = True
        img0 = G(z, truncation=0.0)
        assert torch.allclose(img0, img0[:1].expand_as(img0), atol=1e-6)  # every sample collapses onto w_avg
        torch.testing.assert_close(img0[:1], G.synthesis(G.w_avg[None, None].repeat(1, 8, 1)))
        a = G(z, noise_mode="const")
        assert torch.equal(a, G(z, noise_mode="const"))
        assert not torch.allclose(a, G(z, noise_mode="none"))
        r1 = G(z, noise_mode="random", noise_generator=torch.Generator().manual_seed(5))
        r2 = G(z, noise_mode="random", noise_generator=torch.Generator().manual_seed(5))
        assert torch.equal(r1, r2) and not torch.allclose(r1, a)
        cut = G(z, truncation=0.5, truncation_cutoff=0)
        torch.testing.assert_close(cut, G(z))


def test_bad_latents_are_named(G):
    with pytest.raises(ValueError, match=r"z: expected z of shape \(B, 12\), got shape \(2, 16\)"):
        G.f(torch.randn(2, 16))
    with pytest.raises(TypeError, match="z: expected a floating-point tensor"):
        G.mapping(torch.ones(2, 12, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"ws: expected shape \(B, 8, 16\), got shape \(2, 7, 16\)"):
        G.synthesis(torch.randn(2, 7, 16))
    with pytest.raises(ValueError, match=r"latent: expected w of shape \(B, 16\) or ws"):
        G.synthesize(torch.randn(16))
    with pytest.raises(ValueError, match="noise_mode: expected one of"):
        G.synthesis(torch.randn(1, 8, 16), noise_mode="fixed")
    with pytest.raises(ValueError, match="size: expected a power of two"):
        StyleGAN2Generator(24, 8, 1, channels={4: 4, 8: 4, 16: 4, 24: 4})
    with pytest.raises(ValueError, match=r"channels: expected a channel count for every resolution.*missing \[16\]"):
        StyleGAN2Generator(16, 8, 1, channels={4: 4, 8: 4})


def test_as_generator(G):
    z = torch.randn(3, 12)
    assert as_generator(G) is G
    g = as_generator(G, f="mapping", synthesize="synthesize")
    with torch.no_grad():
        torch.testing.assert_close(g.f(z), G.mapping(z))
        torch.testing.assert_close(g.synthesize(g.f(z)), G.synthesize(G.f(z)))
    assert g.num_ws == 8 and g.mlp_spec() is not None
    h = as_generator(G, f_layer="synthesis.blocks.1.conv0", synthesize=G.synthesize)
    with torch.no_grad():
        out = h.f(z)
        ws = G.mapping(z)[:, None].repeat(1, 8, 1)
        x = G.synthesis.blocks[0].conv1(G.synthesis.blocks[0].const[None].expand(3, -1, -1, -1), ws[:, 0])
        torch.testing.assert_close(out, G.synthesis.blocks[1].conv0(x, ws[:, 2]))
    assert h.mlp_spec() is None
    c = as_generator(lambda v: v * 2, z_dim=4)
    torch.testing.assert_close(c.f(torch.ones(1, 4)), torch.full((1, 4), 2.0))
    with pytest.raises(ValueError, match=r"z: expected z of shape \(B, 4\), got shape \(1, 5\)"):
        c.f(torch.ones(1, 5))
    with pytest.raises(ValueError, match="z_dim: expected the latent width"):
        as_generator(lambda v: v)
    with pytest.raises(ValueError, match="f_layer: expected the name of a submodule"):
        as_generator(G, f_layer="synthesis.nope")
    with pytest.raises(ValueError, match="f: expected a callable or the name"):
        as_generator(G, f="nope")
    with pytest.raises(TypeError, match="model: expected an nn.Module or a callable"):
        as_generator(42, z_dim=3)
