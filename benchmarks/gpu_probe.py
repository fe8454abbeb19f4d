"""``python -m benchmarks.gpu_probe --out DIR``: the GPU measurements of issue 4, in one process.

What a lent GPU is asked, in this order (every timing with CUDA events through ``triton.testing.do_bench``,
median, after warm-up; inputs random, never zeros):

1. ceilings: a device-to-device copy (bytes read + written), an 8192^3 matrix product in TF32, float32 and bf16;
2. SEG (nearest segment, N = 10^6 points near the real 10-bit FFHQ curve, D = 512, M = 1024): the floor (a TF32
   ``torch.mm`` of the same shape), the whole ``segment_assign(backend="triton")``, and its pieces for each
   ``tl.dot`` precision — top-4 kernel, re-scoring kernel, share of rows left uncertain, the fallback on them —
   plus the autotuner's choice and the compiler's report (registers, spills, shared memory, matrix instructions);
   exactness against a float64 brute force on a subsample before anything is timed;
3. LB (randomized local_basis of a 512-wide 8-layer mapping network, 10,000 latents, k = 32 and k = 10):
   the whole call and its pieces, with the float64 accuracy check on a few latents.

Writes ``gpu_probe.json`` (everything) and prints a short table last.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def bench_ms(fn, warmup=50, rep=300) -> float:
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def ceilings() -> dict:
    out = {}
    x = torch.randn(1 << 28, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    t = bench_ms(lambda: y.copy_(x))
    out["copy_TBps"] = 2 * x.numel() * 4 / (t * 1e-3) / 1e12
    x = y = None  # free the 2 GiB before the products
    n = 8192
    for name, dtype, tf32 in (("tf32", torch.float32, True), ("fp32", torch.float32, False),
                              ("bf16", torch.bfloat16, False)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        t = bench_ms(lambda: a @ b)
        out[f"mm8192_{name}_TFLOPs"] = 2 * n ** 3 / (t * 1e-3) / 1e12
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


def compiler_report(kernel, args, meta, out_dir: Path, name: str) -> dict:
    """Launch ``kernel`` once with ``meta`` and read the compiled object's resources and instructions."""
    rep = {}
    try:
        ck = kernel[(1,)](*args, **meta)
        rep.update(n_regs=getattr(ck, "n_regs", None), n_spills=getattr(ck, "n_spills", None),
                   shared_bytes=getattr(ck.metadata, "shared", None))
        ptx = ck.asm.get("ptx", "")
        rep["ptx_wgmma"] = ptx.count("wgmma.mma_async")
        rep["ptx_mma_sync"] = ptx.count("mma.sync")
        cubin = ck.asm.get("cubin")
        if cubin:
            p = out_dir / f"{name}.cubin"
            p.write_bytes(cubin)
            sass = subprocess.run(["cuobjdump", "-sass", str(p)], capture_output=True, text=True).stdout
            rep["sass_HGMMA"] = sass.count("HGMMA")
            rep["sass_HMMA"] = sass.count("HMMA")
            rep["sass_LDL_STL"] = sass.count("LDL") + sass.count("STL")
            (out_dir / f"{name}.sass").write_text(sass)
            p.unlink()
    except Exception as exc:  # the report is informative; the timings do not depend on it
        rep["error"] = f"{type(exc).__name__}: {exc}"
    return rep


