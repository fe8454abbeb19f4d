"""Tangent chunking of the torch.func Jacobian operator: same answer as one pass, within the memory budget."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import latentfast as lf
from latentfast.localbasis.jacobian import FuncOperator

REPO = Path(__file__).resolve().parents[2]


class TinyConv(nn.Module):
    """10 -> (3, 16, 16): linear to 8x4x4, 4x nearest upsampling, two 3x3 convs (a synthesis-shaped f)."""

    def __init__(self, d_in=10):
        super().__init__()
        self.lin = nn.Linear(d_in, 8 * 4 * 4)
        self.c1 = nn.Conv2d(8, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, z):
        x = nn.functional.interpolate(self.lin(z).reshape(-1, 8, 4, 4), scale_factor=4)
        return self.c2(torch.tanh(self.c1(x)))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyConv().double().requires_grad_(False), torch.randn(3, 10, dtype=torch.float64)


@pytest.mark.parametrize("method,k", [("exact", None), ("randomized", 4)])
def test_chunked_equals_unchunked_float64(tiny, method, k):
    net, z = tiny
    run = lambda mm: lf.local_basis(net, z, k, method=method, max_memory=mm,  # noqa: E731
                                    generator=torch.Generator().manual_seed(1))
    one, chunked = run(None), run(1)  # automatic budget: one pass; 1 byte: one tangent per pass
    torch.testing.assert_close(chunked.singular_values, one.singular_values, rtol=1e-12, atol=0)
    torch.testing.assert_close(chunked.input_basis, one.input_basis, rtol=0, atol=1e-10)
    torch.testing.assert_close(chunked.basis, one.basis, rtol=0, atol=1e-10)


def test_operator_widths_follow_the_budget(tiny):
    net, z = tiny
    V = torch.randn(3, 10, 30, dtype=torch.float64)
    U = torch.randn(3, 768, 30, dtype=torch.float64)
    FuncOperator(net, z).jvp(V)  # warm-up: the first conv pass of a process allocates oneDNN's caches (~30 MB)
    whole = FuncOperator(net, z)
    want_j, want_v = whole.jvp(V), whole.vjp(U)
    assert [p[1] for p in whole.passes] == [30, 30]  # the automatic budget holds everything at once
    per = max(whole.passes[0][3], whole.passes[0][4] or 0) / 30  # bytes per column, measured
    budget = int(8 * per)
    op = FuncOperator(net, z, max_memory=budget, audit=True)
    torch.testing.assert_close(op.jvp(V), want_j, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.vjp(U), want_v, rtol=0, atol=1e-12)
    for kind in ("jvp", "vjp"):
        widths = [p[1] for p in op.passes if p[0] == kind]
        assert sum(widths) == 30 and len(widths) > 2 and max(widths) > 1, widths
    for kind, c, estimate, counted, _ in op.passes:
        if estimate is not None:
            assert estimate <= budget, (kind, c, estimate, budget)
            assert counted <= estimate, (kind, c, counted, estimate)  # the allocations stay inside the estimate


def test_one_byte_budget_runs_one_tangent_at_a_time(tiny):
    net, z = tiny
    op = FuncOperator(net, z, max_memory=1)
    V = torch.randn(3, 10, 5, dtype=torch.float64)
    torch.testing.assert_close(op.jvp(V), FuncOperator(net, z).jvp(V), rtol=0, atol=1e-12)
    assert [p[1] for p in op.passes] == [1] * 5


@pytest.mark.parametrize("value,exc", [(0, ValueError), (1.5e9, TypeError), ("1GB", TypeError)])
def test_bad_max_memory_is_named(tiny, value, exc):
    net, z = tiny
    with pytest.raises(exc, match="max_memory"):
        lf.local_basis(net, z, 2, max_memory=value)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc (VmHWM reset)")
def test_peak_resident_memory_respects_the_budget():
    """A real peak: VmHWM of a subprocess around 24 JVPs + 24 VJPs of a conv net (1 MB per activation)."""
    # a fixed mmap threshold: every large buffer is its own mapping, returned on free.  glibc's default raises the
    # threshold after the warm-up frees its buffers, which then stay resident and hide the measured round's
    # peak (unchunked increases of 25 MB instead of ~105 MB were seen, now and then)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2", MALLOC_MMAP_THRESHOLD_="65536")

    def run(budget):
        out = subprocess.run([sys.executable, str(Path(__file__).with_name("peak_rss.py")), budget], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    unchunked, chunked = run("none"), run(str(30_000_000))
    assert unchunked["widths"] == [24, 24]
    assert max(chunked["widths"]) < 24
    assert chunked["increase"] <= chunked["max_memory"] + chunked["result_bytes"], chunked
    assert unchunked["increase"] > 2 * chunked["increase"], (unchunked, chunked)
