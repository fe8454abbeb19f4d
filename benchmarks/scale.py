"""SCALE (issue 12): 1 vs 2 gloo processes on the CPU, one thread each.

    python -m benchmarks.scale [--quick] [--out benchmarks/results/scale_cpu.json]

* **step**: one data-parallel SFVQ training step at a global batch of 4096 rows, M = 1024 vertices, D = 512
  (the authors' 10-bit FFHQ curve, points near it).  1 process runs latentfast's one-process step
  (``train_step``); 2 processes run ``_dp_step`` on 2048 rows each (one all-reduce of the 2 MB gradient,
  the loss, the counts).  The all-reduce share is the time of that same all-reduce alone (same buffer, timed
  in the same processes) over the step time.
* **assign**: ``latentfast.segment_assign`` of 10^6 points (D = 512, M = 1024), each rank its contiguous
  shard, generated in fixed global chunks of 65536 rows (the same points for any sharding) so no rank holds
  more than a chunk; time = the slowest rank's total segment_assign time.

Correctness first: after one step the 2-process curve equals the 1-process one to 1e-5 relative, and the
shards' index sums and distance sums equal the 1-process ones.  Timings are medians over repeated steps (a
barrier before each); the machine's load average is recorded before and after, since this 2-core machine is
shared.  Results: JSON and markdown (default: a new file under benchmarks/results/, never the committed one).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FFHQ = ROOT / "tests" / "data" / "sfvq_stylegan2_ffhq" / "codebook_10bit.npy"
CHUNK = 65536


def _points(curve: torch.Tensor, rows: slice, seed: int) -> torch.Tensor:
    """Points near random segments of ``curve`` (noise 1.0 per dimension), the same rows for any sharding."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + rows.start)
    n = rows.stop - rows.start
    seg = torch.randint(0, curve.shape[0] - 1, (n,), generator=g)
    t = torch.rand(n, 1, generator=g)
    return curve[seg] + t * (curve[seg + 1] - curve[seg]) + torch.randn(n, curve.shape[1], generator=g)


def _median_time(fn, repeats: int, barrier, cpu: list = None) -> list:
    """Wall times of ``repeats`` calls (a barrier before and after each); this process's CPU time of each call
    is appended to ``cpu`` (under load the wall time measures the machine, the CPU time the work)."""
    times = []
    for _ in range(repeats):
        barrier()
        t, c = time.perf_counter(), time.process_time()
        fn()
        if cpu is not None:
            cpu.append(time.process_time() - c)
        barrier()
        times.append(time.perf_counter() - t)
    return times


