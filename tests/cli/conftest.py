"""Fixtures of the command tests: a tiny generator in place of the embedded one, files of every wrong kind, and
a stand-in for SFVQ.fit with the resumable-checkpoint API (checkpoint=, checkpoint_every=, resume=, init=)."""
import pickle

import numpy as np
import pytest
import torch

W_DIM = 32


@pytest.fixture
def tiny_generator(monkeypatch):
    """A small random StyleGAN2 (z, w: 16, 32) stands in for the embedded default generator; ``--checkpoint``
    still goes through the real loader (so its errors are tested)."""
    from latentfast.models import StyleGAN2Generator
    import latentfast.models.default as default

    torch.manual_seed(0)
    G = StyleGAN2Generator(16, W_DIM, n_mlp=3, channels={4: 16, 8: 16, 16: 16}).eval()
    monkeypatch.setattr(default, "load_default_generator", lambda device="cpu": G)
    return G


@pytest.fixture
def files(tmp_path):
    """Input files, good and bad, by name."""
    d = tmp_path / "inputs"
    d.mkdir()
    rng = np.random.default_rng(0)
    paths = {}

    def npy(name, arr):
        paths[name] = d / f"{name}.npy"
        np.save(paths[name], arr)

    npy("latents", rng.normal(size=(300, W_DIM)).astype(np.float32))
    npy("latents_nan", np.full((10, W_DIM), np.nan, dtype=np.float32))
    npy("latents_1d", np.zeros(5, dtype=np.float32))
    npy("direction", rng.normal(size=W_DIM).astype(np.float32))
    npy("direction_zero", np.zeros(W_DIM, dtype=np.float32))
    npy("direction_nan", np.full(W_DIM, np.nan, dtype=np.float32))
    npy("direction_inf", np.r_[np.ones(W_DIM - 1), np.inf].astype(np.float32))
    npy("direction_width", np.ones(7, dtype=np.float32))
    npy("direction_rank", np.ones((2, W_DIM), dtype=np.float32))
    paths["png"] = d / "img.png"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(paths["png"])
    paths["pickle_npy"] = d / "pickled.npy"  # a pickle under a .npy name: never unpickled
    paths["pickle_npy"].write_bytes(pickle.dumps({"a": 1}))
    paths["text"] = d / "notes.pt"
    paths["text"].write_text("not a tensor file")
    paths["empty"] = d / "empty.pt"
    paths["empty"].write_bytes(b"")
    paths["missing"] = d / "does-not-exist.npy"
    paths["dir"] = d
    return paths


class FakeFit:
    """Stands in for SFVQ.fit with the checkpoint API: ``total`` steps, interrupted (KeyboardInterrupt, after
    writing the checkpoint, as the real fit does) at step ``interrupt_at`` unless resuming; the curve itself is
    the real fit's on the same latents.  ``calls`` records the keyword arguments of each call."""

    def __init__(self, total=10, interrupt_at=None):
        self.total, self.interrupt_at, self.calls = total, interrupt_at, []

    def __call__(self, model, latents, *, checkpoint=None, checkpoint_every=None, resume=False, init="data",
                 **kwargs):
        from latentfast.sfvq import fit as _fit

        self.calls.append(dict(checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, init=init,
                               **kwargs))
        step = torch.load(checkpoint, weights_only=True)["step"] if resume else 0
        for step in range(step, self.total):
            if self.interrupt_at is not None and step == self.interrupt_at and not resume:
                torch.save({"step": step}, checkpoint)
                raise KeyboardInterrupt
        vertices, log = _fit.fit_sfvq(latents, model.num_vertices, epochs_per_stage=kwargs["epochs_per_stage"],
                                      batch_size=kwargs["batch_size"], lr=kwargs["lr"], progress=False,
                                      generator=kwargs["generator"])
        model.vertices = torch.nn.Parameter(vertices)
        return log


@pytest.fixture
def fake_fit(monkeypatch):
    from latentfast.sfvq import SFVQ

    fake = FakeFit()
    monkeypatch.setattr(SFVQ, "fit", lambda self, latents, **kw: fake(self, latents, **kw))
    return fake
