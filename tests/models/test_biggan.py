"""BigGAN-deep in pytorch-pretrained-BigGAN's layout: a tiny config.json + pytorch_model.bin written with that
package's key names, loaded and compared with a float64 reimplementation written here from the state dict."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from latentfast.models import BigGANGenerator, as_generator, load_generator

CFG = dict(output_dim=16, z_dim=8, class_embed_dim=8, channel_width=4, num_classes=5,
           layers=[[True, 16, 8], [False, 8, 8], [True, 8, 4], [False, 4, 2], [False, 2, 1]],
           attention_layer_position=2, eps=1e-4, n_stats=51)


def _state_dict(cfg, seed=0):
    """Every key pytorch-pretrained-BigGAN's BigGAN(config).state_dict() has, with random values."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g)
    sd = {}

    def sn(name, shape, bias):
        sd[f"{name}.weight_orig"] = rn(*shape) * 0.3
        if bias:
            sd[f"{name}.bias"] = rn(shape[0]) * 0.1
        sd[f"{name}.weight_u"] = F.normalize(rn(shape[0]), dim=0)
        sd[f"{name}.weight_v"] = F.normalize(rn(int(math.prod(shape[1:]))), dim=0)

    def bn(name, c, cond):
        sd[f"{name}.running_means"] = rn(cfg["n_stats"], c) * 0.1
        sd[f"{name}.running_vars"] = 0.5 + torch.rand(cfg["n_stats"], c, generator=g)
        if cond:
            sn(f"{name}.scale", (c, cond), False)
            sn(f"{name}.offset", (c, cond), False)
        else:
            sd[f"{name}.weight"] = 1 + 0.1 * rn(c)
            sd[f"{name}.bias"] = 0.1 * rn(c)

    ch, cond = cfg["channel_width"], 2 * cfg["z_dim"]
    sd["embeddings.weight"] = rn(cfg["z_dim"], cfg["num_classes"])
    sn("generator.gen_z", (4 * 4 * 16 * ch, cond), True)
    i = 0
    for k, (up, a, b) in enumerate(cfg["layers"]):
        if k == cfg["attention_layer_position"]:
            c = ch * a
            p = f"generator.layers.{i}"
            for nm, o, inn in (("theta", c // 8, c), ("phi", c // 8, c), ("g", c // 2, c), ("o_conv", c, c // 2)):
                sn(f"{p}.snconv1x1_{nm}", (o, inn, 1, 1), False)
            sd[f"{p}.gamma"] = torch.tensor([0.7])
            i += 1
        p, cin, cout = f"generator.layers.{i}", ch * a, ch * b
        mid = cin // 4
        for j, (ci, co, kk) in enumerate(((cin, mid, 1), (mid, mid, 3), (mid, mid, 3), (mid, cout, 1))):
            bn(f"{p}.bn_{j}", ci, cond)
            sn(f"{p}.conv_{j}", (co, ci, kk, kk), True)
        i += 1
    bn("generator.bn", ch, None)
    sn("generator.conv_to_rgb", (ch, ch, 3, 3), True)
    return sd


def _w(sd, name):
    w = sd[f"{name}.weight_orig"].double()
    sigma = sd[f"{name}.weight_u"].double() @ (w.reshape(w.shape[0], -1) @ sd[f"{name}.weight_v"].double())
    return w / sigma


def _reference(sd, cfg, z, cls, truncation):
    """float64 forward of pytorch-pretrained-BigGAN, one function, from the raw state dict."""
    d = lambda k: sd[k].double()
    cond = torch.cat([z.double(), cls.double() @ d("embeddings.weight").T], 1)
    c, start = math.modf(truncation / (1.0 / (cfg["n_stats"] - 1)))
    start = int(start)

    def bn(name, x, conditional=True):
        m, v = d(f"{name}.running_means")[start], d(f"{name}.running_vars")[start]
        if c:
            m = m * c + d(f"{name}.running_means")[start + 1] * (1 - c)
            v = v * c + d(f"{name}.running_vars")[start + 1] * (1 - c)
        x = (x - m[:, None, None]) / torch.sqrt(v[:, None, None] + cfg["eps"])
        if conditional:
            gain = 1 + cond @ _w(sd, f"{name}.scale").T
            return x * gain[:, :, None, None] + (cond @ _w(sd, f"{name}.offset").T)[:, :, None, None]
        return x * d(f"{name}.weight")[:, None, None] + d(f"{name}.bias")[:, None, None]

    conv = lambda name, x, pad=0, bias=True: F.conv2d(x, _w(sd, name), d(f"{name}.bias") if bias else None,
                                                      padding=pad)
    ch = cfg["channel_width"]
    h = cond @ _w(sd, "generator.gen_z").T + d("generator.gen_z.bias")
    x = h.reshape(-1, 4, 4, 16 * ch).permute(0, 3, 1, 2)
    i = 0
    for k, (up, a, b) in enumerate(cfg["layers"]):
        p = f"generator.layers.{i}"
        if k == cfg["attention_layer_position"]:
            B, C, H, W = x.shape
            th = conv(f"{p}.snconv1x1_theta", x, bias=False).reshape(B, C // 8, H * W)
            ph = F.max_pool2d(conv(f"{p}.snconv1x1_phi", x, bias=False), 2).reshape(B, C // 8, -1)
            att = torch.softmax(th.transpose(1, 2) @ ph, -1)
            gg = F.max_pool2d(conv(f"{p}.snconv1x1_g", x, bias=False), 2).reshape(B, C // 2, -1)
            o = conv(f"{p}.snconv1x1_o_conv", (gg @ att.transpose(1, 2)).reshape(B, C // 2, H, W), bias=False)
            x = x + d(f"{p}.gamma") * o
            i += 1
            p = f"generator.layers.{i}"
        y = conv(f"{p}.conv_0", F.relu(bn(f"{p}.bn_0", x)))
        y = F.relu(bn(f"{p}.bn_1", y))
        if up:
            y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = conv(f"{p}.conv_1", y, 1)
        y = conv(f"{p}.conv_2", F.relu(bn(f"{p}.bn_2", y)), 1)
        y = conv(f"{p}.conv_3", F.relu(bn(f"{p}.bn_3", y)))
        skip = x[:, : x.shape[1] // 2] if a != b else x
        x = y + (F.interpolate(skip, scale_factor=2, mode="nearest") if up else skip)
        i += 1
    x = conv("generator.conv_to_rgb", F.relu(bn("generator.bn", x, False)), 1)
    return torch.tanh(x[:, :3]), h


@pytest.fixture
def biggan_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    sd = _state_dict(CFG)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    return tmp_path, sd


def test_biggan_matches_reference(biggan_dir):
    path, sd = biggan_dir
    G = load_generator(path, class_index=3, truncation=0.473)
    assert isinstance(G, BigGANGenerator) and G.z_dim == 8
    z = G.sample_z(4, torch.Generator().manual_seed(1))
    cls = F.one_hot(torch.tensor([0, 3, 4, 1]), 5).float()
    with torch.no_grad():
        img = G(z, cls, truncation=0.473)
        ref, _ = _reference(sd, CFG, z, cls, 0.473)
        assert img.shape == (4, 3, 16, 16) and ref.std() > 0.05
        torch.testing.assert_close(img.double(), ref, rtol=1e-4, atol=1e-5)
        # f = gen_z output for the fixed class, computed by hand from the raw weights
        fixed = F.one_hot(torch.full((4,), 3), 5).float()
        _, h_ref = _reference(sd, CFG, z, fixed, 0.473)
        torch.testing.assert_close(G.f(z).double(), h_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(G.synthesize(z).double(), _reference(sd, CFG, z, fixed, 0.473)[0],
                                   rtol=1e-4, atol=1e-5)


def test_biggan_intermediate_layer_f(biggan_dir):
    path, _ = biggan_dir
    G = load_generator(path / "pytorch_model.bin", f_layer="layers.1")  # config.json found beside the .bin
    z = torch.randn(2, 8)
    with torch.no_grad():
        out = G.f(z)
        assert out.shape == (2, 32, 8, 8)  # output of the second GenBlock, just before the self-attention
        # the generic adapter: z -> a named layer of any module, captured by a forward hook
        class Wrap(torch.nn.Module):
            def __init__(self, G):
                super().__init__()
                self.G = G

            def forward(self, z):
                return self.G(z, self.G.class_vector.expand(z.shape[0], -1), self.G.truncation)

        hooked = as_generator(Wrap(G), f_layer="G.generator.layers.1", z_dim=8)
        torch.testing.assert_close(hooked.f(z), out)
        torch.testing.assert_close(hooked.synthesize(z), G.synthesize(z))
    with pytest.raises(ValueError, match=r"f_layer: expected 'gen_z' or 'layers.N' with N < 6, got 'layers.9'"):
        BigGANGenerator(CFG, f_layer="layers.9")


def test_biggan_bad_inputs(biggan_dir, tmp_path):
    path, sd = biggan_dir
    G = load_generator(path)
    with pytest.raises(ValueError, match=r"z: expected z of shape \(B, 8\), got shape \(2, 7\)"):
        G.f(torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"class_vector: expected shape \(2, 5\)"):
        G(torch.randn(2, 8), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"truncation: expected a number in \(0, 1\]"):
        G(torch.randn(2, 8), torch.zeros(2, 5), truncation=0.0)
    with pytest.raises(ValueError, match="class_index: expected an int in"):
        G.set_class(5)
    del sd["generator.layers.0.conv_1.weight_v"]
    torch.save(sd, path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: .*missing \['generator\.layers\.0\.conv_1\.weight_v'\]"):
        load_generator(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: expected a BigGAN config\.json, got invalid JSON"):
        load_generator(path)
    (path / "config.json").unlink()
    with pytest.raises(ValueError, match=r"expected a BigGAN directory with config\.json and pytorch_model\.bin"):
        load_generator(path)