def _worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    import torch.distributed as dist

    from latentfast import segment_assign
    from latentfast.sfvq import fit as sfvq_fit
    from latentfast.sfvq.distributed import Comm, split

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=600))
    comm = Comm.of()
    barrier = dist.barrier
    curve = torch.from_numpy(np.load(FFHQ)).float()
    m, d = curve.shape
    bsz = cfg["batch"]
    part = split(bsz, world, rank)
    x = _points(curve, slice(0, bsz), 1)[part]
    lam = torch.rand(m - 1, generator=torch.Generator().manual_seed(2))
    result = {"rank": rank}

    def fresh():
        v = curve.clone().requires_grad_(True)
        return v, sfvq_fit._adam(v, 1e-3)

    v, opt = fresh()
    if world == 1:
        step = lambda: sfvq_fit.train_step(v, opt, x, lam)  # noqa: E731
    else:
        step = lambda: sfvq_fit._dp_step(v, opt, x, lam, bsz, comm, False)  # noqa: E731
    step()
    result["after_one_step"] = v.detach().clone()
    for _ in range(cfg["warmup"]):
        step()
    result["step_cpu_s"] = []
    result["step_s"] = _median_time(step, cfg["steps"], barrier, result["step_cpu_s"])
    buf = torch.zeros(m * d + m + 1)
    result["allreduce_s"] = _median_time(lambda: comm.sum_(buf), cfg["steps"], barrier)

    n = cfg["points"]
    shard = split(n, world, rank)
    idx_sum, dist_sum, assign_s, assign_cpu = 0, 0.0, 0.0, 0.0
    barrier()
    for a in range(shard.start - shard.start % CHUNK, shard.stop, CHUNK):
        # points come in fixed global chunks (the same points for any sharding); keep this shard's rows
        lo, hi = max(a, shard.start), min(a + CHUNK, shard.stop)
        pts = _points(curve, slice(a, min(a + CHUNK, n)), 3)[lo - a: hi - a]
        t, c = time.perf_counter(), time.process_time()
        res = segment_assign(pts, curve)
        assign_s += time.perf_counter() - t
        assign_cpu += time.process_time() - c
        idx_sum += int(res.index.sum())
        dist_sum += float(res.distance_sq.double().sum())
    totals = torch.tensor([float(idx_sum), dist_sum, assign_s], dtype=torch.float64)
    slowest = torch.tensor([assign_s, assign_cpu], dtype=torch.float64)
    comm.sum_(totals[:2])
    comm.max_(slowest)
    result.update(index_sum=int(totals[0]), distance_sum=float(totals[1]), assign_s=float(slowest[0]),
                  assign_cpu_s=float(slowest[1]))
    if rank == 0:
        torch.save(result, out)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(world: int, cfg: dict, tmp: Path) -> dict:
    import torch.multiprocessing as mp
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    out = tmp / f"scale-{world}.pt"
    mp.start_processes(_worker, args=(world, _free_port(), cfg, str(out)), nprocs=world, join=True,
                       start_method="spawn")
    return torch.load(out, weights_only=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10^5 points and 5 steps instead of 10^6 and 15 "
                   "(default: off)")
    p.add_argument("--out", type=Path, default=None, help="JSON output; a .md beside it (default: a new "
                   "benchmarks/results/scale_cpu-<UTC time>.json)")
    args = p.parse_args(argv)
    cfg = dict(batch=4096, points=100_000 if args.quick else 1_000_000, steps=5 if args.quick else 15, warmup=2)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or ROOT / "benchmarks" / "results" / f"scale_cpu-{stamp}.json"
    load_before = os.getloadavg()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        one, two = run(1, cfg, Path(tmp)), run(2, cfg, Path(tmp))
    load_after = os.getloadavg()
    ref = one["after_one_step"]
    rel = float((two["after_one_step"] - ref).abs().max() / ref.abs().max())
    checks = {"step_rel_diff": rel, "step_ok": rel <= 1e-5,
              "assign_index_sums_equal": one["index_sum"] == two["index_sum"],
              "assign_distance_rel_diff": abs(one["distance_sum"] - two["distance_sum"]) / one["distance_sum"]}
    if not (checks["step_ok"] and checks["assign_index_sums_equal"] and checks["assign_distance_rel_diff"] < 1e-9):
        print(f"SCALE: correctness check failed: {checks}", file=sys.stderr)
        return 1
    s1, s2 = statistics.median(one["step_s"]), statistics.median(two["step_s"])
    ar = statistics.median(two["allreduce_s"])
    c1, c2 = statistics.median(one["step_cpu_s"]), statistics.median(two["step_cpu_s"])
    report = {
        "workload": "SCALE", "config": cfg, "M": 1024, "D": 512, "backend": "gloo", "threads_per_process": 1,
        "machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after,
                    "torch": torch.__version__, "date_utc": stamp},
        "checks": checks,
        "step": {"one_process_s": s1, "two_process_s": s2, "speedup": s1 / s2, "allreduce_s": ar,
                 "one_process_cpu_s": c1, "two_process_cpu_s_rank0": c2, "cpu_ratio": c1 / c2,
                 "allreduce_share": ar / s2, "one_process_all_s": one["step_s"], "two_process_all_s": two["step_s"]},
        "assign": {"points": cfg["points"], "one_process_s": one["assign_s"], "two_process_s": two["assign_s"],
                   "speedup": one["assign_s"] / two["assign_s"], "one_process_cpu_s": one["assign_cpu_s"],
                   "two_process_cpu_s_max_rank": two["assign_cpu_s"],
                   "cpu_ratio": one["assign_cpu_s"] / two["assign_cpu_s"]},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    md = [f"# SCALE: 1 vs 2 gloo processes, 1 thread each ({stamp})", "",
          f"Machine: {os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"(shared machine: the speedups are noisy), torch {torch.__version__}.", "",
          "| work | 1 process | 2 processes | speedup (wall) | CPU time per rank, 1 / 2 processes | "
          "all-reduce share |", "|---|---|---|---|---|---|",
          f"| SFVQ step, batch 4096, M=1024, D=512 | {s1 * 1e3:.1f} ms | {s2 * 1e3:.1f} ms | {s1 / s2:.2f}x | "
          f"{c1 / c2:.2f}x | {ar / s2:.0%} ({ar * 1e3:.1f} ms) |",
          f"| segment_assign of {cfg['points']:,} points, D=512, M=1024 | {one['assign_s']:.1f} s | "
          f"{two['assign_s']:.1f} s | {one['assign_s'] / two['assign_s']:.2f}x | "
          f"{one['assign_cpu_s'] / two['assign_cpu_s']:.2f}x | - |", "",
          f"Checks: one step on 2 processes equals 1 process to {rel:.2g} relative; the shards' index sums are "
          f"equal and their distance sums agree to {checks['assign_distance_rel_diff']:.2g}."]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
