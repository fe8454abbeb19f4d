"""``latentfast traverse``: a grid of linear (and iterative) traversals along local directions or a given one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._io import check_writable_parent
from ._args import add_model_args, latents_for, positive_int


def add_parser(sub):
    t = sub.add_parser("traverse", help="traversal grid of local directions (or a given direction)")
    add_model_args(t)
    t.add_argument("-k", "--k", type=positive_int("--k"), default=5)
    t.add_argument("--direction", help=".npy unit vector to traverse instead of the local basis")
    t.add_argument("--size", type=float, default=3.0, help="largest edit (distance in the output space)")
    t.add_argument("--frames", type=positive_int("--frames"), default=7)
    t.add_argument("--iterative", action="store_true")
    t.add_argument("--steps", type=positive_int("--steps"), default=12)
    t.add_argument("--out", required=True)
    t.set_defaults(func=run)


def run(args) -> int:
    from .. import viz
    from ..localbasis import local_basis, traverse_iterative
    from . import _common
    from .demo import traversal_panel

    G = _common.load_generator_arg(args.checkpoint, args.device)
    check_writable_parent("--out", Path(args.out))
    z = latents_for(G, args, 1)
    f = G.mlp_spec() or G.f
    lb = local_basis(f, z, args.k, _common.basis_method(args.k, z.shape[1]),
                     generator=torch.Generator().manual_seed(args.seed))
    if args.direction:
        d = torch.from_numpy(np.load(args.direction, allow_pickle=False)).float().reshape(1, -1)
        if d.shape[1] != lb.points.shape[1]:
            raise ValueError(f"--direction: expected a vector of width {lb.points.shape[1]}, got {tuple(d.shape)}")
        dirs = d / d.norm()
    else:
        dirs = lb.basis[0].T
    alphas = torch.linspace(-args.size, args.size, args.frames)
    panel = traversal_panel(G, lb.points[0], dirs, alphas, "linear")
    if args.iterative and not args.direction:
        rows = []
        picks = torch.linspace(0, 2 * args.steps, args.frames).round().long()
        for i in range(dirs.shape[0]):
            tr = traverse_iterative(f, z[0], i, num_steps=args.steps, step=args.size / args.steps, k=args.k)
            rows.append(tr.outputs[picks])
        with torch.no_grad():
            imgs = G.synthesize(torch.cat(rows))
        panel = viz.hstack([panel, viz.image_grid(imgs, dirs.shape[0], args.frames, scale=2, title="iterative")])
    _common.write_png(args.out, panel)
    print(f"wrote {args.out}")
    return 0
