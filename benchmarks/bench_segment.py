"""CPU benchmark of the nearest-segment op: native kernel vs the pure-PyTorch reference vs a bare torch.mm.

    nice -n 0 python benchmarks/bench_segment.py [--n 65536] [--repeats 5] [--out benchmarks/results/segment_cpu.json]

Workload (issue 4): N = 65,536 float32 points, D = 512, M = 1024 vertices: the authors' 10-bit SFVQ curve of
StyleGAN2-FFHQ W latents (tests/data), points drawn on random segments plus Gaussian noise (0.5 per dimension).
The floor is ``torch.mm`` of the same shape (N x D times D x M), which every backend must do at least once.

Correctness is checked first (native == reference on every point, both == float64 brute force on a subset).
Timings: one warm-up call each, then ``repeats`` interleaved rounds (mm, native, reference in each round, so
that load from other processes hits all three alike); we report the median and min/max, and ratios both of
medians and as the median of per-round ratios.  Results with provenance go to a JSON file.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentfast import _dispatch  # noqa: E402
from latentfast.ops.segment_assign import native, reference, segment_assign  # noqa: E402


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "csrc", "latentfast/ops/segment_assign",
                                "benchmarks/bench_segment.py"], cwd=ROOT, capture_output=True, text=True).stdout
        return sha + ("+dirty" if dirty.strip() else "")
    except OSError:
        return "unknown"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def stats(ts):
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "runs_s": ts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref-repeats", type=int, default=3, help="rounds that also time the (slow) reference")
    ap.add_argument("--block-rows", type=int, default=native.DEFAULT_BLOCK_ROWS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "segment_cpu.json"))
    args = ap.parse_args()
    if _dispatch.native_module() is None:
        sys.exit("latentfast._C is not built: python setup.py build_ext --inplace")

    c = torch.from_numpy(np.load(ROOT / "tests" / "data" / "sfvq_stylegan2_ffhq" / "codebook_10bit.npy"))
    m, dim = c.shape
    g = torch.Generator().manual_seed(0)
    j = torch.randint(0, m - 1, (args.n,), generator=g)
    t = torch.rand(args.n, 1, generator=g)
    x = (c[j] + t * (c[j + 1] - c[j]) + args.noise * torch.randn(args.n, dim, generator=g)).contiguous()
    cT = c.T  # the same (D x M) operand layout the kernels use: a transposed view of the vertices

    def run_mm():
        return torch.mm(x, cT)

    def run_native():
        return segment_assign(x, c, backend="native", chunk_size=args.block_rows)

    def run_reference():
        return segment_assign(x, c, backend="reference")

    # --- correctness first -------------------------------------------------------------------------------------
    rn, rr = run_native(), run_reference()
    diff = (rn.index != rr.index).nonzero().squeeze(1)
    if diff.numel():  # allowed only as float64 ties (the op's contract): check the exact distances
        idx = torch.stack([rn.index[diff], rr.index[diff]], 1)
        ex, _ = reference.exact_scores(x[diff].double(), c.double(), idx, True)
        assert bool(((ex[:, 0] - ex[:, 1]).abs() <= 1e-6 * ex[:, 1]).all()), "native and reference disagree"
    sub = torch.randperm(args.n, generator=g)[:64]
    bi, _, bd = reference.brute_force(x[sub], c)
    assert torch.equal(rn.index[sub], bi), "native != float64 brute force"
    torch.testing.assert_close(rn.distance_sq[sub].double(), bd, rtol=1e-6, atol=1e-9)
    unsure = torch.empty(args.n, dtype=torch.bool)
    native.assign_into(x, c, True, torch.empty(args.n, dtype=torch.int64), torch.empty(args.n),
                       torch.empty(args.n), unsure, block_rows=args.block_rows)
    print(f"correct: native == reference on all {args.n} points ({diff.numel()} float64 ties resolved "
          f"differently), == brute force on 64; "
          f"rows needing the fallback: {int(unsure.sum())} ({100 * float(unsure.float().mean()):.3f} %)")

    # --- timings -----------------------------------------------------------------------------------------------
    load0 = os.getloadavg()
    for fn in (run_mm, run_native, run_reference):
        fn()  # warm-up (allocator, MKL/OpenMP thread pools)
    t_mm, t_nat, t_ref = [], [], []
    for r in range(args.repeats):
        t_mm.append(timed(run_mm))
        t_nat.append(timed(run_native))
        if r < args.ref_repeats:
            t_ref.append(timed(run_reference))
        print(f"round {r}: mm {t_mm[-1]:.3f} s  native {t_nat[-1]:.3f} s" +
              (f"  reference {t_ref[-1]:.3f} s" if r < args.ref_repeats else ""), flush=True)
    load1 = os.getloadavg()

    med = {k: statistics.median(v) for k, v in (("mm", t_mm), ("native", t_nat), ("reference", t_ref))}
    ratios = {
        "native_over_mm": med["native"] / med["mm"],
        "reference_over_native": med["reference"] / med["native"],
        "reference_over_mm": med["reference"] / med["mm"],
        "native_over_mm_per_round_median": statistics.median(a / b for a, b in zip(t_nat, t_mm)),
        "reference_over_native_per_round_median": statistics.median(a / b for a, b in zip(t_ref, t_nat)),
    }
    result = {
        "benchmark": "segment_assign CPU",
        "workload": {"N": args.n, "D": dim, "M": m, "dtype": "float32", "curve": "codebook_10bit.npy (FFHQ)",
                     "noise_per_dim": args.noise, "native_block_rows": args.block_rows,
                     "fallback_rows": int(unsure.sum()), "tie_rows_native_vs_reference": diff.numel()},
        "timings": {"torch_mm": stats(t_mm), "native": stats(t_nat), "reference": stats(t_ref)},
        "ratios": ratios,
        "targets": {"native_over_mm_max": 1.3, "reference_over_native_min": 3.0,
                    "met": ratios["native_over_mm"] <= 1.3 and ratios["reference_over_native"] >= 3.0},
        "provenance": {
            "commit": git_commit(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg_before": load0, "loadavg_after": load1,
            "note": "shared machine: other processes ran during the measurement (see loadavg)",
        },
    }
    print(f"torch.mm   median {med['mm']:.3f} s  [{min(t_mm):.3f}, {max(t_mm):.3f}]")
    print(f"native     median {med['native']:.3f} s  [{min(t_nat):.3f}, {max(t_nat):.3f}]")
    print(f"reference  median {med['reference']:.3f} s  [{min(t_ref):.3f}, {max(t_ref):.3f}]")
    print(f"native / mm = {ratios['native_over_mm']:.2f} (per-round median {ratios['native_over_mm_per_round_median']:.2f}),"
          f" reference / native = {ratios['reference_over_native']:.2f}"
          f" (per-round median {ratios['reference_over_native_per_round_median']:.2f});"
          f" load average {load0[0]:.1f} -> {load1[0]:.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
