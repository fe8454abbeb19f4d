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


def follow_direction(f, z, direction, *, num_steps: int, step: float, k=None, method: str = "auto",
                     generator=None):
    """The iterative traversal guided by a fixed output-space ``direction`` (d_out,) instead of a basis index.

    From ``z`` (d_in,), both ways: at each point the local basis of ``f`` is computed (top ``k``), the direction
    u_j with the largest |<u_j, direction>| is taken, oriented along ``+direction`` (forward side) or
    ``-direction`` (backward side), and z moves by ``step / s_j`` along v_j, so f(z) moves by about ``step``.
    Returns an :class:`~latentfast.localbasis.traverse.IterativeTraversal` of S = 2 * num_steps + 1 points
    (backward side first, ``z`` at the centre; ``indices`` = the j followed out of each point, -1 at the centre).
    Raises ValueError naming ``--direction`` when the best-aligned direction has a zero singular value.
    """
    from ..localbasis import local_basis
    from ..localbasis.traverse import IterativeTraversal

    sign = torch.tensor([1.0, -1.0], dtype=z.dtype, device=z.device)[:, None]
    target = sign * direction.to(z)[None]  # (2, d_out): where each side is headed
    cur = z[None].repeat(2, 1)
    ins, idxs = [], []
    for i in range(num_steps):
        lb = local_basis(f, cur, k, method, generator=generator)
        cos = torch.einsum("bdk,bd->bk", lb.basis, target)
        j = cos.abs().argmax(dim=1)
        rows = torch.arange(2, device=z.device)
        orient = torch.where(cos[rows, j] < 0, -1.0, 1.0).to(z)
        s = lb.singular_values[rows, j]
        if not bool((s > 0).all()):
            raise ValueError(f"--direction: at step {i + 1} the local direction best aligned with it has singular "
                             f"value 0 (f does not move along it); use fewer --steps or a smaller --size")
        cur = cur + (step / s)[:, None] * lb.input_basis[rows, :, j] * orient[:, None]
        ins.append(cur)
        idxs.append(j)
    ins, idxs = torch.stack(ins, 1), torch.stack(idxs, 1)  # (2, num_steps, .)
    inputs = torch.cat([ins[1].flip(0), z[None], ins[0]])
    indices = torch.cat([idxs[1].flip(0), torch.full((1,), -1, dtype=idxs.dtype, device=z.device), idxs[0]])
    return IterativeTraversal(inputs, _outputs(f, inputs), indices)


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
            tr = follow_direction(f, z[0], dirs[0], num_steps=args.steps, step=step, generator=gen)
            rows = [tr.outputs[picks]]
        else:
            rows = [traverse_iterative(f, z[0], i, num_steps=args.steps, step=step, k=args.k).outputs[picks]
                    for i in range(dirs.shape[0])]
        with torch.no_grad():
            imgs = G.synthesize(torch.cat(rows))
        panel = viz.hstack([panel, viz.image_grid(imgs, dirs.shape[0], args.frames, scale=2, title="iterative")])
    _common.write_image(args.out, panel, args.overwrite)
    print(f"wrote {args.out}")
    return 0
