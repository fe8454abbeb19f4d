"""GANSpace (PCA of latents) and SeFa (eigenvectors of the modulation weight) against numpy in float64."""
import numpy as np
import pytest
import torch

from latentfast import baselines, ganspace_directions, sefa_directions


def _align_signs(ours, ref):
    """Flip each reference row to our sign (eigenvectors are defined up to sign); ours is checked separately."""
    s = np.sign(np.sum(ours * ref, axis=1, keepdims=True))
    return ref * s


def _check_sign_convention(rows):
    rows = np.asarray(rows)
    pivot = np.abs(rows).argmax(axis=1)
    assert (rows[np.arange(len(rows)), pivot] > 0).all()


def _anisotropic(n, d, rng):
    # well-separated variances, so every principal direction is well defined
    scales = np.geomspace(5.0, 0.1, d)
    return rng.standard_normal((n, d)) * scales @ np.linalg.qr(rng.standard_normal((d, d)))[0] + rng.normal(size=d) * 3


def test_ganspace_matches_numpy_svd_float64():
    rng = np.random.default_rng(0)
    x = _anisotropic(301, 23, rng)
    res = ganspace_directions(torch.from_numpy(x), 7)
    assert res.components.shape == (7, 23) and res.mean.shape == (23,) and res.stdev.shape == (7,)
    assert res.components.dtype == torch.float64
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = res.components.numpy()
    np.testing.assert_allclose(res.mean.numpy(), mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(comps, _align_signs(comps, vt[:7]), rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.stdev.numpy(), s[:7] / np.sqrt(301), rtol=1e-10)
    # GANSpace's own definition of lat_stdev: std of the (uncentred) projections
    np.testing.assert_allclose(res.stdev.numpy(), (comps @ x.T).std(axis=1), rtol=1e-10)
    np.testing.assert_allclose(comps @ comps.T, np.eye(7), rtol=0, atol=1e-12)
    _check_sign_convention(comps)


def test_ganspace_float32_chunks_numpy_and_determinism(monkeypatch):
    rng = np.random.default_rng(1)
    x = _anisotropic(200, 12, rng).astype(np.float32)
    full = ganspace_directions(x, 5)  # numpy input accepted
    assert full.components.dtype == torch.float32
    monkeypatch.setattr(baselines, "_CHUNK_ROWS", 7)  # many chunks, a ragged last one
    chunked = ganspace_directions(torch.from_numpy(x), 5)
    for a, b in zip(full, chunked):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    ref = ganspace_directions(torch.from_numpy(x.astype(np.float64)), 5)
    torch.testing.assert_close(full.components.double(), ref.components, rtol=0, atol=1e-6)
    # negating the data keeps the components: the sign convention, not the LAPACK output, decides
    neg = ganspace_directions(torch.from_numpy(-x), 5)
    torch.testing.assert_close(neg.components, full.components, rtol=0, atol=1e-6)
    torch.testing.assert_close(neg.mean, -full.mean, rtol=0, atol=1e-6)


def test_ganspace_bad_input():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="k"):
        ganspace_directions(x, 5)
    with pytest.raises(ValueError, match="k"):
        ganspace_directions(x, 0)
    with pytest.raises(TypeError, match="k"):
        ganspace_directions(x, 2.0)
    with pytest.raises(ValueError, match="latents"):
        ganspace_directions(torch.empty(0, 4), 1)
    with pytest.raises(ValueError, match="latents"):
        ganspace_directions(torch.randn(3, 4, 5), 1)
    bad = x.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="latents"):
        ganspace_directions(bad, 1)
    with pytest.raises(TypeError, match="latents"):
        ganspace_directions([[1.0, 2.0]], 1)


def _sefa_numpy(weights, k):
    a = np.concatenate(weights, axis=0).astype(np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    evals, evecs = np.linalg.eigh(a.T @ a)
    order = np.argsort(evals)[::-1][:k]
    return evals[order], evecs[:, order].T


def test_sefa_matches_numpy_eigh():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((40, 13)) * np.geomspace(3, 0.3, 13)
    res = sefa_directions(torch.from_numpy(w), 6)
    evals, vecs = _sefa_numpy([w], 6)
    dirs = res.directions.numpy()
    assert dirs.shape == (6, 13) and res.eigenvalues.shape == (6,)
    np.testing.assert_allclose(res.eigenvalues.numpy(), evals, rtol=1e-10)
    np.testing.assert_allclose(dirs, _align_signs(dirs, vecs), rtol=0, atol=1e-10)
    assert (np.diff(res.eigenvalues.numpy()) <= 0).all()
    _check_sign_convention(dirs)
    # the eigenvalues of the row-normalised A^T A sum to the number of rows (its trace)
    full = sefa_directions(torch.from_numpy(w), 13)
    assert float(full.eigenvalues.sum()) == pytest.approx(40.0, rel=1e-12)


def test_sefa_several_layers_and_row_scale_invariance():
    rng = np.random.default_rng(3)
    ws = [rng.standard_normal((o, 9)) for o in (20, 11, 20)]
    res = sefa_directions([torch.from_numpy(w) for w in ws], 4)
    evals, vecs = _sefa_numpy(ws, 4)
    np.testing.assert_allclose(res.eigenvalues.numpy(), evals, rtol=1e-10)
    np.testing.assert_allclose(res.directions.numpy(), _align_signs(res.directions.numpy(), vecs), atol=1e-10)
    # a stacked (L, out, in) tensor is the same as the list of its layers
    stacked = sefa_directions(torch.from_numpy(np.stack([ws[0], ws[2]])), 4)
    listed = sefa_directions([ws[0], ws[2]], 4)
    torch.testing.assert_close(stacked.directions, listed.directions, rtol=0, atol=1e-12)
    # positive per-row scales (e.g. an equalized-lr constant) do not change SeFa's answer
    scaled = sefa_directions([w * rng.uniform(0.1, 10, size=(w.shape[0], 1)) for w in ws], 4)
    torch.testing.assert_close(scaled.directions, res.directions, rtol=0, atol=1e-10)
    torch.testing.assert_close(scaled.eigenvalues, res.eigenvalues, rtol=1e-10, atol=0)
    f32 = sefa_directions(torch.from_numpy(ws[0]).float(), 3)
    assert f32.directions.dtype == torch.float32


def test_sefa_bad_input():
    w = torch.randn(8, 5)
    with pytest.raises(ValueError, match="k"):
        sefa_directions(w, 6)
    with pytest.raises(ValueError, match=r"weight\[1\]"):
        sefa_directions([w, torch.randn(8, 4)], 2)
    with pytest.raises(ValueError, match="weight"):
        sefa_directions([], 2)
    zero_row = w.clone()
    zero_row[3] = 0
    with pytest.raises(ValueError, match="weight.*zero rows"):
        sefa_directions(zero_row, 2)
    nan = w.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="weight"):
        sefa_directions(nan, 2)
    with pytest.raises(TypeError, match="weight"):
        sefa_directions(w.long(), 2)
    with pytest.raises(ValueError, match="weight"):
        sefa_directions(torch.randn(5), 2)
