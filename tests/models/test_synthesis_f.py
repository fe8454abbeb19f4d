"""StyleGAN2Generator.synthesis_f: the synthesis network as an f for local_basis (W, W+, layer ranges, features)."""
import copy
import re
from pathlib import Path

import pytest
import torch

from latentfast.models.default import load_default_generator

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def G64():
    return copy.deepcopy(load_default_generator()).double()


@pytest.mark.slow
def test_w_and_layer_ranges_are_sums_of_wplus_columns(G64):
    """J_w v = J_wplus (v on every layer); J_layers v = J_wplus (v on those layers only): JVPs along random v."""
    w = G64.f(G64.sample_z(1, torch.Generator().manual_seed(0), dtype=torch.float64))
    ws = w[:, None].repeat(1, G64.num_ws, 1)
    jvp = lambda f, x, v: torch.func.jvp(f, (x,), (v,))[1].detach()  # noqa: E731
    fp = G64.synthesis_f("wplus", resize=4)
    for seed in range(2):
        v = torch.randn(w.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        vp = v[:, None].repeat(1, G64.num_ws, 1)
        some = vp.clone()
        some[:, [0, 1, 5, 6, 7]] = 0
        torch.testing.assert_close(jvp(G64.synthesis_f(resize=4), w, v), jvp(fp, ws, vp), rtol=0, atol=1e-12)
        torch.testing.assert_close(jvp(G64.synthesis_f(layers=range(2, 5), resize=4), w, v), jvp(fp, ws, some),
                                   rtol=0, atol=1e-12)
        # restricted W+: tangents on the other layers are ignored
        restricted = G64.synthesis_f("wplus", layers=slice(2, 5), resize=4)
        torch.testing.assert_close(jvp(restricted, ws, vp), jvp(fp, ws, some), rtol=0, atol=1e-12)
    # the values are those of the network: f(w) is the unclamped image, averaged in 8x8 blocks
    img = G64.synthesis(ws)
    torch.testing.assert_close(G64.synthesis_f(resize=4)(w), torch.nn.functional.avg_pool2d(img, 8), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(G64.synthesis_f()(w), img, rtol=0, atol=0)


def test_features_output(G64):
    w = G64.f(G64.sample_z(2, dtype=torch.float64))
    feats = G64.synthesis_f(output="features:16")(w)
    assert feats.shape == (2, G64.synthesis.channels[16], 16, 16)


@pytest.mark.parametrize("kwargs,words", [
    (dict(input="z"), ["input", "'z'"]),
    (dict(layers=range(7, 9)), ["layers", "[0, 8)"]),
    (dict(layers=[]), ["layers"]),
    (dict(output="features:5"), ["output", "features:5", "[4, 8, 16, 32]"]),
    (dict(output="pixels"), ["output", "pixels"]),
    (dict(resize=5), ["resize", "32", "5"]),
    (dict(noise_mode="random"), ["noise_mode", "random"]),
], ids=["input", "layer-range", "no-layers", "features-res", "output", "resize", "noise"])
def test_bad_arguments_are_named(kwargs, words):
    G = load_default_generator()
    with pytest.raises(ValueError) as info:
        G.synthesis_f(**kwargs)
    for w in words:
        assert w in str(info.value)


def test_wrong_latent_width_is_named():
    G = load_default_generator()
    with pytest.raises(ValueError, match="w: expected w of shape"):
        G.synthesis_f()(torch.randn(2, 63))


@pytest.mark.slow
def test_readme_pullback_section_runs():
    """The README's image/W+ local basis block, run as written (after the Usage block's imports)."""
    text = README.read_text()
    section = text.split("### Image- and W+-space local bases", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks
    ns = {}
    exec("import torch\nimport latentfast as lf\nfrom latentfast.models.default import load_default_generator\n", ns)
    for b in blocks:
        exec(compile(b, "README.md", "exec"), ns)
    assert ns["lb"].input_basis.shape == (2, 64, 5) and ns["lb"].basis is None
    assert ns["lbp"].input_basis.shape == (2, 8, 64, 5)
    assert float(ns["lbp"].input_basis[:, [0, 1, 4, 5, 6, 7]].abs().max()) == 0.0
