"""``latentfast warpage``: the Grassmannian warpage study -> warpage.json + warpage.png."""
from __future__ import annotations

import torch

from .._io import atomic_output_dir, check_output
from ._args import add_model_args, add_overwrite, latents_for, positive_float, positive_int


def add_parser(sub):
    w = sub.add_parser("warpage", help="Grassmannian warpage study")
    add_model_args(w)
    w.add_argument("--num", type=positive_int("--num"), default=64, help="latents sampled")
    w.add_argument("-k", "--k", type=positive_int("--k"), nargs="+", default=[1, 2, 4, 8],
                   help="subspace dimensions")
    w.add_argument("--eps", type=positive_float("--eps"), nargs="+", default=[0.01, 0.1, 1.0],
                   help="distances of the nearby points")
    w.add_argument("--out", required=True, help="output directory")
    add_overwrite(w)
    w.set_defaults(func=run)


def run(args) -> int:
    from ..baselines import ganspace_directions
    from .. import viz
    from ..localbasis import warpage
    from . import _common

    check_output("--out", args.out, kind="dir", overwrite=args.overwrite)
    G = _common.load_generator_arg(args.checkpoint, args.device)
    z = latents_for(G, args, args.num)
    f = G.mlp_spec() or G.f
    w = _common.sample_w(G, 10000, torch.Generator().manual_seed(args.seed), device=args.device)
    gs = ganspace_directions(w, max(args.k))
    wp = warpage(f, z, args.k, eps=args.eps, global_basis=gs.components.T,
                 generator=torch.Generator().manual_seed(args.seed))
    with atomic_output_dir(args.out, overwrite=args.overwrite, name="--out") as tmp:
        _common.write_json(tmp / "warpage.json", wp.to_dict())
        viz.warpage_chart(wp, title=f"Grassmannian warpage ({z.shape[0]} latents)").save(tmp / "warpage.png")
    print(f"wrote {args.out}")
    return 0