def seg(out_dir: Path, n: int) -> dict:
    import latentfast
    from latentfast.ops.segment_assign import reference
    from latentfast.ops.segment_assign import triton as st

    from .workloads import _exactness, _ffhq_curve, _points_near, brute_force64

    res = {}
    curve = _ffhq_curve(10).cuda()
    M, D = curve.shape
    x = _points_near(curve.cpu(), n, 1.0, seed=3).cuda()
    res["shape"] = dict(N=n, D=D, M=M, points="uniform on the FFHQ 10-bit curve + N(0, I)")

    # exactness first (4096 random rows, float64 brute force)
    sub = torch.randperm(n, generator=torch.Generator().manual_seed(4))[:4096].cuda()
    _, d64 = brute_force64(x[sub], curve)
    r = latentfast.segment_assign(x[sub], curve, backend="triton")
    res["exact_subsample"] = _exactness(r.index, d64)

    ct = curve.t().contiguous()
    torch.backends.cuda.matmul.allow_tf32 = True
    res["floor_mm_tf32_ms"] = bench_ms(lambda: torch.mm(x, ct))
    torch.backends.cuda.matmul.allow_tf32 = False
    res["mm_fp32_ms"] = bench_ms(lambda: torch.mm(x, ct))
    res["full_triton_ms"] = bench_ms(lambda: latentfast.segment_assign(x, curve, backend="triton"), warmup=200,
                                     rep=1000)

    triton_mod, plain, tuned, rescore = st._kernels()
    cand_d = torch.empty(n, 4, device="cuda")
    cand_i = torch.empty(n, 4, dtype=torch.int32, device="cuda")
    idx = torch.empty(n, dtype=torch.int64, device="cuda")
    t = torch.empty(n, device="cuda")
    d = torch.empty(n, device="cuda")
    unsure = torch.empty(n, dtype=torch.bool, device="cuda")
    res["precisions"] = {}
    for prec in ("tf32x3", "tf32", "ieee"):
        pr = {}
        try:
            pr["topk_ms"] = bench_ms(lambda: st.candidates_into(x, curve, True, cand_d, cand_i, precision=prec))
            pr["best_config"] = str(getattr(tuned, "best_config", None))
            pr["both_kernels_ms"] = bench_ms(lambda: st.assign_into(x, curve, True, idx, t, d, unsure,
                                                                    precision=prec))
            pr["rescore_ms"] = pr["both_kernels_ms"] - pr["topk_ms"]
            st.assign_into(x, curve, True, idx, t, d, unsure, precision=prec)
            rows = unsure.nonzero().squeeze(1)
            pr["uncertain_rows"] = int(rows.numel())
            pr["uncertain_share"] = rows.numel() / n
            if rows.numel():
                pr["fallback_ms"] = bench_ms(lambda: reference.nearest(x[rows], curve, segments=True),
                                             warmup=20, rep=100)
            # the compiler's report for the autotuner's choice at this precision
            cfg = getattr(tuned, "best_config", None)
            if cfg is not None:
                mean32 = torch.zeros(D, device="cuda")
                cc = torch.zeros(M, device="cuda")
                args = (x, mean32, curve, cc, cc, cc, cc, cand_d, cand_i, min(n, 256), M, M - 1, D,
                        x.stride(0), x.stride(1), curve.stride(0))
                meta = dict(cfg.kwargs, SEGMENTS=1, PRECISION=prec, num_warps=cfg.num_warps,
                            num_stages=cfg.num_stages)
                pr["compiler"] = compiler_report(plain, args, meta, out_dir, f"topk_{prec}")
        except Exception as exc:
            pr["error"] = f"{type(exc).__name__}: {exc}"
        res["precisions"][prec] = pr
        print(f"[probe] SEG {prec}: {pr}", flush=True)
    flops = 2.0 * n * D * M
    res["floor_mm_tf32_TFLOPs"] = flops / (res["floor_mm_tf32_ms"] * 1e-3) / 1e12
    res["full_over_floor"] = res["full_triton_ms"] / res["floor_mm_tf32_ms"]
    return res


def timed(fn, reps: int = 3) -> float:
    """Median milliseconds of ``reps`` synchronised calls after one warm-up (for calls of 10 ms to seconds)."""
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]


def small(n_big: int) -> dict:
    """The small dense step of the randomized SVD on (B, m, m) float64 panels: torch's SVD / eigh vs Jacobi."""
    from latentfast.ops.small_linalg.jacobi import jacobi_svd
    from latentfast.ops.small_linalg.triton_jacobi import jacobi_eigh_reference, jacobi_eigh_triton

    res = {}
    # issue 15 item 1: the Triton one-matrix-per-program Jacobi (n <= 128), correct against float64 eigh first
    for m in (42, 126):
        A = torch.randn(64, m, m, device="cuda", dtype=torch.float64)
        G = A.transpose(1, 2) @ A / m
        exact = torch.linalg.eigvalsh(G)
        for dt in (torch.float32, torch.float64):
            try:
                w, V = jacobi_eigh_triton(G.to(dt))
                err = float(((w.double() - exact).abs().amax(1) / exact.abs().amax(1)).max())
                orth = float((V.transpose(1, 2) @ V - torch.eye(m, device="cuda", dtype=dt)).abs().max())
                res[f"triton_jacobi_m{m}_{str(dt)[6:]}_check"] = dict(max_rel_eig_err=err, max_orth_err=orth)
                print(f"[probe] small triton jacobi m={m} {dt}: rel eig err {err:.2e}, orth {orth:.2e}", flush=True)
            except Exception as exc:  # a compile failure is a result too
                res[f"triton_jacobi_m{m}_{str(dt)[6:]}_check"] = dict(error=f"{type(exc).__name__}: {exc}")
        ref_err = float((jacobi_eigh_reference(G)[0] - exact).abs().max())
        res[f"jacobi_reference_m{m}_check"] = dict(max_abs_eig_err=ref_err)
    for m in (42, 126):
        for B in (1000, n_big):
            A = torch.randn(B, m, m, device="cuda", dtype=torch.float32)
            G = A.transpose(1, 2) @ A / m
            for name, fn in (("triton_jacobi_f32", lambda: jacobi_eigh_triton(G)),
                             ("torch_eigh_f32_gram", lambda: torch.linalg.eigh(G))):
                key = f"{name}_m{m}_B{B}"
                if B > 1000 and res.get(f"{name}_m{m}_B1000", 1e9) > 300:
                    continue
                try:
                    res[key] = timed(fn, reps=1)
                    print(f"[probe] small {key}: {res[key]:.1f} ms", flush=True)
                except Exception as exc:
                    res[key] = f"{type(exc).__name__}: {exc}"
    for m in (42, 126):
        for B in (1000, n_big):
            A = torch.randn(B, m, m, device="cuda", dtype=torch.float64)
            G = A.transpose(1, 2) @ A
            for name, fn in (("jacobi_svd", lambda: jacobi_svd(A)), ("torch_svd", lambda: torch.linalg.svd(A)),
                             ("torch_eigh", lambda: torch.linalg.eigh(G)),
                             ("torch_eigh_f32", lambda: torch.linalg.eigh(G.float()))):
                key = f"{name}_m{m}_B{B}"
                if B > 1000 and res.get(f"{name}_m{m}_B1000", 1e9) > 300:  # too slow at 1000: skip 10x more
                    continue
                t0 = time.perf_counter()
                res[key] = timed(fn, reps=1)
                print(f"[probe] small {key}: {res[key]:.1f} ms (wall {time.perf_counter() - t0:.1f} s)", flush=True)
    return res


