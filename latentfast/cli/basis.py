"""``latentfast basis``: local bases at sampled latents -> unit-vector .npy files + GANSpace .npz."""
from __future__ import annotations

import numpy as np
import torch

from .._io import atomic_output_dir, check_output
from pathlib import Path

from . import _shard
from ._args import add_model_args, add_overwrite, latents_for, positive_float, positive_int
from ._shard import add_shard_args


def add_parser(sub):
    b = sub.add_parser("basis", help="local bases at sampled latents")
    add_model_args(b)
    b.add_argument("--num", type=positive_int("--num"), default=8, help="latents sampled")
    b.add_argument("-k", "--k", type=positive_int("--k"), default=10, help="directions per latent")
    b.add_argument("--method", default="auto", choices=["auto", "exact", "randomized"],
                   help="local_basis method")
    b.add_argument("--space", default="w", choices=["w", "image", "wplus"],
                   help="w: the mapping network Z -> W; image: the image w.r.t. W; wplus: the image w.r.t. W+ "
                        "(input directions, with pictures of the top edits)")
    b.add_argument("--layers", default=None, help="a:b, W+ layers carrying the edit (image / wplus; default: all)")
    b.add_argument("--edit-size", type=positive_float("--edit-size"), default=1.0,
                   help="step of the edit pictures (image / wplus)")
    b.add_argument("--latents", help=".npy/.pt (N, z_dim) inputs of f: a sharded job over their rows (torchrun, "
                                     "--rows) writing DIR/<array>/part-*.npy + manifest.json; default: --num "
                                     "sampled latents, one .npy per direction")
    add_shard_args(b, chunk_default=256)
    b.add_argument("--out", required=True, help="output directory")
    add_overwrite(b)
    b.set_defaults(func=run)


def run_rows(args) -> int:
    """``basis --latents``: points, basis, singular_values, input_basis, residual for every selected row."""
    from ..localbasis import local_basis
    from . import _common

    with _shard.job(args.device) as job:
        G = _common.load_generator_arg(args.checkpoint, job.device)  # job.device: cuda:LOCAL_RANK under torchrun
        f = G.mlp_spec() or G.f
        x = _common.load_latents_arg(args.latents, width=getattr(G, "z_dim", None), mmap=True)
        first, n = _shard.select_rows(x, args.rows)
        k = args.k
        with torch.no_grad():
            d_out = G.f(_shard.rows_tensor(x, first, first + 1, job.device)).shape[1]
        arrays = {"points": ("float32", (d_out,)), "basis": ("float32", (d_out, k)),
                  "singular_values": ("float32", (k,)), "input_basis": ("float32", (x.shape[1], k)),
                  "residual": ("float32", ())}
        manifest = _shard.manifest_for(job, "basis", arrays, first, n, args.chunk, dict(
            latents=str(Path(args.latents).resolve()), checkpoint=args.checkpoint, k=k, method=args.method,
            seed=args.seed))

        def bases(row, z):  # seeds fixed per global block: any number of ranks gives the same rows
            gen = torch.Generator(job.device).manual_seed(args.seed * 1_000_003 + row // args.chunk)
            return local_basis(f, z, k, args.method, generator=gen)

        with _shard.sharded_output(job, args.out, overwrite=args.overwrite, manifest=manifest) as tmp:
            _shard.fill_parts(job, tmp, arrays, x, first, n, args.chunk, bases, "local bases")
    if job.rank == 0:
        print(f"wrote local bases of {n} latents (k={k}, {args.method}, {job.world} rank(s)) to {args.out}")
    return 0


def _layers_arg(text):
    """--layers "a:b" -> slice(a, b) (either end may be empty); None stays None."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return slice(*(int(p) if p.strip() else None for p in parts))
    except ValueError:
        raise ValueError(f"--layers: expected a:b (W+ layer indices, e.g. 2:5), got {text!r}") from None


def run(args) -> int:
    from .. import viz
    from ..localbasis import local_basis
    from . import _common

    layers = _layers_arg(args.layers)
    if args.space == "w" and layers is not None:
        raise ValueError("--layers: applies to --space image or wplus (the synthesis network), not w")
    if args.latents or args.rows is not None:
        if args.rows is not None and not args.latents:
            raise ValueError("--rows: selects rows of --latents; give --latents too")
        if args.space != "w":
            raise ValueError(f"--space: --latents jobs compute the mapping network's bases (--space w), got "
                             f"{args.space!r}")
        return run_rows(args)
    check_output("--out", args.out, kind="dir", overwrite=args.overwrite)
    G = _common.load_generator_arg(args.checkpoint, args.device)
    if args.space != "w" and not callable(getattr(G, "synthesis_f", None)):
        raise ValueError(f"--space: {args.space!r} needs a StyleGAN2 generator (synthesis_f), got "
                         f"{type(G).__name__}; use --space w")
    z = latents_for(G, args, args.num)
    gen = torch.Generator().manual_seed(args.seed)
    if args.space == "w":  # the mapping network Z -> W: directions in W (columns of U)
        lb = local_basis(G.mlp_spec() or G.f, z, args.k, args.method, generator=gen)
        dirs, points = lb.basis.transpose(1, 2), lb.points
    else:  # the image w.r.t. W or W+ (optionally a layer range): input directions V, no U stored
        with torch.no_grad():
            w = G.f(z)
        x = w if args.space == "image" else w[:, None].repeat(1, G.num_ws, 1)
        f = G.synthesis_f("w" if args.space == "image" else "wplus", layers=layers)
        lb = local_basis(f, x, args.k, args.method, generator=gen, output_basis=False)
        dirs = lb.input_basis.reshape(args.num, -1, lb.k).transpose(1, 2)  # (num, k, d) W+ rows flattened
        points = x.reshape(args.num, -1)
    with atomic_output_dir(args.out, overwrite=args.overwrite, name="--out") as tmp:
        np.save(tmp / "z.npy", z.cpu().numpy())
        for i in range(args.num):
            _common.save_directions(tmp, f"latent{i:03d}", dirs[i], points[i], lb.singular_values[i])
        if args.space != "w":  # pictures of the top edits: rows = directions, columns = -2 .. 2 steps
            steps = torch.linspace(-2.0, 2.0, 5) * args.edit_size
            for i in range(args.num):
                base = x[i:i + 1]
                edits = [base + t * lb.input_basis[i, ..., j][None] for j in range(min(lb.k, 5)) for t in steps]
                with torch.no_grad():
                    imgs = G.synthesize(torch.cat(edits))
                grid = viz.image_grid(imgs, min(lb.k, 5), len(steps), scale=2,
                                      title=f"latent {i}: top edits in {args.space}")
                grid.save(tmp / f"latent{i:03d}_edits.png")
        _common.write_json(tmp / "basis.json", {
            "k": args.k, "method": lb.method, "num_latents": args.num, "space": args.space, "layers": args.layers,
            "layout": "W" if args.space in ("w", "image") else f"W+ ({G.num_ws}, {G.w_dim}) flattened row-major",
            "singular_values": lb.singular_values.tolist(), "residual": lb.residual.tolist()})
    print(f"wrote {args.num} local bases (k={args.k}, {lb.method}, space {args.space}) to {args.out}")
    return 0
