"""The demo's figures and report (issue 14): every figure written, captioned in report.md and embedded in the
self-contained report.html; the progress bar never leaves a half-drawn line before an error."""
import base64
import re

import pytest
import torch

from latentfast import _progress
from latentfast.cli.demo import DemoConfig, run_demo

SMALL = DemoConfig(num_latents=2, num_base=2, k=2, frames=3, iter_steps=2, warpage_latents=4, warpage_k=(1, 2, 5),
                   warpage_eps=(0.1,), ganspace_samples=500, sfvq_latents=500, sfvq_vertices=4, sfvq_epochs=1)


@pytest.fixture(scope="module")
def tiny_generator():
    from latentfast.models import StyleGAN2Generator

    torch.manual_seed(0)
    return StyleGAN2Generator(16, 32, n_mlp=3, channels={4: 16, 8: 16, 16: 16}).eval()


def test_every_figure_is_written_captioned_and_embedded(tmp_path, tiny_generator):
    out = tmp_path / "demo"
    report = run_demo(out, config=SMALL, progress=False, generator=tiny_generator)
    figs = report["figures"]
    assert {"traversal_linear.png", "traversal_iterative.png", "warpage.png", "sfvq_curve.png", "sfvq_pca.png",
            "sfvq_training.png", "sfvq_edits.png"} <= set(figs)
    assert "factor_benchmark.png" not in figs  # no ground-truth factors for this generator
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for name, meta in figs.items():
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
        # report.md: the image, then its caption in italics on the next paragraph
        m = re.search(rf"!\[[^\]]*\]\({re.escape(name)}\)\n\n\*([^*]+)\*", md)
        assert m and len(m.group(1)) > 80, name
        assert base64.b64encode(png).decode() in html, name  # embedded, byte for byte
    assert html.count("<figcaption>") == len(figs)
    assert not re.search(r"<img[^>]+src=['\"](?!data:)", html)  # self-contained: no external image
    wp = report["warpage"]
    assert wp["k"] == [1, 2, 5] and all(wp["random_subspaces"][str(k)]["std"] >= 0 for k in wp["k"])
    assert len(report["iterative"]["min_cosine_latent0"]) == report["config"]["k"]


def test_progress_bar_is_cleared_before_an_error(tmp_path, tiny_generator, monkeypatch, capsys):
    from latentfast.sfvq import SFVQ

    def boom(*a, **k):
        raise ValueError("latents: simulated failure half way")

    monkeypatch.setattr(SFVQ, "fit", boom)
    monkeypatch.setattr(_progress, "_stderr_is_terminal", lambda: True)
    monkeypatch.setattr(_progress, "_quiet", False)
    monkeypatch.delenv("LATENTFAST_QUIET", raising=False)
    with pytest.raises(ValueError, match="simulated"):
        run_demo(tmp_path / "demo", config=SMALL, progress=True, generator=tiny_generator)
    err = capsys.readouterr().err
    assert "demo: local bases" in err  # the bar was shown, with the stage's name
    assert err.endswith("\r") or err.endswith("\n")  # erased: whatever is printed next starts a clean line
    assert not (tmp_path / "demo").exists()
