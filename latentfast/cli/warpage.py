"""``latentfast warpage``: the Grassmannian warpage study, a row-sharded job (``_shard``) -> DIR/warpage.json,
DIR/warpage.png and the per-latent distances DIR/<array>/part-*.npy + DIR/manifest.json.

The rows are ``--latents`` (memory-mapped, split across the ranks of torchrun or chosen with ``--rows``) or
``--num`` latents sampled with ``--seed``.  Blocks of ``--chunk`` rows are independent warpage_rows calls
(random pairs are drawn within a block, seeded per block), so the rows, and the summary rank 0 makes of all of
them, are the same for any number of ranks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._io import check_output
from . import _shard
from ._args import add_model_args, add_overwrite, latents_for, positive_float, positive_int


def add_parser(sub):
    w = sub.add_parser("warpage", help="Grassmannian warpage study")
    add_model_args(w)
    w.add_argument("--num", type=positive_int("--num"), default=64, help="latents sampled (without --latents)")
    w.add_argument("-k", "--k", type=positive_int("--k"), nargs="+", default=[1, 2, 4, 8],
                   help="subspace dimensions")
    w.add_argument("--eps", type=positive_float("--eps"), nargs="+", default=[0.01, 0.1, 1.0],
                   help="distances of the nearby points")
    w.add_argument("--latents", help=".npy/.pt (N, z_dim) latents: the study over their rows (torchrun, --rows); "
                                     "default: --num sampled latents")
    _shard.add_shard_args(w, chunk_default=256, chunk_note="random pairs are drawn within a block; ")
    w.add_argument("--out", required=True, help="output directory")
    add_overwrite(w)
    w.set_defaults(func=run)


def run(args) -> int:
    from ..baselines import ganspace_directions
    from .. import viz
    from ..localbasis import Warpage, WarpageRows, warpage_rows
    from . import _common

    if args.rows is not None and not args.latents:
        raise ValueError("--rows: selects rows of --latents; give --latents too")
    if args.chunk < 2:
        raise ValueError(f"--chunk: random pairs are drawn within blocks of --chunk rows; expected at least 2, got "
                         f"{args.chunk}")
    check_output("--out", args.out, kind="dir", overwrite=args.overwrite)
    ks, eps = list(args.k), list(args.eps)
    with _shard.job(args.device) as job:
        G = _common.load_generator_arg(args.checkpoint, job.device)
        if args.latents:
            x = _common.load_latents_arg(args.latents, width=getattr(G, "z_dim", None), mmap=True)
            first, n = _shard.select_rows(x, args.rows)
            source = dict(latents=str(Path(args.latents).resolve()))
        else:
            x, first, n = latents_for(G, args, args.num).cpu().numpy(), 0, args.num
            source = dict(num=args.num)
        if n < 2:
            raise ValueError(f"{'--rows' if args.latents else '--num'}: random pairs need at least 2 latents, got {n}")
        f = G.mlp_spec() or G.f
        w = _common.sample_w(G, 10000, torch.Generator().manual_seed(args.seed), device=job.device)
        global_basis = ganspace_directions(w, max(ks)).components.T
        K, E = len(ks), len(eps)
        arrays = {"local": ("float32", (K, E)), "random_points": ("float32", (K,)), "partner": ("int64", ()),
                  "global": ("float32", (K,))}
        manifest = _shard.manifest_for(job, "warpage", arrays, first, n, args.chunk, dict(
            source, checkpoint=args.checkpoint, k=ks, eps=eps, metric="geodesic", seed=args.seed,
            global_basis="GANSpace of 10000 sampled W latents",
            layout="local (rows, k, eps); random_points and global (rows, k); partner: the row paired with "
                   "(within its --chunk block), -1 if none"))

        def block(row, z):  # one generator per global block: any number of ranks gives the same rows
            gen = torch.Generator().manual_seed(args.seed * 1_000_003 + row // args.chunk)
            r = warpage_rows(f, z, ks, eps=eps, global_basis=global_basis, generator=gen)
            partner = torch.where(r.partner >= 0, r.partner + row, r.partner)
            return {"local": r.local, "random_points": r.random_points, "partner": partner, "global": r.global_}

        def summarize(tmp: Path) -> None:
            parts = _shard.load_parts(tmp, mmap=False)
            t = {key: torch.from_numpy(a) for key, a in parts.items()}
            rows = WarpageRows("geodesic", ks, eps, global_basis.shape[0], t["local"], t["random_points"],
                               t["partner"], t["global"])
            wp = Warpage.from_rows(rows, generator=torch.Generator().manual_seed(args.seed))
            _common.write_json(tmp / "warpage.json", dict(wp.to_dict(), num_latents=n))
            viz.warpage_chart(wp, title=f"Grassmannian warpage ({n} latents)").save(tmp / "warpage.png")

        with _shard.sharded_output(job, args.out, overwrite=args.overwrite, manifest=manifest,
                                   finalize=summarize) as tmp:
            _shard.fill_parts(job, tmp, arrays, x, first, n, args.chunk, block, "warpage")
    if job.rank == 0:
        print(f"wrote {args.out}: warpage of {n} latents ({job.world} rank(s))")
    return 0

