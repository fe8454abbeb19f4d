"""``latentfast traverse``: a grid of linear (and iterative) traversals along local directions or a given one."""
from __future__ import annotations

import torch

from ._args import add_model_args, add_overwrite, latents_for, positive_float, positive_int


def add_parser(sub):
    t = sub.add_parser("traverse", help="traversal grid of local directions (or a given direction)")
    add_model_args(t)
    t.add_argument("-k", "--k", type=positive_int("--k"), default=5, help="local directions shown (rows; not used with --direction)")
    t.add_argument("--direction", help=".npy/.pt vector (w_dim,) in the output space of f (W) to traverse instead "
                                       "of the local basis (default: the local basis); normalised to unit length")
    t.add_argument("--size", type=positive_float("--size"), default=3.0,
                   help="largest edit (distance in the output space)")
    t.add_argument("--frames", type=positive_int("--frames"), default=7, help="images per row")
    t.add_argument("--iterative", action="store_true",
                   help="add the iterative curve traversal beside the straight line; with --direction it follows, "
                        "at each step, the local direction best aligned with the given one")
    t.add_argument("--steps", type=positive_int("--steps"), default=12, help="iterative steps per side")
    t.add_argument("--out", required=True, help="image file; the format follows the suffix (.png, .jpg, ...)")
    add_overwrite(t)
    t.set_defaults(func=run)


@torch.no_grad()
def _outputs(f, z):
    return f(z)


def run(args) -> int:
    from .. import viz
    from ..localbasis import local_basis, traverse_iterative
    from . import _common
    from .demo import traversal_panel

    _common.check_image_out(args.out, args.overwrite)
    G = _common.load_generator_arg(args.checkpoint, args.device)
    z = latents_for(G, args, 1)
    f = G.mlp_spec() or G.f
    w0 = _outputs(G.f, z)[0]
    gen = torch.Generator().manual_seed(args.seed)
    if args.direction:
        dirs = _common.load_direction_arg(args.direction, w0.shape[0]).to(w0)[None]
    else:
        lb = local_basis(f, z, args.k, _common.basis_method(args.k, z.shape[1]), generator=gen)
        dirs = lb.basis[0].T
    alphas = torch.linspace(-args.size, args.size, args.frames)
    panel = traversal_panel(G, w0, dirs, alphas, "linear")
    if args.iterative:
        picks = torch.linspace(0, 2 * args.steps, args.frames).round().long()
        step = args.size / args.steps
        if args.direction:
            # the local direction best aligned with --direction, at every step (latentfast.traverse_iterative)
            rows = [traverse_iterative(f, z[0], direction=dirs[0], num_steps=args.steps, step=step,
                                       generator=gen).outputs[picks]]
        else:
            rows = [traverse_iterative(f, z[0], i, num_steps=args.steps, step=step, k=args.k).outputs[picks]
                    for i in range(dirs.shape[0])]
        with torch.no_grad():
            imgs = G.synthesize(torch.cat(rows))
        panel = viz.hstack([panel, viz.image_grid(imgs, dirs.shape[0], args.frames, scale=2, title="iterative")])
    _common.write_image(args.out, panel, args.overwrite)
    print(f"wrote {args.out}")
    return 0
