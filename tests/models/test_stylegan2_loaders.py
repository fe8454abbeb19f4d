"""StyleGAN2 checkpoints in rosinality's and NVIDIA's exact layouts load into StyleGAN2Generator and reproduce an
independent float64 reimplementation (tests/models/_sg2_reference.py); hostile files raise and run nothing."""
import argparse
import io
import os
import pickle
import sys

import pytest
import torch

from latentfast.models import (MappingOnlyGenerator, StyleGAN2Generator, UnsafePickleError, load_generator)
from latentfast.ops.mlp_jvp.reference import forward as mlp_forward

from . import _fake_nvidia as nv
from ._sg2_reference import mapping_ref, random_params, synthesis_ref, to_rosinality

SIZE, Z, W, N_MLP = 16, 10, 12, 3
CH = {4: 16, 8: 12, 16: 8}


@pytest.fixture(scope="module")
def params():
    return random_params(SIZE, W, Z, N_MLP, CH, seed=1)


def _check_against_reference(G, P):
    assert isinstance(G, StyleGAN2Generator)
    assert (G.size, G.z_dim, G.w_dim, G.num_ws) == (SIZE, Z, W, 6)
    z = torch.randn(5, Z, generator=torch.Generator().manual_seed(3))
    w_ref = mapping_ref(P, z, N_MLP)
    with torch.no_grad():
        w = G.mapping(z)
        torch.testing.assert_close(w.double(), w_ref, rtol=1e-5, atol=1e-5)
        # the MLPSpec reproduces the loaded mapping network to the last bit
        assert torch.equal(mlp_forward(G.mlp_spec(), z)[0], w)
        ws = w[:, None].repeat(1, G.num_ws, 1) + 0.3 * torch.randn(5, G.num_ws, W)  # distinct per-layer styles
        img = G.synthesis(ws, noise_mode="const")
        ref = synthesis_ref(P, ws, SIZE)
        assert img.shape == (5, 3, SIZE, SIZE) and ref.abs().max() > 0.5
        torch.testing.assert_close(img.double(), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(G.synthesis(ws, noise_mode="none").double(), synthesis_ref(P, ws, SIZE, False),
                                   rtol=1e-4, atol=1e-4)
    return z, w_ref


# --------------------------------------------------------------------------------------------------------------
# rosinality
# --------------------------------------------------------------------------------------------------------------
def test_rosinality_checkpoint_matches_reference(tmp_path, params):
    path = tmp_path / "550000.pt"
    args = argparse.Namespace(size=SIZE, latent=W, n_mlp=N_MLP, lr_mlp=0.01, channel_multiplier=2)
    torch.save({"g_ema": to_rosinality(params, SIZE, N_MLP), "latent_avg": params["mapping.w_avg"],
                "args": args}, path)
    G = load_generator(path)
    z, w_ref = _check_against_reference(G, params)
    assert G.has_w_avg and torch.equal(G.w_avg, params["mapping.w_avg"])
    with torch.no_grad():  # truncation pulls every layer's w towards latent_avg
        img = G(z, truncation=0.5)
        ws = (params["mapping.w_avg"].double() + 0.5 * (w_ref - params["mapping.w_avg"].double()))
        torch.testing.assert_close(img.double(), synthesis_ref(params, ws[:, None].repeat(1, 6, 1), SIZE),
                                   rtol=1e-4, atol=1e-4)


def test_rosinality_without_latent_avg_computes_mean_w(tmp_path, params):
    path = tmp_path / "g.pt"
    torch.save({"g_ema": to_rosinality(params, SIZE, N_MLP)}, path)
    G = load_generator(path)
    assert not G.has_w_avg
    with torch.no_grad():
        G(torch.randn(2, Z), truncation=0.7)
        expected = G.mean_w(10000, torch.Generator().manual_seed(0))
    assert G.has_w_avg
    torch.testing.assert_close(G.w_avg, expected)


def test_rosinality_wrong_shapes_are_named(tmp_path, params):
    sd = to_rosinality(params, SIZE, N_MLP)
    sd["to_rgbs.1.conv.modulation.weight"] = torch.zeros(5, W)
    torch.save({"g_ema": sd}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt.*to_rgbs|bad\.pt.*torgb"):
        load_generator(tmp_path / "bad.pt")
    del sd["convs.3.conv.modulation.bias"]
    torch.save({"g_ema": sd}, tmp_path / "bad2.pt")
    with pytest.raises(ValueError, match=r"bad2\.pt.*missing key 'convs\.3\.conv\.modulation\.bias'"):
        load_generator(tmp_path / "bad2.pt")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_rosinality_malicious_pt_is_refused(tmp_path, params):
    marker = tmp_path / "pwned"
    torch.save({"g_ema": to_rosinality(params, SIZE, N_MLP), "payload": _Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafePickleError, match=r"evil\.pt: torch\.load\(weights_only=True\) refused the file: .*"
                                                r"system") as e:
        load_generator(tmp_path / "evil.pt")
    _one_line_error(e)  # one line, and never torch's advice to retry with weights_only=False
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------------------
# NVIDIA
# --------------------------------------------------------------------------------------------------------------
def _nvidia_file(tmp_path, P, name="network-snapshot-000100.pkl", **kw):
    torch.manual_seed(0)
    G_ema = nv.build_generator(P, SIZE, Z, W, N_MLP, CH, **kw)
    G_train = nv.build_generator(random_params(SIZE, W, Z, N_MLP, CH, seed=99), SIZE, Z, W, N_MLP, CH, **kw)
    path = tmp_path / name
    path.write_bytes(nv.network_pickle_bytes(G_ema, G_train))
    return path


def test_nvidia_pickle_layout_is_faithful(tmp_path, params):
    """The crafted pickle holds what persistence writes: only the persistence hook, EasyDict and tensor globals."""
    import pickletools
    data = _nvidia_file(tmp_path, params).read_bytes()
    names = [a for op, a, _ in pickletools.genops(data) if op.name in ("GLOBAL", "STACK_GLOBAL",
                                                                         "SHORT_BINUNICODE", "BINUNICODE")]
    assert "_reconstruct_persistent_obj" in names and "torch_utils.persistence" in names
    assert "dnnlib.util" in names and "_rebuild_tensor_v2" in names
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


def test_nvidia_pickle_matches_reference_without_running_code(tmp_path, params, monkeypatch):
    marker = tmp_path / "source_was_executed"
    monkeypatch.setattr(nv, "MODULE_SRC", f"open({str(marker)!r}, 'w').write('x')\n")
    path = _nvidia_file(tmp_path, params)
    assert "torch_utils" not in sys.modules
    G = load_generator(path)
    assert not marker.exists() and "torch_utils" not in sys.modules
    z, w_ref = _check_against_reference(G, params)  # G_ema, not the differently-initialised G, was loaded
    assert G.has_w_avg and torch.equal(G.w_avg, params["mapping.w_avg"])
    with torch.no_grad():  # truncation with a cutoff, as NVIDIA's mapping applies it
        img = G(z, truncation=0.6, truncation_cutoff=2)
        ws = w_ref[:, None].repeat(1, 6, 1)
        avg = params["mapping.w_avg"].double()
        ws[:, :2] = avg + 0.6 * (ws[:, :2] - avg)
        torch.testing.assert_close(img.double(), synthesis_ref(params, ws, SIZE), rtol=1e-4, atol=1e-4)


def test_nvidia_conv_clamp_is_applied(tmp_path, params):
    G = load_generator(_nvidia_file(tmp_path, params, conv_clamp=0.05))
    assert G.synthesis.blocks[1].conv1.conv_clamp == 0.05
    with torch.no_grad():
        img = G.synthesis(torch.randn(2, 6, W))
    # every ToRGB output is clamped to +-0.05 and 3 of them are summed through unit-gain upsampling
    assert img.abs().max() <= 0.15 + 1e-5


def test_nvidia_mapping_only_loads_any_synthesis(tmp_path, params):
    """mapping_only=True never reads the synthesis network: an unsupported architecture loads too."""
    path = _nvidia_file(tmp_path, params, name="orig.pkl", architecture="orig")
    M = load_generator(path, mapping_only=True)
    assert isinstance(M, MappingOnlyGenerator) and M.num_ws == 6 and M.has_w_avg
    z = torch.randn(4, Z)
    with torch.no_grad():
        torch.testing.assert_close(M.f(z).double(), mapping_ref(params, z, N_MLP), rtol=1e-5, atol=1e-5)
        assert torch.equal(mlp_forward(M.mlp_spec(), z)[0], M.f(z))
    with pytest.raises(NotImplementedError, match=r"orig\.pkl was loaded with mapping_only=True"):
        M.synthesize(torch.randn(1, W))


def _one_line_error(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg and "weights_only=False" not in msg and "False" not in msg, msg
    return msg


def test_nvidia_unsupported_architecture_named(tmp_path, params):
    path = _nvidia_file(tmp_path, params, name="resnet.pkl", architecture="resnet")
    with pytest.raises(ValueError, match=r"resnet\.pkl: synthesis\.b4: architecture 'resnet' is not supported.*"
                                         r"mapping_only=True") as e:
        load_generator(path)
    _one_line_error(e)


@pytest.mark.parametrize("fmt", ["nvidia", "rosinality"])
def test_unsupported_resample_filter_is_named(tmp_path, params, fmt):
    """A [1, 2, 1] filter is refused naming the filter setting (it used to say "expected shape (4, 4)")."""
    f = torch.tensor([1.0, 2.0, 1.0])
    if fmt == "nvidia":
        G = nv.build_generator(params, SIZE, Z, W, N_MLP, CH)
        G.synthesis.b8.conv0.resample_filter = torch.outer(f, f) / 16
        (tmp_path / "f.pkl").write_bytes(nv.network_pickle_bytes(G))
        path, where = tmp_path / "f.pkl", r"synthesis\.b8\.conv0"
    else:
        sd = to_rosinality(params, SIZE, N_MLP)
        sd["to_rgbs.0.upsample.kernel"] = torch.outer(f, f) / 4
        torch.save({"g_ema": sd}, tmp_path / "f.pt")
        path, where = tmp_path / "f.pt", r"to_rgbs\.0\.upsample\.kernel"
    with pytest.raises(ValueError, match=rf"{where}: a 3-tap resample filter is not supported.*\[1, 3, 3, 1\]") as e:
        load_generator(path)
    _one_line_error(e)


@pytest.mark.parametrize("spelling", ["numpy._core", "numpy.core"])
def test_numpy_arrays_in_pickles_load(tmp_path, params, spelling):
    """ndarrays (numpy 2.x pickles name numpy._core.multiarray._reconstruct, 1.x numpy.core...) are rebuilt."""
    import numpy as np
    G = nv.build_generator(params, SIZE, Z, W, N_MLP, CH)
    G.mapping.extra_sizes = np.broadcast_to(np.asarray(36), [2])  # non-contiguous, like SG3's in_size
    G.mapping.table = np.arange(6, dtype=np.float32).reshape(2, 3).T
    data = nv.plain_pickle_bytes({"G_ema": G}, protocol=3)
    assert b"cnumpy._core.multiarray\n_reconstruct" in data
    data = data.replace(b"cnumpy._core.multiarray\n", f"c{spelling}.multiarray\n".encode())
    (tmp_path / "np.pkl").write_bytes(data)
    from latentfast.models._safe_pickle import safe_load_pickle
    with open(tmp_path / "np.pkl", "rb") as fh:
        M = safe_load_pickle(fh, "np.pkl")["G_ema"].mapping
    assert np.array_equal(M.extra_sizes, [36, 36]) and np.array_equal(M.table, np.arange(6.0).reshape(2, 3).T)
    assert M.table.dtype == np.float32
    _check_against_reference(load_generator(tmp_path / "np.pkl"), params)


def test_numpy_reconstruction_allows_nothing_else(tmp_path):
    """Only plain numeric ndarray state: object arrays, other classes and reduce tricks are refused, run nothing."""
    import numpy as np
    marker = tmp_path / "pwned"
    evil = pickle.dumps(np.array([_Evil(marker), 1], dtype=object), protocol=4)
    other_cls = (b"\x80\x03cnumpy._core.multiarray\n_reconstruct\ncbuiltins\nlist\nK\x00\x85C\x01b\x87R.")
    bad_state = pickle.dumps(np.zeros(3), protocol=3)
    assert b"X\x02\x00\x00\x00f8" in bad_state
    bad_state = bad_state.replace(b"X\x02\x00\x00\x00f8", b"X\x02\x00\x00\x00O8")  # an object dtype
    for name, data in {"obj.pkl": evil, "cls.pkl": other_cls, "dtype.pkl": bad_state}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnsafePickleError, match=rf"{name.replace('.', '[.]')}: ") as e:
            load_generator(tmp_path / name)
        _one_line_error(e)
    assert not marker.exists()


def test_malicious_pickles_are_refused(tmp_path, params):
    marker = tmp_path / "pwned"
    cases = {
        "reduce.pkl": pickle.dumps(_Evil(marker)),
        "nested.pkl": None,
        "eval.pkl": b"\x80\x04cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85R.",
        "getattr.pkl": b"\x80\x04cbuiltins\ngetattr\n.",
    }
    # a genuine network pickle with a payload hidden among the other snapshot entries
    G = nv.build_generator(params, SIZE, Z, W, N_MLP, CH)
    cases["nested.pkl"] = nv.network_pickle_bytes(G, extra={"augment_pipe": _Evil(marker)})
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnsafePickleError, match=rf"{name.replace('.', '[.]')}: refusing to load global"):
            load_generator(tmp_path / name)
    assert not marker.exists()


def test_malicious_tensor_storage_is_refused(tmp_path):
    """A tensor whose storage bytes are a torch.save archive holding a payload: read with weights_only."""
    marker = tmp_path / "pwned"
    inner = io.BytesIO()
    torch.save(_Evil(marker), inner)

    class Storage:
        def __reduce__(self):
            import torch.storage
            return (torch.storage._load_from_bytes, (inner.getvalue(),))

    (tmp_path / "storage.pkl").write_bytes(pickle.dumps({"G_ema": Storage()}))
    with pytest.raises(UnsafePickleError, match=r"storage\.pkl: tensor storage: .*refused") as e:
        load_generator(tmp_path / "storage.pkl")
    _one_line_error(e)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------------------
# files that are not generators
# --------------------------------------------------------------------------------------------------------------
def test_bad_files_are_named(tmp_path, params):
    with pytest.raises(ValueError, match=r"nope\.pt: expected a generator checkpoint file, but no such file"):
        load_generator(tmp_path / "nope.pt")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pkl: .*empty file"):
        load_generator(tmp_path / "empty.pkl")
    (tmp_path / "notes.txt").write_text("hello, not a network")
    with pytest.raises(ValueError, match=r"notes\.txt: unknown format"):
        load_generator(tmp_path / "notes.txt")
    torch.save({"model": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: unknown checkpoint format.*'model'"):
        load_generator(tmp_path / "other.pt")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match=r"list\.pkl: unknown checkpoint format.*list"):
        load_generator(tmp_path / "list.pkl")
    with pytest.raises(TypeError, match="path: expected a str or os.PathLike"):
        load_generator(123)


def test_truncated_files_are_named(tmp_path, params):
    pkl = _nvidia_file(tmp_path, params).read_bytes()
    (tmp_path / "cut.pkl").write_bytes(pkl[: len(pkl) // 2])
    with pytest.raises(ValueError, match=r"cut\.pkl: expected a network pickle, but it is truncated or corrupt"):
        load_generator(tmp_path / "cut.pkl")
    torch.save({"g_ema": to_rosinality(params, SIZE, N_MLP)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.pt: expected a torch checkpoint, but it is truncated or corrupt"):
        load_generator(tmp_path / "cut.pt")
