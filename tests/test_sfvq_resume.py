"""Resumable SFVQ fits, the published start (init="randn") and extreme scales (issue 10 "Resumable SFVQ fits",
"Silent wrong output" 2 for SFVQ.fit).  An interrupted and resumed fit must equal the uninterrupted one
bit for bit on the CPU (torch.equal on the curve and every logged number)."""
import math
import os
import signal

import pytest
import torch

from latentfast import SFVQ, segment_assign
from latentfast.sfvq import fit as sfvq_fit


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _gen(seed):
    return torch.Generator().manual_seed(seed)


X = torch.randn(330, 8, generator=_gen(0)) * torch.linspace(0.5, 2, 8)
# 330 // 32 = 10 steps per epoch (10 rows dropped), 3 epochs, stages 4 -> 8 -> 12: 90 steps
KW = dict(epochs_per_stage=3, batch_size=32, lr=1e-2, progress=False)


def _fit(path=None, seed=7, **kw):
    model = SFVQ(12, 8)
    log = model.fit(X, generator=_gen(seed), checkpoint=path, **{**KW, **kw})
    return model, log


def _same(a, b):
    (ma, la), (mb, lb) = a, b
    assert torch.equal(ma.vertices, mb.vertices)
    assert la.mean_distance_sq == lb.mean_distance_sq
    assert len(la.stages) == len(lb.stages)
    for sa, sb in zip(la.stages, lb.stages):
        assert sa.loss == sb.loss and sa.perplexity == sb.perplexity
        assert torch.equal(sa.segment_counts, sb.segment_counts)
        assert torch.equal(sa.initial_vertices, sb.initial_vertices)
        assert torch.equal(sa.final_vertices, sb.final_vertices)


def _interrupt_at(monkeypatch, n, how):
    """Make the n-th training step (1-based) get a SIGINT while it runs ("signal"), or raise
    KeyboardInterrupt before it does anything ("raise")."""
    real, calls = sfvq_fit.train_step, [0]

    def step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            if how == "raise":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(sfvq_fit, "train_step", step)
    return calls


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("n", [4, 10, 47, 81], ids=["stage1-mid-epoch", "stage1-epoch-end", "stage2-mid", "stage3"])
def test_sigint_then_resume_is_bit_identical(tmp_path, monkeypatch, n, shuffle):
    reference = _fit(shuffle=shuffle)
    path = tmp_path / "fit.ckpt"
    calls = _interrupt_at(monkeypatch, n, "signal")
    with pytest.raises(KeyboardInterrupt):
        _fit(path, shuffle=shuffle)
    assert calls[0] == n  # the step that got the signal finished, then the fit stopped
    state = torch.load(path, weights_only=True)
    assert state["step"] == n
    monkeypatch.undo()
    # another seed on purpose: the generator's state comes from the checkpoint
    resumed = _fit(path, seed=99, shuffle=shuffle, resume=True)
    _same(reference, resumed)
    assert [r["first_step"] for r in resumed[1].runs] == [0, n]
    assert [r["steps"] for r in resumed[1].runs] == [n, 90 - n]


def test_interrupt_inside_a_step_resumes_from_the_last_checkpoint(tmp_path, monkeypatch):
    reference = _fit(shuffle=True)
    path = tmp_path / "fit.ckpt"
    _interrupt_at(monkeypatch, 24, "raise")  # steps 1-23 done; the checkpoint of step 20 stands
    with pytest.raises(KeyboardInterrupt):
        _fit(path, shuffle=True, checkpoint_every=5)
    assert torch.load(path, weights_only=True)["step"] == 20
    monkeypatch.undo()
    _same(reference, _fit(path, shuffle=True, resume=True, checkpoint_every=5))


def test_periodic_checkpoints_and_resume_of_a_finished_fit(tmp_path):
    path = tmp_path / "fit.ckpt"
    done = _fit(path, checkpoint_every=7)
    state = torch.load(path, weights_only=True)
    assert state["stage"] == 3 and state["step"] == 90 and not state["stage_started"]
    _same(done, _fit(path, resume=True))


