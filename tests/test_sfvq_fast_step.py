"""The native SFVQ training step (latentfast/sfvq/_fast_step.py) against the autograd step it replaces."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from latentfast._dispatch import native_module
from latentfast.ops.segment_assign import scaling
from latentfast.sfvq import _fast_step, fit, stages, training_log

DATA = Path(__file__).parent / "data" / "sfvq_stylegan2_ffhq"
needs_native = pytest.mark.skipif(native_module() is None or not hasattr(native_module(), "sfvq_step_cpu"),
                                  reason="native extension not built")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _problem(bits, batch, steps, dim=None, dtype=torch.float32, noise=1.0, seed=0):
    curve = torch.from_numpy(np.load(DATA / f"codebook_{bits}bit.npy")).to(dtype)
    if dim is not None:
        curve = curve[:, :dim].contiguous()
    g = torch.Generator().manual_seed(seed)
    m = curve.shape[0]
    j = torch.randint(0, m - 1, (batch * 4,), generator=g)
    t = torch.rand(batch * 4, 1, generator=g, dtype=dtype)
    data = curve[j] + t * (curve[j + 1] - curve[j]) + noise * torch.randn(batch * 4, curve.shape[1], generator=g,
                                                                          dtype=dtype)
    lams = torch.rand(steps, m - 1, generator=g, dtype=dtype)
    return curve, data, lams


def _train(curve, data, lams, batch, fast, lr=1e-3, opt_state=None):
    v = curve.clone().requires_grad_(True)
    opt = fit._adam(v, lr)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    losses, idxs = [], []
    for i in range(lams.shape[0]):
        x = data[(i % 4) * batch:(i % 4 + 1) * batch]
        if fast:
            assert _fast_step.fast_step_why_not(v, opt, x, lams[i], "auto") == []
            loss, idx = fit.train_step(v, opt, x, lams[i])
            assert v.grad is None
        else:  # chunk_size forces the autograd path (the reference's answer is the same exact assignment)
            loss, idx = fit.train_step(v, opt, x, lams[i], chunk_size=1 << 20)
            assert v.grad is not None  # the dense gradient an all-reduce would see
        losses.append(float(loss))
        idxs.append(idx.clone())
    return v.detach(), opt, torch.tensor(losses, dtype=torch.float64), torch.stack(idxs)


@needs_native
@pytest.mark.parametrize("bits, batch, steps, dim, dtype", [
    pytest.param(7, 64, 100, None, torch.float32, marks=pytest.mark.slow),  # M = 128, D = 512, batch 64: 100 steps
    (10, 64, 20, None, torch.float32),   # M = 1024: the authors' curve size
    (6, 16, 60, 5, torch.float32),       # odd D: torch's scalar Adam tail; many rows share a point
    (5, 30, 20, 37, torch.float32),      # the small-curve GEMM loop: rows % 4, points % 2 and D % 8 all nonzero
    (5, 256, 30, 24, torch.float64),     # float64, a batch larger than the curve
])
def test_fast_step_matches_autograd_step(bits, batch, steps, dim, dtype):
    curve, data, lams = _problem(bits, batch, steps, dim, dtype)
    v_ref, opt_ref, loss_ref, idx_ref = _train(curve, data, lams, batch, fast=False)
    v, opt, loss, idx = _train(curve, data, lams, batch, fast=True)
    assert torch.equal(idx, idx_ref)
    assert float(((loss - loss_ref).abs() / loss_ref.abs()).max()) <= 1e-6
    # the same arithmetic as torch's fused Adam, element by element
    assert torch.equal(v, v_ref)
    st, st_ref = opt.state_dict()["state"][0], opt_ref.state_dict()["state"][0]
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert st[key].dtype == st_ref[key].dtype and torch.equal(st[key], st_ref[key]), key


@needs_native
def test_fast_step_state_dict_resumes_in_torch_adam():
    """A checkpoint of the fast path's optimizer continues in the autograd path exactly as the fast path does."""
    curve, data, lams = _problem(6, 32, 20, 40)
    v, opt, _, _ = _train(curve, data, lams[:10], 32, fast=True)
    state = opt.state_dict()  # load_state_dict keeps these very tensors: give each run its own copy
    a, _, la, ia = _train(v, data, lams[10:], 32, fast=False, opt_state=copy.deepcopy(state))
    b, _, lb, ib = _train(v, data, lams[10:], 32, fast=True, opt_state=copy.deepcopy(state))
    assert torch.equal(ia, ib) and torch.equal(a, b)
    assert float(((la - lb).abs() / la).max()) <= 1e-6


