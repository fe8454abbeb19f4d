"""``latentfast sfvq fit | assign | render``: train a space-filling VQ curve, assign latents to it, draw it."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write_bytes, check_writable_parent
from ._args import add_model_args, positive_int


def add_parser(sub):
    s = sub.add_parser("sfvq", help="space-filling VQ: fit, assign, render")
    ssub = s.add_subparsers(dest="sfvq_command", required=True)
    sf = ssub.add_parser("fit")
    add_model_args(sf)
    sf.add_argument("--latents", help=".npy/.pt (N, D) latents; default: W samples of the generator")
    sf.add_argument("--num", type=positive_int("--num"), default=20000, help="W samples when no --latents")
    sf.add_argument("--num-vertices", type=positive_int("--num-vertices"), default=32)
    sf.add_argument("--epochs", type=positive_int("--epochs"), default=5)
    sf.add_argument("--batch-size", type=positive_int("--batch-size"), default=64)
    sf.add_argument("--lr", type=float, default=1e-3)
    sf.add_argument("--out", required=True)
    sf.set_defaults(func=run_fit)
    sa = ssub.add_parser("assign")
    sa.add_argument("--curve", required=True)
    sa.add_argument("--latents", required=True)
    sa.add_argument("--out", required=True)
    sa.add_argument("--quiet", action="store_true")
    sa.set_defaults(func=run_assign)
    sr = ssub.add_parser("render")
    add_model_args(sr)
    sr.add_argument("--curve", required=True)
    sr.add_argument("--out", required=True)
    sr.set_defaults(func=run_render)


def run_fit(args) -> int:
    from ..sfvq import SFVQ
    from . import _common

    if args.latents:
        w = _common.load_latents_arg(args.latents)
    else:
        G = _common.load_generator_arg(args.checkpoint, args.device)
        w = _common.sample_w(G, args.num, torch.Generator().manual_seed(args.seed), device=args.device)
    check_writable_parent("--out", Path(args.out))
    curve = SFVQ(args.num_vertices, w.shape[1])
    log = curve.fit(w, epochs_per_stage=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    progress=not args.quiet, generator=torch.Generator().manual_seed(args.seed))
    curve.save(args.out)
    print(f"wrote {args.out}: {args.num_vertices} vertices, final loss {log.final_loss:.5f}")
    return 0


def run_assign(args) -> int:
    from ..sfvq import SFVQ
    from . import _common

    curve = SFVQ.load(args.curve)
    x = _common.load_latents_arg(args.latents)
    a = curve.assign(x)
    check_writable_parent("--out", Path(args.out))
    buf = io.BytesIO()
    np.savez(buf, index=a.index.numpy(), t=a.t.numpy(), distance_sq=a.distance_sq.numpy())
    atomic_write_bytes(args.out, buf.getvalue(), name="--out")
    print(f"wrote {args.out}: {x.shape[0]} latents assigned to {curve.num_vertices - 1} segments")
    return 0


def run_render(args) -> int:
    from .. import viz
    from ..sfvq import SFVQ
    from . import _common

    curve = SFVQ.load(args.curve)
    G = _common.load_generator_arg(args.checkpoint, args.device)
    with torch.no_grad():
        imgs = G.synthesize(curve.vertices.detach())
    _common.write_png(args.out, viz.vertex_grid(imgs, "SFVQ vertices in curve order"))
    print(f"wrote {args.out}")
    return 0
