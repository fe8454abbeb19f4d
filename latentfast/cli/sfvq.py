"""``latentfast sfvq fit | assign | render``: train a space-filling VQ curve, assign latents to it, draw it.

``fit`` keeps its resumable training state in ``OUT.ckpt`` beside ``--out`` while it runs (written every
``--save-every`` steps and on Ctrl-C); the same command with ``--resume`` continues from it; it is removed once
the curve is written.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_output_file, atomic_write_bytes, check_output
from . import _shard
from ._args import Interrupted, add_model_args, add_overwrite, add_quiet, device, positive_float, positive_int
from ._shard import add_shard_args

CURVE_SUFFIXES = (".pt", ".pth")


def add_parser(sub):
    s = sub.add_parser("sfvq", help="space-filling VQ: fit, assign, render")
    ssub = s.add_subparsers(dest="sfvq_command", required=True)
    sf = ssub.add_parser("fit", help="train a curve on latents")
    add_model_args(sf)
    sf.add_argument("--latents", help=".npy/.pt (N, D) latents; default: W samples of the generator")
    sf.add_argument("--num", type=positive_int("--num"), default=20000, help="W samples when no --latents")
    sf.add_argument("--num-vertices", type=positive_int("--num-vertices"), default=32, help="vertices of the curve")
    sf.add_argument("--epochs", type=positive_int("--epochs"), default=5, help="epochs per stage")
    sf.add_argument("--batch-size", type=positive_int("--batch-size"), default=64, help="latents per step")
    sf.add_argument("--lr", type=positive_float("--lr"), default=1e-3, help="Adam learning rate")
    sf.add_argument("--init", choices=["data", "randn"], default="data",
                    help="first 4 vertices: from the latents, or from torch.randn as the authors' train.py")
    sf.add_argument("--out", required=True, help="curve file (.pt)")
    add_overwrite(sf)
    sf.add_argument("--resume", action="store_true", help="continue the interrupted fit saved in OUT.ckpt")
    sf.add_argument("--save-every", type=positive_int("--save-every"), default=1000,
                    help="training steps between saves of the resumable state OUT.ckpt")
    sf.set_defaults(func=run_fit)

    sa = ssub.add_parser("assign", help="nearest segment of each latent")
    sa.add_argument("--curve", required=True, help="curve file written by sfvq fit")
    sa.add_argument("--latents", required=True, help=".npy/.pt (N, D) latents")
    sa.add_argument("--out", required=True, help=".npz file with index, t, distance_sq; or a directory: a sharded "
                                                 "job (torchrun, --rows) writing DIR/<array>/part-*.npy + "
                                                 "manifest.json")
    sa.add_argument("--device", type=device, default="cpu", help="cpu, cuda or cuda:N (cuda:LOCAL_RANK under "
                                                                 "torchrun)")
    add_shard_args(sa, chunk_default=65536)
    add_overwrite(sa)
    add_quiet(sa)
    sa.set_defaults(func=run_assign)

    sr = ssub.add_parser("render", help="one image per vertex, in curve order")
    add_model_args(sr)
    sr.add_argument("--curve", required=True, help="curve file written by sfvq fit")
    sr.add_argument("--out", required=True, help="image file; the format follows the suffix (.png, .jpg, ...)")
    add_overwrite(sr)
    sr.set_defaults(func=run_render)


def checkpoint_path(out) -> Path:
    """Where ``sfvq fit --out OUT`` keeps its resumable training state: ``OUT.ckpt`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def run_fit(args) -> int:
    from ..sfvq import SFVQ
    from . import _common

    if Path(args.out).suffix.lower() not in CURVE_SUFFIXES:
        raise ValueError(f"--out: expected a curve file name ending in .pt or .pth, got {args.out}")
    check_output("--out", args.out, kind="file", overwrite=args.overwrite)
    ckpt = checkpoint_path(args.out)
    if args.resume and not ckpt.is_file():
        raise ValueError(f"--resume: no training state to resume at {ckpt} (it is written beside --out while a "
                         f"fit runs)")
    if not args.resume and ckpt.exists():
        raise ValueError(f"--out: {ckpt} holds the state of an interrupted fit; pass --resume to continue it, or "
                         f"delete it to start again")
    if args.latents:
        w = _common.load_latents_arg(args.latents)
    else:
        G = _common.load_generator_arg(args.checkpoint, args.device)
        w = _common.sample_w(G, args.num, torch.Generator().manual_seed(args.seed), device=args.device)
    curve = SFVQ(args.num_vertices, w.shape[1])
    try:
        log = curve.fit(w, epochs_per_stage=args.epochs, batch_size=args.batch_size, lr=args.lr, init=args.init,
                        progress=not args.quiet, generator=torch.Generator().manual_seed(args.seed),
                        checkpoint=ckpt, checkpoint_every=args.save_every, resume=args.resume)
    except KeyboardInterrupt:
        if ckpt.is_file():
            raise Interrupted(f"interrupted; the training state is saved in {ckpt}: run the same command with "
                              f"--resume to continue") from None
        raise
    with atomic_output_file(args.out, overwrite=args.overwrite, name="--out") as tmp:
        curve.save(tmp)
    ckpt.unlink(missing_ok=True)
    print(f"wrote {args.out}: {args.num_vertices} vertices, final loss {log.final_loss:.5f}")
    return 0


def run_assign(args) -> int:
    from . import _common

    if Path(args.out).suffix == "":
        return run_assign_rows(args)
    if Path(args.out).suffix.lower() != ".npz":
        raise ValueError(f"--out: expected a file name ending in .npz (or a directory, without a suffix), got "
                         f"{args.out}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"--out: under torchrun give a directory (the ranks write parts of it), got {args.out}")
    check_output("--out", args.out, kind="file", overwrite=args.overwrite)
    curve = _common.load_curve_arg(args.curve)
    x = _common.load_latents_arg(args.latents, width=curve.dim)
    if args.rows is not None:
        first, n = _shard.select_rows(x, args.rows)
        x = x[first:first + n]
    a = curve.to(args.device).assign(x.to(args.device))
    buf = io.BytesIO()
    np.savez(buf, index=a.index.cpu().numpy(), t=a.t.detach().cpu().numpy(),
             distance_sq=a.distance_sq.detach().cpu().numpy())
    atomic_write_bytes(args.out, buf.getvalue(), overwrite=args.overwrite, name="--out")
    print(f"wrote {args.out}: {x.shape[0]} latents assigned to {curve.num_vertices - 1} segments")
    return 0


def run_assign_rows(args) -> int:
    """``sfvq assign --out DIR``: index (int64), t and distance_sq (float32) of every selected row, sharded."""
    from . import _common

    with _shard.job(args.device) as job:
        curve = _common.load_curve_arg(args.curve).to(job.device)
        x = _common.load_latents_arg(args.latents, width=curve.dim, mmap=True)
        first, n = _shard.select_rows(x, args.rows)
        arrays = {"index": ("int64", ()), "t": ("float32", ()), "distance_sq": ("float32", ())}
        manifest = _shard.manifest_for(job, "sfvq assign", arrays, first, n, args.chunk, dict(
            curve=str(Path(args.curve).resolve()), latents=str(Path(args.latents).resolve())))
        with _shard.sharded_output(job, args.out, overwrite=args.overwrite, manifest=manifest) as tmp:
            _shard.fill_parts(job, tmp, arrays, x, first, n, args.chunk, lambda row, xc: curve.assign(xc), "assign")
    if job.rank == 0:
        print(f"wrote the segments of {n} latents ({job.world} rank(s)) to {args.out}")
    return 0


def run_render(args) -> int:
    from .. import viz
    from . import _common

    _common.check_image_out(args.out, args.overwrite)
    curve = _common.load_curve_arg(args.curve)
    G = _common.load_generator_arg(args.checkpoint, args.device)
    w_dim = getattr(G, "w_dim", curve.dim)
    if curve.dim != w_dim:
        raise ValueError(f"--curve: {args.curve} holds vertices of width {curve.dim}; the generator's W has width "
                         f"{w_dim}")
    with torch.no_grad():
        imgs = G.synthesize(curve.vertices.detach().to(args.device))
    _common.write_image(args.out, viz.vertex_grid(imgs, "SFVQ vertices in curve order"), args.overwrite)
    print(f"wrote {args.out}")
    return 0
