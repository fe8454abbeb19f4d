"""latentfast.viz: the grids' layout and difference maps, the charts, and their bad-input errors."""
import numpy as np
import pytest
import torch

from latentfast import viz
from latentfast.localbasis.warpage import Warpage, WarpageStats


def _images(*shape, seed=0):
    return torch.rand(*shape, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_diff_map_is_black_where_unchanged_and_scales_with_gain():
    a = _images(2)
    b = a.clone()
    b[1, :, :4] += 0.2  # 0.1 in [0, 1] image units on the top half of the second image
    lut = viz.grids._magma_lut()
    d = viz.diff_map(b, a, gain=4.0)
    assert d.shape == (2, 8, 8, 3) and d.dtype == np.uint8
    assert (d[0] == lut[0]).all() and (d[1, 4:] == lut[0]).all()  # unchanged pixels: the map's zero colour
    assert (d[1, :4] == lut[round(0.1 * 4 * 255)]).all()  # |0.2| / 2 * 4 = 0.4 of the scale
    assert (viz.diff_map(b, a, gain=100.0)[1, :4] == lut[255]).all()  # clipped at 1


def test_traversal_grid_layout_marks_the_original_column():
    B, k, F = 2, 3, 5
    imgs = _images(B, k, F)
    alphas = [-2.0, -1.0, 0.0, 1.0, 2.0]
    labels = [[f"#{i}\nline two" for i in range(k)] for _ in range(B)]
    g = viz.traversal_grid(imgs, imgs[:, 0, 2], alphas, labels, title="t", block_labels=["a", "b"], scale=2)
    g1 = viz.traversal_grid(imgs[:1], imgs[:1, 0, 2], alphas, labels[:1], title="t", scale=2)
    assert g.width == g1.width and g.height > 2 * g1.height - 100  # two blocks stacked, same columns
    arr = np.asarray(g)
    assert (arr == viz.grids.MARK).all(-1).any()  # the centre column's frame is drawn


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=torch.zeros(2, 3, 5, 3, 8)), "images: expected shape"),
    (dict(alphas=[0.0, 1.0]), "alphas: expected 5"),
    (dict(row_labels=[["a"]]), "row_labels: expected 1 lists of 3"),
])
def test_traversal_grid_rejects_bad_input(kwargs, match):
    args = dict(images=_images(1, 3, 5), originals=_images(1), alphas=[-1, -0.5, 0, 0.5, 1],
                row_labels=[["a", "b", "c"]])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        viz.traversal_grid(args.pop("images"), args.pop("originals"), args.pop("alphas"), args.pop("row_labels"),
                           title="t")


def test_vertex_grid_and_image_grid():
    g = viz.vertex_grid(_images(5), "curve", cols=5, scale=2)
    assert g.width >= 5 * 16
    with pytest.raises(ValueError, match="images: expected rows\\*cols = 6"):
        viz.image_grid(_images(5), 2, 3)


def test_charts_render():
    ks = [1, 2, 5]
    st = lambda m: WarpageStats(m, 0.1)  # noqa: E731
    wp = Warpage("geodesic", ks, [0.1], local={k: {0.1: st(0.1 * k)} for k in ks},
                 random_points={k: st(1.0 + k) for k in ks}, random_subspaces={k: st(1.5 + k) for k in ks},
                 global_={k: st(1.2 + k) for k in ks})
    for img in (viz.warpage_chart(wp), viz.line_chart([1, 2], {"a": [1, 2]}, errors={"a": [0.1, 0.2]}),
                viz.iterative_path_chart(np.ones((2, 5)), np.zeros((2, 5), dtype=int), ["#0", "#1"], title="p"),
                viz.sfvq_pca_chart(torch.randn(50, 4), torch.randn(4, 4), highlight=[1], title="pca")):
        a = np.asarray(img)
        assert a.ndim == 3 and a.shape[2] == 3 and a.std() > 0  # something was drawn on the white page