@needs_native
def test_fast_step_only_where_it_reproduces_the_step():
    curve, data, lams = _problem(5, 8, 1, 8)
    v = curve.clone().requires_grad_(True)
    x, lam = data[:8], lams[0]
    assert _fast_step.fast_step_why_not(v, fit._adam(v, 1e-3), x, lam, "auto") == []
    assert _fast_step.fast_step_why_not(v, torch.optim.Adam([v], lr=1e-3), x, lam, "auto")  # not fused
    assert _fast_step.fast_step_why_not(v, torch.optim.Adam([v], lr=1e-3, fused=True, weight_decay=0.1), x, lam,
                                        "auto")
    assert _fast_step.fast_step_why_not(v, torch.optim.SGD([v], lr=1e-3), x, lam, "auto")
    assert _fast_step.fast_step_why_not(v, fit._adam(v, 1e-3), x, lam, "reference")
    assert _fast_step.fast_step_why_not(v, fit._adam(v, 1e-3), x.double(), lam, "auto")
    # a plain Adam still trains, through autograd and its own step
    opt = torch.optim.Adam([v], lr=1e-3)
    loss, idx = fit.train_step(v, opt, x, lam)
    assert v.grad is not None and idx.shape == (8,) and opt.state[v]["step"] == 1


@needs_native
def test_fast_step_refuses_nan_and_modifies_nothing():
    curve, data, lams = _problem(5, 8, 1, 8)
    v = curve.clone().requires_grad_(True)
    opt = fit._adam(v, 1e-3)
    fit.train_step(v, opt, data[:8], lams[0])
    before = (v.detach().clone(), opt.state[v]["exp_avg"].clone(), opt.state[v]["step"].clone())
    x = data[:8].clone()
    x[3, 2] = float("nan")
    with pytest.raises(ValueError, match="x: expected finite"):
        fit.train_step(v, opt, x, lams[0])
    with torch.no_grad():
        v[5, 1] = float("inf")
    with pytest.raises(ValueError, match="vertices: expected a finite curve"):
        fit.train_step(v, opt, data[:8], lams[0])
    with torch.no_grad():
        v[5, 1] = before[0][5, 1]
    assert torch.equal(v.detach(), before[0]) and torch.equal(opt.state[v]["exp_avg"], before[1])
    assert torch.equal(opt.state[v]["step"], before[2])


@needs_native
@pytest.mark.parametrize("scale", [1e-22, 1e-7, 1.0, 1e11, 1e19])
def test_train_step_is_exact_at_any_scale(scale):
    """Outside the native step's range (float32 cheap distances underflow or overflow: without the window 4 of
    64 rows were wrong at 1e-22 and 5 at 1e19) train_step takes the autograd path, which rescales; inside it the
    native step serves.  Either way every row gets the float64 oracle's nearest dithered point."""
    g = torch.Generator().manual_seed(12)
    c = torch.randn(32, 16, generator=g) * scale
    x = torch.randn(64, 16, generator=g) * scale
    lam = torch.rand(31, generator=g)
    v = c.clone().requires_grad_(True)
    opt = fit._adam(v, 1e-3)
    reasons = _fast_step.fast_step_why_not(v, opt, x, lam, "auto")
    big, lim = max(float(x.abs().max()), float(c.abs().max())), 2.0 ** scaling.SAFE_EXPONENT[torch.float32]
    inside = 1 / lim <= big <= lim
    assert inside == (scale in (1e-7, 1.0, 1e11))
    assert (reasons == []) == inside, reasons
    _, idx = fit.train_step(v, opt, x, lam)
    assert (v.grad is None) == inside  # the native step forms no dense gradient
    dith = (c[:-1] + lam[:, None] * (c[1:] - c[:-1])).double()
    assert torch.equal(idx, ((x.double()[:, None] - dith[None]) ** 2).sum(-1).argmin(1))


def test_train_step_refuses_an_empty_batch():
    curve, data, lams = _problem(5, 8, 1, 8)
    v = curve.clone().requires_grad_(True)
    opt = fit._adam(v, 1e-3)
    with pytest.raises(ValueError, match=r"x: expected a non-empty batch .*got shape \(0, 8\)"):
        fit.train_step(v, opt, data[:0], lams[0])
    assert torch.equal(v.detach(), curve) and not opt.state