def test_resume_refuses_other_fits(tmp_path):
    path = tmp_path / "fit.ckpt"
    _fit(path, epochs_per_stage=1)
    with pytest.raises(ValueError, match="checkpoint.*exists.*resume=True"):
        _fit(path, epochs_per_stage=1)
    with pytest.raises(ValueError, match="checkpoint.*other arguments.*lr"):
        _fit(path, epochs_per_stage=1, lr=1e-3, resume=True)
    other = X.clone()
    other[5, 3] += 1
    with pytest.raises(ValueError, match="checkpoint.*other latents.*sample_sha256"):
        SFVQ(12, 8).fit(other, generator=_gen(7), checkpoint=path, resume=True, **{**KW, "epochs_per_stage": 1})
    with pytest.raises(ValueError, match="checkpoint.*no checkpoint file"):
        _fit(tmp_path / "missing.ckpt", resume=True)
    with pytest.raises(ValueError, match="checkpoint: expected a path"):
        _fit(None, checkpoint_every=3)
    with pytest.raises(ValueError, match="checkpoint_every"):
        _fit(tmp_path / "x.ckpt", checkpoint_every=0)
    with pytest.raises(ValueError, match="checkpoint: parent directory .* does not exist"):
        _fit(tmp_path / "no" / "x.ckpt")
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checkpoint: ") as err:
        _fit(path, epochs_per_stage=1, resume=True)
    assert "\n" not in str(err.value)


def test_init_randn_is_the_published_start():
    """train.py: codebook_initialization(torch.randn(10000, D)): norm-quartile means of standard normal draws."""
    model = SFVQ(4, 8)
    log = model.fit(X, generator=_gen(3), init="randn", **{**KW, "epochs_per_stage": 1})
    r = torch.randn(10000, 8, generator=_gen(3)).double()
    r = r[torch.sort(r.norm(dim=1), stable=True).indices]
    expected = r.reshape(4, 2500, 8).mean(1).float()
    torch.testing.assert_close(log.stages[0].initial_vertices, expected, rtol=0, atol=1e-6)
    data_start = SFVQ(4, 8).fit(X, generator=_gen(3), **{**KW, "epochs_per_stage": 1}).stages[0].initial_vertices
    assert not torch.allclose(data_start, expected, atol=1e-2)
    assert log.init == "randn"
    with pytest.raises(ValueError, match="init"):
        model.fit(X, init="zeros", progress=False)


def test_extreme_scales_train_like_unit_scale():
    """Scaling the latents by 2^k outside the safe range changes nothing but the units: the fits of x 2^80 and
    x 2^-80 are the same curve, exactly; 1e20- and 1e-20-scale fits report finite losses that match a float64
    evaluation and are as good as the unit-scale fit."""
    kw = {**KW, "epochs_per_stage": 2}
    big, small = SFVQ(8, 8), SFVQ(8, 8)
    lb = big.fit(X * 2.0 ** 80, generator=_gen(1), **kw)
    ls = small.fit(X * 2.0 ** -80, generator=_gen(1), **kw)
    e = math.frexp(float(X.abs().max()))[1]  # max |X| is in [2^(e-1), 2^e)
    assert lb.scale_log2 == -(e + 80) and ls.scale_log2 == -(e - 80)
    assert torch.equal(big.vertices * 2.0 ** -80, small.vertices * 2.0 ** 80)
    assert lb.mean_distance_sq == math.ldexp(ls.mean_distance_sq, 320)
    assert lb.stages[-1].loss == [math.ldexp(v, 320) for v in ls.stages[-1].loss]
    for s in (1e20, 1e-20):
        model = SFVQ(8, 8)
        log = model.fit(X * s, generator=_gen(1), **kw)
        assert all(math.isfinite(v) and v > 0 for st in log.stages for v in st.loss)
        x64, v64 = X.double(), model.vertices.detach().double() / s  # distances are scale-covariant
        oracle = float(segment_assign(x64, v64).distance_sq.mean()) * s * s
        assert log.mean_distance_sq == pytest.approx(oracle, rel=1e-5)
        # and it is exactly the fit of the same latents brought into [0.5, 1) by the same power of two
        unit = SFVQ(8, 8)
        unit_log = unit.fit((X * s) * 2.0 ** log.scale_log2, generator=_gen(1), **kw)
        assert unit_log.scale_log2 == 0
        assert torch.equal(model.vertices * 2.0 ** log.scale_log2, unit.vertices)
        assert log.mean_distance_sq == math.ldexp(unit_log.mean_distance_sq, -2 * log.scale_log2)
