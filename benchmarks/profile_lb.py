"""Where the time of one randomized ``local_basis`` call goes on the LB workload (issue 13 item 3).

``python -m benchmarks.profile_lb [--B 64] [--k 10] [--repeats 5] [--flat]``: builds the LB workload's mapping
network (benchmarks/workloads.py), runs ``local_basis(net, z, k, method="randomized", backend="reference")`` once
to warm up, then ``repeats`` times with every component wrapped in a wall-clock timer (the tangent passes' GEMMs,
activation masks, layout copies and finiteness checks separately; orthogonalisation; the adaptive checks; the
final SVD and residuals; sign fixing).  Prints, per component, the median over the repeats of its exclusive time
(ms per latent and % of the call), and the same call untimed (wall, for the timers' own overhead).  Timers wrap
functions by monkeypatching; nothing in latentfast is changed.  CPU only (torch ops there are synchronous).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections import defaultdict
from statistics import median

import torch

import latentfast
from latentfast.localbasis import basis as basis_mod, jacobian as jac_mod, krylov as kr
from latentfast.ops.mlp_jvp import reference as ref

from .workloads import MappingNet, _gemm_rate

_stack = []
_excl = defaultdict(float)


@contextlib.contextmanager
def region(label):
    t0 = time.perf_counter()
    _stack.append([label, 0.0])  # label, time spent in children
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        _, child = _stack.pop()
        _excl["/".join([s[0] for s in _stack] + [label])] += dt - child
        if _stack:
            _stack[-1][1] += dt


def wrap(obj, name, label):
    fn = getattr(obj, name)

    def timed(*a, **kw):
        with region(label):
            return fn(*a, **kw)

    setattr(obj, name, timed)
    return fn


def install():
    """Wrap the components (only those that exist in this tree's latentfast)."""
    for obj, name, label in [
        (ref, "_pixel_norm_tangent", "pixel-norm tangent"),
        (ref, "_layers", "layers: activation masks (in place), buffers"),
        (torch, "mm", "GEMM"),
        (ref, "forward", "primal forward + masks (once per call)"),
        (ref, "jvp", "JVP: layout copies"), (ref, "vjp", "VJP: layout copies"),
        (jac_mod, "check_finite_rows", "finiteness check (f(z), each pass)"),
        (jac_mod.CheckedOperator, "jvp", "JVP"), (jac_mod.CheckedOperator, "vjp", "VJP"),
        (kr.KrylovResult, "__init__", "result"),
        (kr, "orthonormalize", "CholeskyQR2"),
        (kr, "orthonormalize_with_gram", "CholeskyQR (from the Gram)"),
        (kr, "_orthogonalize_against", "orthogonalise new block"),
        (kr, "_gram", "check: Gram W^T W (float64)"),
        (kr, "_settled", "check (_settled)"),
        (kr, "_ritz", "Ritz triplets + residuals (check)"),
        (kr, "_eig", "eigh of the Gram"),
        (kr, "_right_vectors", "final V = W Z s^-1 (or thin SVD)"),
        (kr, "thin_svd", "final thin_svd of W"),
        (kr, "_residuals", "residuals"),
        (kr, "angle_bounds", "angle bounds"),
        (kr, "output_signs", "output signs"),
        (basis_mod, "fix_signs", "fix_signs"),
        (basis_mod, "linearize", "linearize (f's forward, checks)"),
        (basis_mod, "randomized_svd", "randomized_svd (rest: randn, buffer copies, U = K Z)"),
    ]:
        if hasattr(obj, name):
            wrap(obj, name, label)
    real_eigh = torch.linalg.eigh

    def eigh(*a, **kw):
        with region("eigh (float64)"):
            return real_eigh(*a, **kw)

    torch.linalg.eigh = eigh
    real_cat = torch.cat

    def cat(*a, **kw):
        with region("torch.cat"):
            return real_cat(*a, **kw)

    torch.cat = cat


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--oversample", type=int, default=10)
    p.add_argument("--flat", action="store_true", help="the flat-spectrum network (random init) instead")
    a = p.parse_args(argv)
    torch.manual_seed(1)
    net = MappingNet(512, 8, None if a.flat else 0.995, seed=3 if a.flat else 0)
    z = torch.randn(a.B, 512)
    call = lambda: latentfast.local_basis(net, z, a.k, method="randomized",  # noqa: E731
                                          generator=torch.Generator().manual_seed(7), backend="reference",
                                          oversample=a.oversample)
    lb = call()
    walls = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        call()
        walls.append(time.perf_counter() - t0)
    rate = _gemm_rate(a.B * (a.k + 10), [(512, 512)] * 8, "cpu")
    cols = int(lb.tangent_columns[0])
    floor = cols * 8 * 2 * 512 * 512 / rate
    install()
    runs = []
    for _ in range(a.repeats):
        _excl.clear()
        t0 = time.perf_counter()
        call()
        total = time.perf_counter() - t0
        runs.append((total, dict(_excl)))
    keys = sorted({k for _, e in runs for k in e})
    total = median(t for t, _ in runs)
    spectrum = "flat" if a.flat else "decaying"
    print(f"# local_basis randomized k={a.k}, oversample {a.oversample}, B={a.B}, {spectrum} spectrum; "
          f"torch threads {torch.get_num_threads()}; load {os.getloadavg()}")
    print(f"iterations {int(lb.iterations[0])}, tangent columns {cols}; sgemm {rate / 1e9:.1f} GFLOP/s -> floor "
          f"{floor * 1e3:.2f} ms/latent; untimed wall {median(walls) / a.B * 1e3:.2f} ms/latent "
          f"(min {min(walls) / a.B * 1e3:.2f}); instrumented wall {total / a.B * 1e3:.2f} ms/latent")
    print("| component (exclusive) | ms/latent | % of instrumented wall |\n|---|---|---|")
    for key in keys:
        ms = median(e.get(key, 0.0) for _, e in runs) / a.B * 1e3
        print(f"| {key} | {ms:.3f} | {100 * ms / (total / a.B * 1e3):.1f} |")
    by_leaf = defaultdict(float)
    for key in keys:
        by_leaf[key.split("/")[-1]] += median(e.get(key, 0.0) for _, e in runs) / a.B * 1e3
    print("\n| by leaf label | ms/latent | % |\n|---|---|---|")
    for key, ms in sorted(by_leaf.items(), key=lambda kv: -kv[1]):
        print(f"| {key} | {ms:.3f} | {100 * ms / (total / a.B * 1e3):.1f} |")


if __name__ == "__main__":
    main()