@needs_native
def test_fast_step_near_ties_take_the_second_pass_and_stay_exact():
    """A grown curve shrunk to 1 % of its size around its mean, under D = 512 noise: every dithered point is at
    almost the same distance, most rows cannot be certified from the K candidates and take the second,
    bound-filtered pass; the assignment is still the float64 nearest dithered point (lowest index on ties) and
    the steps those of the autograd path."""
    from latentfast.ops.segment_assign import reference
    curve, data, _ = _problem(5, 64, 1, noise=1.0, seed=3)
    curve = stages.grow(curve, 2 * curve.shape[0] - 1)
    mu = curve.mean(0)
    curve = mu + 0.01 * (curve - mu)
    lams = torch.rand(6, curve.shape[0] - 1, generator=torch.Generator().manual_seed(4))
    v = curve.clone().requires_grad_(True)
    opt = fit._adam(v, 1e-3)
    st = _fast_step.Stepper(v, opt, data[:64])
    second_pass_rows = 0
    for i in range(lams.shape[0]):
        x = data[(i % 4) * 64:(i % 4 + 1) * 64]
        if i > 0:  # the native call on copies of the state, to read how many rows took the second pass
            state = opt.state[v]
            idx = torch.empty(64, dtype=torch.int64)
            _, status, rows = native_module().sfvq_step_cpu(
                v.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone(), x, lams[i],
                float(state["step"]) + 1, 1e-3, 0.9, 0.999, 1e-8, reference.gemm_error_bound(v.shape[1], v.dtype),
                reference.NUM_CANDIDATES, 8, True, idx, torch.empty(0, dtype=torch.float64), torch.empty(0))
            assert status == 0
            second_pass_rows += rows
            dith = (v[:-1] + lams[i].unsqueeze(1) * (v[1:] - v[:-1])).detach().double()
            d64 = ((x.double().unsqueeze(1) - dith.unsqueeze(0)) ** 2).sum(-1)
            lowest = (d64 == d64.min(1, keepdim=True).values).to(torch.int64).argmax(1)
            assert torch.equal(idx, lowest)
        st.step(x, lams[i])
    assert second_pass_rows > 5 * 64 // 4
    ref, _, ref_losses, ref_idx = _train(curve, data, lams, 64, fast=False)
    fast, _, fast_losses, fast_idx = _train(curve, data, lams, 64, fast=True)
    assert torch.equal(fast_idx, ref_idx) and torch.equal(fast, ref)
    assert float(((fast_losses - ref_losses).abs() / ref_losses.abs()).max()) <= 1e-6


@needs_native
@pytest.mark.parametrize("offset", [0.0, 3.0, -50.0])
def test_the_shift_and_a_reused_workspace_change_nothing(offset):
    """A Stepper keeps one shift (the vertices' mean when it was built) and one native workspace for all its
    steps; the cheap distances' shift only moves the certification's bound, so any shift — here the stage
    mean moved by a constant — gives bit for bit the result of a fresh call per step (its own mean, its own
    scratch), and the workspace grown by a larger curve serves a smaller one."""
    curve, data, lams = _problem(6, 64, 12, noise=1.0, seed=5)
    fresh, fresh_opt, fresh_losses, fresh_idx = _train(curve, data, lams, 64, fast=True)
    v = curve.clone().requires_grad_(True)
    opt = fit._adam(v, 1e-3)
    st = _fast_step.Stepper(v, opt, data[:64])
    st._shift = st._shift + offset
    st._work = torch.empty(stages.grow(curve, 2 * curve.shape[0] - 1).numel() * 2)  # larger than needed
    before = st._work.data_ptr()
    losses, idxs = [], []
    for i in range(lams.shape[0]):
        loss, idx = st.step(data[(i % 4) * 64:(i % 4 + 1) * 64], lams[i])
        losses.append(loss)
        idxs.append(idx)
    assert st._work.data_ptr() == before  # reused, not reallocated
    assert torch.equal(torch.stack(idxs), fresh_idx) and torch.equal(v.detach(), fresh)
    assert torch.equal(torch.tensor(losses, dtype=torch.float64), fresh_losses)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(opt.state[v][key], fresh_opt.state[fresh_opt.param_groups[0]["params"][0]][key])


@pytest.mark.parametrize("threads", [1, 2])
def test_perplexities_equal_the_per_batch_perplexity_bit_for_bit(threads):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    for s in [1, 3, 7, 8, 9, 63, 255, 1023, 2047, 2048, 3000]:
        for k in [1, 5, 40]:
            counts = torch.zeros(k, s, dtype=torch.int64)
            for r in range(k):  # batch-like rows: 64 choices among the s segments, some rows all zero
                if r % 7 != 6:
                    counts[r] = torch.bincount(torch.randint(0, s, (64,), generator=g), minlength=s)
            got = training_log._perplexities(counts)
            want = [float(training_log._perplexity(c)) for c in counts]
            assert got == want, (s, k)


@needs_native
@pytest.mark.parametrize("batch", [64, 1024])
def test_fast_step_is_bit_identical_on_one_and_two_threads(batch, monkeypatch):
    """Steps above SMALL_STEP keep torch's threads: the same vertices, Adam moments, losses and segments as on one
    thread (the work splits by rows and vertices; every sum keeps its order)."""
    curve, data, lams = _problem(10, batch, 4)
    one = _train(curve, data, lams, batch, fast=True)
    monkeypatch.setattr(_fast_step, "SMALL_STEP", 0)
    torch.set_num_threads(2)
    two = _train(curve, data, lams, batch, fast=True)
    assert torch.equal(one[0], two[0]) and torch.equal(one[2], two[2]) and torch.equal(one[3], two[3])
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(one[1].state[one[1].param_groups[0]["params"][0]][key],
                           two[1].state[two[1].param_groups[0]["params"][0]][key])