def lb(n: int) -> dict:
    import latentfast
    from latentfast.localbasis import basis as lbm
    from latentfast.localbasis.jacobian import linearize
    from latentfast.ops.small_linalg import orthonormalize, thin_svd

    from .workloads import MappingNet, _lb_accuracy, _oracle_svd

    res = {}
    torch.manual_seed(1)
    net = MappingNet(512, 8, 0.995)
    z = torch.randn(n, 512)
    J64, S64 = _oracle_svd(net, z[:4])
    net = net.cuda()
    z = z.cuda()
    r = 42
    spec = net.mlp_spec().to(device="cuda")
    op = linearize(spec, z, "triton")
    om = torch.randn(n, 512, r, device="cuda")
    K = orthonormalize(op.jvp(om))
    pieces = dict(chunk_latents=max(1, lbm._chunk_budget(z.device) // ((512 + 512) * r * 4)))
    for name, fn in (("forward", lambda: linearize(spec, z, "triton")), ("jvp_r42", lambda: op.jvp(om)),
                     ("vjp_r42", lambda: op.vjp(K)), ("orthonormalize_512x42", lambda: orthonormalize(om)),
                     ("randn_probes_cuda", lambda: torch.randn(n, 512, r, device="cuda")),
                     ("thin_svd_512x126_B1000", lambda: thin_svd(torch.randn(1000, 512, 3 * r, device="cuda")))):
        pieces[name + "_ms"] = timed(fn)
        print(f"[probe] LB piece {name}: {pieces[name + '_ms']:.2f} ms", flush=True)
    pieces["jvp_TFLOPs"] = 2.0 * n * r * 512 * 512 * 8 / (pieces["jvp_r42_ms"] * 1e-3) / 1e12
    res["pieces_k32"] = pieces
    gen = lambda: torch.Generator(device="cuda").manual_seed(7)  # noqa: E731
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        for k in (32, 10):
            key = f"k{k}_{'tf32' if tf32 else 'fp32'}"
            lbr = latentfast.local_basis(net, z[:4], k, method="randomized", generator=gen(), backend="triton")
            acc = _lb_accuracy(J64, S64, lbr.basis.cpu(), lbr.singular_values.cpu(), lbr.input_basis.cpu(), k)
            n_small = 1000
            ms_small = timed(lambda: latentfast.local_basis(net, z[:n_small], k, method="randomized",
                                                            generator=gen(), backend="triton"), reps=1)
            entry = dict(accuracy=acc, ms_1000_latents=ms_small)
            if ms_small < 2000:
                entry["ms"] = timed(lambda: latentfast.local_basis(net, z, k, method="randomized", generator=gen(),
                                                                   backend="triton"))
            res[key] = entry
            print(f"[probe] LB {key}: {entry}", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--latents", type=int, default=10_000)
    ap.add_argument("--only", default="ceil,seg,small,lb")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import triton

    report = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, cuda=torch.version.cuda,
                  triton=triton.__version__, python=sys.version.split()[0],
                  sms=torch.cuda.get_device_properties(0).multi_processor_count,
                  date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    try:
        report["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except Exception:
        pass
    todo = args.only.split(",")
    for name, fn in (("ceil", ceilings), ("seg", lambda: seg(out, args.n)), ("small", lambda: small(args.latents)),
                     ("lb", lambda: lb(args.latents))):
        if name not in todo:
            continue
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as exc:
            import traceback

            traceback.print_exc()
            report[name] = dict(error=f"{type(exc).__name__}: {exc}")
        report[name]["wall_s"] = time.perf_counter() - t0
        (out / "gpu_probe.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"[probe] {name}: {json.dumps(report[name], default=str)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
