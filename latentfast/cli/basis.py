"""``latentfast basis``: local bases at sampled latents -> unit-vector .npy files + GANSpace .npz."""
from __future__ import annotations

import numpy as np
import torch

from .._io import atomic_output_dir, check_output
from ._args import add_model_args, add_overwrite, latents_for, positive_int


def add_parser(sub):
    b = sub.add_parser("basis", help="local bases at sampled latents")
    add_model_args(b)
    b.add_argument("--num", type=positive_int("--num"), default=8, help="latents sampled")
    b.add_argument("-k", "--k", type=positive_int("--k"), default=10, help="directions per latent")
    b.add_argument("--method", default="auto", choices=["auto", "exact", "randomized"],
                   help="local_basis method")
    b.add_argument("--out", required=True, help="output directory")
    add_overwrite(b)
    b.set_defaults(func=run)


def run(args) -> int:
    from ..localbasis import local_basis
    from . import _common

    check_output("--out", args.out, kind="dir", overwrite=args.overwrite)
    G = _common.load_generator_arg(args.checkpoint, args.device)
    z = latents_for(G, args, args.num)
    f = G.mlp_spec() or G.f
    lb = local_basis(f, z, args.k, args.method, generator=torch.Generator().manual_seed(args.seed))
    with atomic_output_dir(args.out, overwrite=args.overwrite, name="--out") as tmp:
        np.save(tmp / "z.npy", z.cpu().numpy())
        for i in range(args.num):
            _common.save_directions(tmp, f"latent{i:03d}", lb.basis[i].T, lb.points[i], lb.singular_values[i])
        _common.write_json(tmp / "basis.json", {"k": args.k, "method": lb.method, "num_latents": args.num,
                                                "singular_values": lb.singular_values.tolist(),
                                                "residual": lb.residual.tolist()})
    print(f"wrote {args.num} local bases (k={args.k}, {lb.method}) to {args.out}")
    return 0
