"""The ``latentfast`` command.

  latentfast demo --out DIR [--quick]            the main job on the embedded default generator
  latentfast basis     [--checkpoint P] --out DIR     local bases at sampled latents -> .npy + GANSpace .npz
  latentfast traverse  [--checkpoint P] --out FILE    linear / iterative traversal grid (PNG)
  latentfast warpage   [--checkpoint P] --out DIR     Grassmannian warpage numbers + plot
  latentfast sfvq fit  [--checkpoint P | --latents F] --out FILE.pt
  latentfast sfvq assign --curve FILE.pt --latents F --out FILE.npz
  latentfast sfvq render [--checkpoint P] --curve FILE.pt --out FILE.png
  latentfast info                                 versions and backends
  latentfast bench [...]                          benchmarks (from a source checkout)

Errors in the arguments or inputs print one line naming the argument and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from .._dispatch import BackendUnavailable
from .._io import atomic_output_dir, atomic_write_bytes, check_writable_parent


def _positive(name):
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected a positive integer, got {s!r}")
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name}: expected a positive integer, got {v}")
        return v
    return parse


def _add_model_args(p):
    p.add_argument("--checkpoint", help="generator file (rosinality .pt, NVIDIA .pkl, BigGAN dir); "
                                        "default: the embedded default generator")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def cmd_demo(args) -> int:
    from .demo import run_demo

    report = run_demo(args.out, quick=args.quick, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {args.out} (report.md, report.json, pictures) in {report['timings_s']['total']:.1f} s")
    return 0


def _latents_for(G, args, n):
    g = torch.Generator().manual_seed(args.seed)
    return G.sample_z(n, g, device=args.device)


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


def cmd_basis(args) -> int:
    from .. import viz
    from ..localbasis import local_basis
    from ._common import load_generator_arg, save_directions, write_json, write_png

    G = load_generator_arg(args.checkpoint, args.device)
    layers = _layers_arg(args.layers)
    if args.space == "w" and layers is not None:
        raise ValueError("--layers: applies to --space image or wplus (the synthesis network), not w")
    if args.space != "w" and not callable(getattr(G, "synthesis_f", None)):
        raise ValueError(f"--space: {args.space!r} needs a StyleGAN2 generator (synthesis_f), got "
                         f"{type(G).__name__}; use --space w")
    z = _latents_for(G, args, args.num)
    gen = torch.Generator().manual_seed(args.seed)
    if args.space == "w":  # the mapping network Z -> W: directions in W (columns of U)
        f = G.mlp_spec() or G.f
        lb = local_basis(f, z, args.k, args.method, generator=gen)
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
            save_directions(tmp, f"latent{i:03d}", dirs[i], points[i], lb.singular_values[i])
        if args.space != "w":  # pictures of the top edits: rows = directions, columns = -2 .. 2 steps
            steps = torch.linspace(-2.0, 2.0, 5) * args.edit_size
            for i in range(args.num):
                base = x[i:i + 1]
                edits = [base + t * lb.input_basis[i, ..., j][None] for j in range(min(lb.k, 5)) for t in steps]
                with torch.no_grad():
                    imgs = G.synthesize(torch.cat(edits))
                grid = viz.image_grid(imgs, min(lb.k, 5), len(steps), scale=2,
                                      title=f"latent {i}: top edits in {args.space}")
                write_png(tmp / f"latent{i:03d}_edits.png", grid)
        write_json(tmp / "basis.json", {"k": args.k, "method": lb.method, "num_latents": args.num,
                                        "space": args.space, "layers": args.layers,
                                        "layout": "W" if args.space in ("w", "image") else
                                        f"W+ ({G.num_ws}, {G.w_dim}) flattened row-major",
                                        "singular_values": lb.singular_values.tolist(),
                                        "residual": lb.residual.tolist()})
    print(f"wrote {args.num} local bases (k={args.k}, {lb.method}, space {args.space}) to {args.out}")
    return 0


def cmd_traverse(args) -> int:
    from .. import viz
    from ..localbasis import local_basis, traverse_iterative
    from ._common import basis_method, load_generator_arg, write_png
    from .demo import traversal_panel

    G = load_generator_arg(args.checkpoint, args.device)
    check_writable_parent("--out", Path(args.out))
    z = _latents_for(G, args, 1)
    f = G.mlp_spec() or G.f
    lb = local_basis(f, z, args.k, basis_method(args.k, z.shape[1]), generator=torch.Generator().manual_seed(args.seed))
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
    write_png(args.out, panel)
    print(f"wrote {args.out}")
    return 0


def cmd_warpage(args) -> int:
    from ..baselines import ganspace_directions
    from ..localbasis import warpage
    from ._common import load_generator_arg, sample_w, warpage_chart, write_json

    G = load_generator_arg(args.checkpoint, args.device)
    z = _latents_for(G, args, args.num)
    f = G.mlp_spec() or G.f
    w = sample_w(G, 10000, torch.Generator().manual_seed(args.seed), device=args.device)
    gs = ganspace_directions(w, max(args.k))
    wp = warpage(f, z, args.k, eps=args.eps, global_basis=gs.components.T,
                 generator=torch.Generator().manual_seed(args.seed))
    with atomic_output_dir(args.out, overwrite=args.overwrite, name="--out") as tmp:
        write_json(tmp / "warpage.json", wp.to_dict())
        warpage_chart(wp, args.k, args.eps, "Grassmannian warpage (geodesic)").save(tmp / "warpage.png")
    print(f"wrote {args.out}")
    return 0


def cmd_sfvq(args) -> int:
    from .. import viz
    from ..sfvq import SFVQ
    from ._common import load_generator_arg, load_latents_arg, sample_w, write_png

    if args.sfvq_command == "fit":
        if args.latents:
            w = load_latents_arg(args.latents)
        else:
            G = load_generator_arg(args.checkpoint, args.device)
            w = sample_w(G, args.num, torch.Generator().manual_seed(args.seed), device=args.device)
        check_writable_parent("--out", Path(args.out))
        curve = SFVQ(args.num_vertices, w.shape[1])
        log = curve.fit(w, epochs_per_stage=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        progress=not args.quiet, generator=torch.Generator().manual_seed(args.seed))
        curve.save(args.out)
        print(f"wrote {args.out}: {args.num_vertices} vertices, final loss {log.final_loss:.5f}")
        return 0
    curve = SFVQ.load(args.curve)
    if args.sfvq_command == "assign":
        x = load_latents_arg(args.latents)
        a = curve.assign(x)
        check_writable_parent("--out", Path(args.out))
        buf = __import__("io").BytesIO()
        np.savez(buf, index=a.index.numpy(), t=a.t.numpy(), distance_sq=a.distance_sq.numpy())
        atomic_write_bytes(args.out, buf.getvalue(), name="--out")
        print(f"wrote {args.out}: {x.shape[0]} latents assigned to {curve.num_vertices - 1} segments")
        return 0
    # render
    G = load_generator_arg(args.checkpoint, args.device)
    with torch.no_grad():
        imgs = G.synthesize(curve.vertices.detach())
    write_png(args.out, viz.vertex_grid(imgs, "SFVQ vertices in curve order"))
    print(f"wrote {args.out}")
    return 0


def cmd_info(args) -> int:
    from ..info import report

    print(report())
    return 0


def cmd_bench(args) -> int:
    try:
        from benchmarks.run import main as bench_main
    except ImportError as exc:
        raise ValueError("bench: the benchmarks/ folder of a latentfast source checkout must be importable "
                         f"(run from the repository root): {exc}") from exc
    return int(bench_main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentfast", description="Fast Local Basis and SFVQ for GAN latent spaces.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the main job on the embedded default generator")
    d.add_argument("--out", required=True)
    d.add_argument("--quick", action="store_true", help="reduced sizes (CI)")
    d.add_argument("--overwrite", action="store_true")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("basis", help="local bases at sampled latents")
    _add_model_args(b)
    b.add_argument("--num", type=_positive("--num"), default=8)
    b.add_argument("-k", "--k", type=_positive("--k"), default=10)
    b.add_argument("--method", default="auto", choices=["auto", "exact", "randomized"])
    b.add_argument("--space", default="w", choices=["w", "image", "wplus"],
                   help="w: the mapping network Z -> W (default); image: the image w.r.t. W; wplus: the image "
                        "w.r.t. W+ (input directions, with pictures of the top edits)")
    b.add_argument("--layers", default=None, help="a:b, W+ layers carrying the edit (image / wplus; default all)")
    b.add_argument("--edit-size", type=float, default=1.0, help="step of the edit pictures (image / wplus)")
    b.add_argument("--out", required=True)
    b.add_argument("--overwrite", action="store_true")
    b.set_defaults(func=cmd_basis)

    t = sub.add_parser("traverse", help="traversal grid of local directions (or a given direction)")
    _add_model_args(t)
    t.add_argument("-k", "--k", type=_positive("--k"), default=5)
    t.add_argument("--direction", help=".npy unit vector to traverse instead of the local basis")
    t.add_argument("--size", type=float, default=3.0, help="largest edit (distance in the output space)")
    t.add_argument("--frames", type=_positive("--frames"), default=7)
    t.add_argument("--iterative", action="store_true")
    t.add_argument("--steps", type=_positive("--steps"), default=12)
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_traverse)

    w = sub.add_parser("warpage", help="Grassmannian warpage study")
    _add_model_args(w)
    w.add_argument("--num", type=_positive("--num"), default=64)
    w.add_argument("-k", "--k", type=_positive("--k"), nargs="+", default=[1, 2, 4, 8])
    w.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    w.add_argument("--out", required=True)
    w.add_argument("--overwrite", action="store_true")
    w.set_defaults(func=cmd_warpage)

    s = sub.add_parser("sfvq", help="space-filling VQ: fit, assign, render")
    ssub = s.add_subparsers(dest="sfvq_command", required=True)
    sf = ssub.add_parser("fit")
    _add_model_args(sf)
    sf.add_argument("--latents", help=".npy/.pt (N, D) latents; default: W samples of the generator")
    sf.add_argument("--num", type=_positive("--num"), default=20000, help="W samples when no --latents")
    sf.add_argument("--num-vertices", type=_positive("--num-vertices"), default=32)
    sf.add_argument("--epochs", type=_positive("--epochs"), default=5)
    sf.add_argument("--batch-size", type=_positive("--batch-size"), default=64)
    sf.add_argument("--lr", type=float, default=1e-3)
    sf.add_argument("--out", required=True)
    sa = ssub.add_parser("assign")
    sa.add_argument("--curve", required=True)
    sa.add_argument("--latents", required=True)
    sa.add_argument("--out", required=True)
    sr = ssub.add_parser("render")
    _add_model_args(sr)
    sr.add_argument("--curve", required=True)
    sr.add_argument("--out", required=True)
    for q in (sa,):
        q.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_sfvq)

    i = sub.add_parser("info", help="versions and backends")
    i.set_defaults(func=cmd_info)

    be = sub.add_parser("bench", help="benchmarks against the official codes (source checkout)")
    be.add_argument("rest", nargs=argparse.REMAINDER)
    be.set_defaults(func=cmd_bench)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, BackendUnavailable) as exc:
        print(f"latentfast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
